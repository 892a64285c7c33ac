//! Layered, typed configuration.
//!
//! Every service describes its settings twice: once as a Rust type, and once
//! as a TOML document of defaults that names *every* key (so the defaults are
//! also the reference documentation of what can be set). Layers are merged in
//! this order, later ones winning:
//!
//! 1. the built-in defaults (`defaults.toml` of the service),
//! 2. an optional TOML file (`--config FILE`),
//! 3. environment variables: the key path upper-cased and joined with `_`
//!    behind the `EMPORIUM_` prefix (`database.url` ← `EMPORIUM_DATABASE_URL`),
//! 4. overrides from command-line flags.
//!
//! Only keys present in the defaults are looked up in the environment, so a
//! typo in a file is an error and a stray variable is simply not read.
//! Secret values go in [`Secret`], whose `Debug` never shows them.
//!
//! ## Layout
//! - [`Loader`]: builds the merged document and deserialises it.
//! - [`Secret`]: a string that is redacted when printed.

use std::fmt;
use std::path::Path;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::{Table, Value};

/// The prefix of every environment variable the loader reads.
pub const ENV_PREFIX: &str = "EMPORIUM_";

/// Why settings could not be loaded. Each variant names the offending key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the built-in defaults are not valid TOML: {0}")]
    Defaults(#[source] toml::de::Error),
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// Where and why, never the line itself: it may hold a password.
    #[error(
        "configuration file {path} is not valid TOML at line {line}, column {column}: {reason}"
    )]
    Parse {
        path: String,
        line: usize,
        column: usize,
        reason: String,
    },
    #[error("unknown setting `{0}` (see the defaults for the keys that exist)")]
    UnknownKey(String),
    #[error("setting `{key}` from {origin}: expected {expected}, got {value}")]
    BadValue {
        key: String,
        origin: String,
        expected: &'static str,
        value: String,
    },
    #[error("settings are inconsistent: {0}")]
    Invalid(#[source] toml::de::Error),
}

/// Merges the configuration layers for one settings type.
pub struct Loader {
    merged: Table,
}

impl Loader {
    /// Starts from the built-in defaults, which must name every key.
    pub fn new(defaults: &str) -> Result<Self, ConfigError> {
        let merged: Table = toml::from_str(defaults).map_err(ConfigError::Defaults)?;
        Ok(Self { merged })
    }

    /// Merges a TOML file over what is there; keys it names must exist.
    pub fn file(mut self, path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else { return Ok(self) };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let table: Table = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(0, |span| span.start).min(text.len());
            let before = text.get(..at).unwrap_or_default();
            ConfigError::Parse {
                path: shown.clone(),
                line: before.matches('\n').count() + 1,
                column: before
                    .rsplit('\n')
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .count()
                    + 1,
                reason: e.message().to_owned(),
            }
        })?;
        merge(&mut self.merged, table, "", &format!("file {shown}"))?;
        Ok(self)
    }

    /// Reads `EMPORIUM_…` variables for every known key from `vars`.
    pub fn env_from<I>(mut self, vars: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let vars: std::collections::HashMap<String, String> = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        let mut updates = Vec::new();
        for key in leaf_keys(&self.merged, "") {
            let name = env_name(&key);
            if let Some(raw) = vars.get(&name) {
                updates.push((key, raw.clone(), format!("environment variable {name}")));
            }
        }
        for (key, raw, origin) in updates {
            self.set_str(&key, &raw, &origin)?;
        }
        Ok(self)
    }

    /// Reads the process environment.
    pub fn env(self) -> Result<Self, ConfigError> {
        self.env_from(std::env::vars())
    }

    /// Sets one key from a textual value (a command-line flag), typed by its default.
    pub fn set(mut self, key: &str, raw: &str) -> Result<Self, ConfigError> {
        self.set_str(key, raw, "command line")?;
        Ok(self)
    }

    /// Sets every `(key, value)` of `changes` in turn (tests, tools).
    pub fn set_all(self, changes: &[(&str, &str)]) -> Result<Self, ConfigError> {
        changes
            .iter()
            .try_fold(self, |l, (key, value)| l.set(key, value))
    }

    /// Deserialises the merged document into the settings type.
    pub fn build<T: DeserializeOwned>(self) -> Result<T, ConfigError> {
        T::deserialize(Value::Table(self.merged)).map_err(ConfigError::Invalid)
    }

    fn set_str(&mut self, key: &str, raw: &str, origin: &str) -> Result<(), ConfigError> {
        let slot = lookup_mut(&mut self.merged, key)
            .ok_or_else(|| ConfigError::UnknownKey(key.to_owned()))?;
        let bad = |expected| ConfigError::BadValue {
            key: key.to_owned(),
            origin: origin.to_owned(),
            expected,
            value: format!("`{raw}`"),
        };
        *slot = match slot {
            Value::String(_) => Value::String(raw.to_owned()),
            Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| bad("an integer"))?),
            Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| bad("a number"))?),
            Value::Boolean(_) => Value::Boolean(match raw.trim() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => return Err(bad("true or false")),
            }),
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_owned()))
                    .collect(),
            ),
            _ => return Err(bad("a plain value")),
        };
        Ok(())
    }
}

