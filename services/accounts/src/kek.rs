//! The key-encryption key (KEK): signing keys are stored encrypted under it
//! (AES-256-GCM), so a copy of the database alone cannot mint tokens.
//!
//! A wrapped key is `EKW1 ‖ kek id (8 bytes) ‖ nonce (12) ‖ ciphertext ‖ tag`.
//! The KEK id (the first 8 bytes of the KEK's SHA-256) says which KEK opens
//! it, so keys wrapped before a rotation stay readable while the previous KEK
//! is still configured.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::SecureRandom;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::config::KeySettings;

const MAGIC: &[u8; 4] = b"EKW1";
const ID_LEN: usize = 8;

/// One key-encryption key.
pub struct Kek {
    key: LessSafeKey,
    id: [u8; ID_LEN],
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({})", self.id_hex())
    }
}

impl Kek {
    /// From its base64 text (32 bytes).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let bytes = STANDARD
            .decode(text.trim())
            .context("the key-encryption key is not base64")?;
        anyhow::ensure!(
            bytes.len() == 32,
            "the key-encryption key must be 32 bytes (base64 of 32 random bytes)"
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&digest.as_ref()[..ID_LEN]);
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| anyhow::anyhow!("the key-encryption key is unusable"))?;
        Ok(Self {
            key: LessSafeKey::new(key),
            id,
        })
    }

    /// A new random key as base64 text.
    pub fn generate_text() -> String {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut bytes)
            .expect("the system random generator works");
        STANDARD.encode(bytes)
    }

    pub fn id_hex(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts a private key; the kid is bound in as associated data, so a
    /// wrapped key cannot be moved to another key's row.
    pub fn wrap(&self, kid: &str, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random generator works");
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM sealing of a short key works");
        let mut out = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }
}

/// Whether a stored key is wrapped (rows from before wrapping existed are not).
pub fn is_wrapped(stored: &[u8]) -> bool {
    stored.starts_with(MAGIC)
}

/// The KEKs configured: the current one wraps; older ones only unwrap.
#[derive(Debug)]
pub struct KekRing {
    pub current: Kek,
    pub previous: Vec<Kek>,
}

impl KekRing {
    /// From the settings: `kek` (or `kek_file`), and `previous_kek_file`.
    pub fn from_settings(settings: &KeySettings) -> anyhow::Result<Self> {
        let text = if !settings.kek.expose().is_empty() {
            settings.kek.expose().to_owned()
        } else if !settings.kek_file.is_empty() {
            read_kek_file(Path::new(&settings.kek_file))?
        } else {
            anyhow::bail!(
                "no key-encryption key: set keys.kek_file or EMPORIUM_KEYS_KEK \
                 (32 random bytes, base64; e.g. `openssl rand -base64 32`)"
            );
        };
        let mut previous = Vec::new();
        if !settings.previous_kek_file.is_empty() {
            previous.push(Kek::parse(&read_kek_file(Path::new(
                &settings.previous_kek_file,
            ))?)?);
        }
        Ok(Self {
            current: Kek::parse(&text)?,
            previous,
        })
    }

    /// Decrypts a wrapped key with whichever configured KEK wrapped it.
    pub fn unwrap_key(&self, kid: &str, stored: &[u8]) -> anyhow::Result<Vec<u8>> {
        anyhow::ensure!(
            is_wrapped(stored) && stored.len() > MAGIC.len() + ID_LEN + NONCE_LEN,
            "signing key {kid} is not wrapped"
        );
        let id = &stored[MAGIC.len()..MAGIC.len() + ID_LEN];
        let kek = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .with_context(|| {
                format!(
                    "signing key {kid} is wrapped under a key-encryption key that is not \
                     configured (id {})",
                    id.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            })?;
        let nonce_at = MAGIC.len() + ID_LEN;
        let nonce = Nonce::try_assume_unique_for_key(&stored[nonce_at..nonce_at + NONCE_LEN])
            .map_err(|_| anyhow::anyhow!("signing key {kid} has a bad nonce"))?;
        let mut sealed = stored[nonce_at + NONCE_LEN..].to_vec();
        let plain = kek
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} does not decrypt: wrong key-encryption key or damaged row"
                )
            })?;
        Ok(plain.to_vec())
    }
}

/// Reads a KEK file, refusing one that others can read.
pub fn read_kek_file(path: &Path) -> anyhow::Result<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read the key-encryption key {}", path.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{} is readable by other users (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
    std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the key-encryption key {}", path.display()))
}

/// Writes a new KEK file with mode 0600 (created so, never widened), failing if it exists.
pub fn write_new_kek_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(Kek::generate_text().as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn wrapped_keys_open_only_with_their_kek_and_kid() {
        let a = Kek::parse(&Kek::generate_text()).unwrap();
        let b = Kek::parse(&Kek::generate_text()).unwrap();
        let wrapped = a.wrap("kid1", b"secret key bytes");
        assert!(is_wrapped(&wrapped));
        assert!(!wrapped.windows(6).any(|w| w == b"secret"));
        let ring = KekRing {
            current: b,
            previous: vec![a],
        };
        assert_eq!(
            ring.unwrap_key("kid1", &wrapped).unwrap(),
            b"secret key bytes"
        );
        assert!(
            ring.unwrap_key("kid2", &wrapped).is_err(),
            "bound to its kid"
        );
        let only_b = KekRing {
            current: Kek::parse(&Kek::generate_text()).unwrap(),
            previous: vec![],
        };
        assert!(only_b.unwrap_key("kid1", &wrapped).is_err());
        assert!(Kek::parse("c2hvcnQ=").is_err());
    }

    #[cfg(unix)]
    #[test]
    fn kek_files_are_created_private_and_loose_ones_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("emporium-kek-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kek");
        write_new_kek_file(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(write_new_kek_file(&file).is_err(), "never overwritten");
        Kek::parse(&read_kek_file(&file).unwrap()).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let refused = read_kek_file(&file).unwrap_err().to_string();
        assert!(refused.contains("readable by other users"), "{refused}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn without_a_kek_nothing_starts() {
        let settings = KeySettings {
            kek: emporium_config::Secret::default(),
            kek_file: String::new(),
            previous_kek_file: String::new(),
        };
        let e = KekRing::from_settings(&settings).unwrap_err().to_string();
        assert!(e.contains("no key-encryption key"), "{e}");
    }
}
