//! A short-lived deny list of subjects and sessions, fed by accounts' events
//! (`user.disabled`, `user.deleted`, `user.roles_changed`, `session.revoked`),
//! so a revoked user or session is refused within seconds everywhere instead
//! of when its access token expires.
//!
//! A subject is revoked up to a token generation (the account's counter that
//! accounts raises with every change that must end its tokens): tokens of an
//! older generation are refused, those issued after the change carry the new
//! one. Entries are held until every token they can concern has expired
//! (`hold`: the longest token lifetime plus the clock leeway), then forgotten.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

/// Subjects whose tokens of older generations are refused, and sessions whose
/// tokens are refused outright.
#[derive(Debug)]
pub struct Revocations {
    hold_secs: i64,
    /// subject → (lowest generation still valid, forget at in Unix seconds).
    subjects: RwLock<HashMap<String, (i64, i64)>>,
    /// session id → forget at, Unix seconds.
    sessions: RwLock<HashMap<String, i64>>,
}

impl Revocations {
    pub fn new(hold: Duration) -> Self {
        Self {
            hold_secs: i64::try_from(hold.as_secs()).unwrap_or(i64::MAX),
            subjects: RwLock::default(),
            sessions: RwLock::default(),
        }
    }

    /// Refuses the subject's tokens of a generation below `valid_from`;
    /// `at` (Unix seconds) is when that happened.
    pub fn revoke_subject(&self, subject: &str, valid_from: i64, at: i64) {
        let forget = at.saturating_add(self.hold_secs);
        if let Ok(mut map) = self.subjects.write() {
            let entry = map
                .entry(subject.to_owned())
                .or_insert((valid_from, forget));
            *entry = (entry.0.max(valid_from), entry.1.max(forget));
        }
    }

    /// Refuses every token of the session, revoked at `at` (Unix seconds).
    pub fn revoke_session(&self, session: &str, at: i64) {
        let forget = at.saturating_add(self.hold_secs);
        if let Ok(mut map) = self.sessions.write() {
            let entry = map.entry(session.to_owned()).or_insert(forget);
            *entry = (*entry).max(forget);
        }
    }

    /// Whether a token of `subject`, `session` and `generation` (none counts
    /// as the first, 0) is revoked.
    pub fn is_revoked(
        &self,
        subject: &str,
        session: Option<&str>,
        generation: Option<i64>,
    ) -> bool {
        let generation = generation.unwrap_or(0);
        let by_subject = self
            .subjects
            .read()
            .map(|m| {
                m.get(subject)
                    .is_some_and(|(valid_from, _)| generation < *valid_from)
            })
            .unwrap_or(true);
        let by_session = session.is_some_and(|sid| {
            self.sessions
                .read()
                .map(|m| m.contains_key(sid))
                .unwrap_or(true)
        });
        by_subject || by_session
    }

    /// Forgets entries no token can still concern.
    pub fn forget_expired(&self, now: i64) {
        if let Ok(mut map) = self.subjects.write() {
            map.retain(|_, (_, forget)| *forget > now);
        }
        if let Ok(mut map) = self.sessions.write() {
            map.retain(|_, forget| *forget > now);
        }
    }

    /// Entries held now (subjects, sessions).
    pub fn len(&self) -> (usize, usize) {
        (
            self.subjects.read().map(|m| m.len()).unwrap_or(0),
            self.sessions.read().map(|m| m.len()).unwrap_or(0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revokes_older_generations_of_a_subject_and_every_token_of_a_session() {
        let r = Revocations::new(Duration::from_secs(960));
        r.revoke_subject("u1", 3, 1000);
        assert!(
            r.is_revoked("u1", None, None),
            "no generation counts as the first"
        );
        assert!(r.is_revoked("u1", None, Some(2)));
        assert!(
            !r.is_revoked("u1", None, Some(3)),
            "a token issued afterwards counts"
        );
        // A late, older event does not lower the bar.
        r.revoke_subject("u1", 2, 1000);
        assert!(r.is_revoked("u1", None, Some(2)));
        assert!(!r.is_revoked("u2", None, Some(0)));
        r.revoke_session("s1", 1000);
        assert!(r.is_revoked("u2", Some("s1"), Some(9)));
        assert!(!r.is_revoked("u2", Some("s2"), Some(0)));
        r.forget_expired(1959);
        assert_eq!(r.len(), (1, 1));
        r.forget_expired(1960);
        assert_eq!(r.len(), (0, 0));
    }
}