/// `database.max_connections` → `EMPORIUM_DATABASE_MAX_CONNECTIONS`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "_").to_uppercase())
}

fn leaf_keys(table: &Table, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => keys.extend(leaf_keys(t, &path)),
            _ => keys.push(path),
        }
    }
    keys
}

fn lookup_mut<'a>(table: &'a mut Table, key: &str) -> Option<&'a mut Value> {
    let mut parts = key.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        let value = current.get_mut(part)?;
        if parts.peek().is_none() {
            return match value {
                Value::Table(_) => None,
                leaf => Some(leaf),
            };
        }
        current = value.as_table_mut()?;
    }
    None
}

fn merge(base: &mut Table, over: Table, prefix: &str, origin: &str) -> Result<(), ConfigError> {
    for (k, v) in over {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let Some(existing) = base.get_mut(&k) else {
            return Err(ConfigError::UnknownKey(path));
        };
        match (existing, v) {
            (Value::Table(b), Value::Table(o)) => merge(b, o, &path, origin)?,
            (Value::Table(_), _) => return Err(ConfigError::UnknownKey(path)),
            (slot, v) => {
                if std::mem::discriminant(slot) != std::mem::discriminant(&v) {
                    return Err(ConfigError::BadValue {
                        key: path,
                        origin: origin.to_owned(),
                        expected: type_name(slot),
                        // Only the kind: the value may be a password or a URL
                        // with credentials written with the wrong type.
                        value: type_name(&v).to_owned(),
                    });
                }
                *slot = v;
            }
        }
    }
    Ok(())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a number",
        Value::Boolean(_) => "true or false",
        Value::Array(_) => "a list",
        _ => "a value",
    }
}

/// A configuration value that must never be printed: passwords, keys, URLs with credentials.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<unset>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const DEFAULTS: &str = r#"
        name = "shop"
        [database]
        url = ""
        max_connections = 10
        [http]
        insecure = false
        origins = []
    "#;

    #[derive(Debug, Deserialize)]
    struct S {
        name: String,
        database: Db,
        http: Http,
    }
    #[derive(Debug, Deserialize)]
    struct Db {
        url: Secret,
        max_connections: u32,
    }
    #[derive(Debug, Deserialize)]
    struct Http {
        insecure: bool,
        origins: Vec<String>,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn later_layers_win() {
        let dir = std::env::temp_dir().join(format!("cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("a.toml");
        std::fs::write(
            &file,
            "name = \"from-file\"\n[database]\nmax_connections = 3\n",
        )
        .unwrap();
        let s: S = Loader::new(DEFAULTS)
            .unwrap()
            .file(Some(&file))
            .unwrap()
            .env_from(env(&[
                ("EMPORIUM_DATABASE_MAX_CONNECTIONS", "7"),
                ("EMPORIUM_DATABASE_URL", "postgres://u:pw@h/db"),
                ("EMPORIUM_HTTP_ORIGINS", "a, b"),
                ("OTHER_NAME", "ignored"),
            ]))
            .unwrap()
            .set("http.insecure", "true")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(s.name, "from-file");
        assert_eq!(s.database.max_connections, 7);
        assert_eq!(s.database.url.expose(), "postgres://u:pw@h/db");
        assert!(s.http.insecure);
        assert_eq!(s.http.origins, vec!["a", "b"]);
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Secret::new("hunter2hunter2");
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_file_that_is_not_toml_is_located_never_quoted() {
        let dir = std::env::temp_dir().join(format!("cfg-syntax-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(
            &file,
            "[database]\nurl = \"postgres://u:p\\ss-SECRETPW@h/db\"\n",
        )
        .unwrap();
        let err = Loader::new(DEFAULTS)
            .unwrap()
            .file(Some(&file))
            .err()
            .unwrap();
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("line 2"), "{shown}");
        assert!(!shown.contains("SECRETPW"), "{shown}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_file_value_of_the_wrong_type_is_named_by_kind_never_shown() {
        let dir = std::env::temp_dir().join(format!("cfg-type-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(
            &file,
            "[database]\nurl = [\"postgres://u:TopSecretPW1@db/x\"]\n",
        )
        .unwrap();
        let err = Loader::new(DEFAULTS)
            .unwrap()
            .file(Some(&file))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("database.url"), "{err}");
        assert!(err.contains("expected a string, got a list"), "{err}");
        assert!(!err.contains("TopSecretPW1"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        let err = Loader::new(DEFAULTS)
            .unwrap()
            .set("database.nope", "1")
            .err()
            .unwrap();
        assert!(matches!(err, ConfigError::UnknownKey(k) if k == "database.nope"));
        let err = Loader::new(DEFAULTS)
            .unwrap()
            .env_from(env(&[("EMPORIUM_DATABASE_MAX_CONNECTIONS", "lots")]))
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("EMPORIUM_DATABASE_MAX_CONNECTIONS")
        );
    }
}
