//! What can go wrong when calling another service, and whether to try again.

use serde::Deserialize;

/// An RFC 9457 problem answered by the other service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RemoteProblem {
    /// The HTTP status of the answer.
    #[serde(skip)]
    pub status: u16,
    /// The problem type URI (`about:blank` when the body was not a problem).
    #[serde(rename = "type", default = "about_blank")]
    pub type_uri: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub detail: Option<String>,
    /// `Retry-After` in seconds, when the answer carried one.
    #[serde(skip)]
    pub retry_after_s: Option<u64>,
}

fn about_blank() -> String {
    "about:blank".to_owned()
}

impl RemoteProblem {
    /// The problem an error answer carries; a body that is not a problem
    /// gives `about:blank` titled by the status.
    pub(crate) fn from_answer(
        status: http::StatusCode,
        body: &[u8],
        retry_after_s: Option<u64>,
    ) -> Self {
        let mut problem = serde_json::from_slice::<Self>(body).unwrap_or_else(|_| Self {
            status: 0,
            type_uri: about_blank(),
            title: status.canonical_reason().unwrap_or_default().to_owned(),
            detail: None,
            retry_after_s: None,
        });
        problem.status = status.as_u16();
        problem.retry_after_s = retry_after_s;
        problem
    }

    /// The type's last path segment: `out-of-stock` for `…/problems/out-of-stock`.
    pub fn kind(&self) -> &str {
        self.type_uri
            .rsplit('/')
            .next()
            .unwrap_or(self.type_uri.as_str())
    }

    /// Whether the same request may succeed later: the other side was busy,
    /// down or overloaded, or the same key is still being executed.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
            || (self.status == 409 && self.kind() == "idempotency-key-in-use")
    }
}

impl std::fmt::Display for RemoteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.kind())?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

/// A call that did not produce the answer the caller wanted.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// The other service answered with an error.
    #[error("the service answered {0}")]
    Problem(RemoteProblem),
    /// No answer within the per-attempt timeout.
    #[error("no answer within {0:?}")]
    Timeout(std::time::Duration),
    /// The connection broke, or could not be made after an earlier attempt
    /// may have been delivered.
    #[error("the service cannot be reached: {0}")]
    Unreachable(String),
    /// No connection could be made for any attempt: the request never left.
    #[error("the service cannot be reached: {0}")]
    NotSent(String),
    /// A success whose body was not what the contract says.
    #[error("the answer does not match the contract: {0}")]
    Decode(String),
    /// No service token could be had (accounts down, or the client refused).
    #[error("no service token: {0}")]
    Token(Box<CallError>),
    /// The request could not be built (a bug on our side, never retried).
    #[error("the request cannot be sent: {0}")]
    Request(String),
}

impl CallError {
    /// A short, fixed name of the failure (a span's `error.type`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Problem(_) => "problem",
            Self::Timeout(_) => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::NotSent(_) => "not_sent",
            Self::Decode(_) => "decode",
            Self::Token(_) => "token",
            Self::Request(_) => "request",
        }
    }

    /// Whether trying the same call again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Problem(p) => p.is_transient(),
            Self::Timeout(_) | Self::Unreachable(_) | Self::NotSent(_) => true,
            Self::Token(inner) => inner.is_retryable(),
            Self::Decode(_) | Self::Request(_) => false,
        }
    }

    /// Whether the other service surely never saw the request (no attempt
    /// connected, no token, or it could not be built): a caller that must
    /// know whether a call took effect needs not ask.
    pub fn never_sent(&self) -> bool {
        matches!(self, Self::NotSent(_) | Self::Token(_) | Self::Request(_))
    }

    /// The problem, when the other service answered with one.
    pub fn problem(&self) -> Option<&RemoteProblem> {
        match self {
            Self::Problem(p) => Some(p),
            _ => None,
        }
    }

    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        self.problem().map(|p| p.status)
    }

    pub(crate) fn from_reqwest(e: &reqwest::Error, timeout: std::time::Duration) -> Self {
        if e.is_timeout() {
            Self::Timeout(timeout)
        } else if e.is_builder() {
            Self::Request(e.to_string())
        } else if e.is_connect() {
            Self::NotSent(error_chain(e))
        } else {
            Self::Unreachable(error_chain(e))
        }
    }
}

/// The error and its causes on one line (reqwest's own message is terse).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, kind: &str) -> RemoteProblem {
        RemoteProblem {
            status,
            type_uri: format!("https://emporium.example/problems/{kind}"),
            title: String::new(),
            detail: None,
            retry_after_s: None,
        }
    }

    /// Only a call that surely never reached the other side may be taken as
    /// "nothing happened there": a timeout or a broken connection may have
    /// delivered it, and an answer certainly was.
    #[test]
    fn only_calls_that_never_connected_were_never_sent() {
        let down = || Box::new(CallError::Unreachable("down".into()));
        for never in [
            CallError::NotSent("refused".into()),
            CallError::Token(down()),
            CallError::Request("bad path".into()),
        ] {
            assert!(never.never_sent(), "{never:?}");
        }
        for maybe in [
            CallError::Timeout(std::time::Duration::from_secs(1)),
            CallError::Unreachable("reset".into()),
            CallError::Problem(problem(503, "unavailable")),
            CallError::Decode("bad".into()),
        ] {
            assert!(!maybe.never_sent(), "{maybe:?}");
        }
    }

    #[test]
    fn only_transient_answers_are_retryable() {
        for status in [408, 425, 429, 500, 502, 503, 504] {
            assert!(
                CallError::Problem(problem(status, "x")).is_retryable(),
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 409, 410, 412, 413, 422] {
            assert!(
                !CallError::Problem(problem(status, "x")).is_retryable(),
                "{status}"
            );
        }
        assert!(CallError::Problem(problem(409, "idempotency-key-in-use")).is_retryable());
        assert!(!CallError::Problem(problem(409, "out-of-stock")).is_retryable());
        assert!(CallError::Timeout(std::time::Duration::from_secs(1)).is_retryable());
        assert!(CallError::Unreachable("refused".into()).is_retryable());
        assert!(!CallError::Decode("bad".into()).is_retryable());
        assert!(
            !CallError::Token(Box::new(CallError::Problem(problem(401, "unauthorized"))))
                .is_retryable()
        );
        assert!(CallError::Token(Box::new(CallError::Unreachable("down".into()))).is_retryable());
    }

    #[test]
    fn kind_is_the_last_segment_of_the_type() {
        assert_eq!(problem(409, "out-of-stock").kind(), "out-of-stock");
        let blank = RemoteProblem {
            type_uri: "about:blank".into(),
            ..problem(500, "x")
        };
        assert_eq!(blank.kind(), "about:blank");
    }
}
