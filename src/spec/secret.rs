//! Secret values: read from the sources region files name, never printed.

use std::fmt;
use std::path::{Path, PathBuf};

use super::model::SecretRef;

/// A secret value. `Debug` and `Display` print a mask, so a secret that reaches a log line or
/// an error message by mistake still does not leak.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The clear value; call sites are the few places that must hand it to a broker or AWS.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

/// Why a secret source cannot be read. Never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret source `env:{0}`: the environment variable is not set")]
    EnvUnset(String),
    #[error("secret source `env:{0}`: the environment variable is empty")]
    EnvEmpty(String),
    #[error("secret source `file:{0}`: cannot read {1}: {2}")]
    FileUnreadable(String, PathBuf, String),
    #[error("secret source `file:{0}`: {1} is empty")]
    FileEmpty(String, PathBuf),
    #[error(
        "secret source `file:{0}`: {1} is readable by group or others (mode {2:o}); run chmod 600 on it"
    )]
    FileTooOpen(String, PathBuf, u32),
}

impl SecretRef {
    /// Reads a public value from a secret-style source (a certificate): like [`resolve`],
    /// without the file-mode check, since anybody may read a certificate.
    ///
    /// [`resolve`]: SecretRef::resolve
    pub fn read_public(&self, base: &Path) -> Result<String, SecretError> {
        match self {
            SecretRef::Env(_) => self.resolve(base).map(|s| s.expose().to_string()),
            SecretRef::File(path) => {
                let full = base.join(path);
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    SecretError::FileUnreadable(path.clone(), full.clone(), e.kind().to_string())
                })?;
                if text.trim().is_empty() {
                    return Err(SecretError::FileEmpty(path.clone(), full));
                }
                Ok(text)
            }
        }
    }

    /// Reads the secret. Relative file paths are relative to `base` (the region directory).
    /// A trailing newline in a file is not part of the secret.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(var) => match std::env::var(var) {
                Ok(v) if v.is_empty() => Err(SecretError::EnvEmpty(var.clone())),
                Ok(v) => Ok(Secret(v)),
                Err(_) => Err(SecretError::EnvUnset(var.clone())),
            },
            SecretRef::File(path) => {
                let full = base.join(path);
                check_mode(path, &full)?;
                let text = std::fs::read_to_string(&full).map_err(|e| {
                    SecretError::FileUnreadable(path.clone(), full.clone(), e.kind().to_string())
                })?;
                let value = text.strip_suffix('\n').unwrap_or(&text);
                let value = value.strip_suffix('\r').unwrap_or(value);
                if value.is_empty() {
                    return Err(SecretError::FileEmpty(path.clone(), full));
                }
                Ok(Secret(value.to_string()))
            }
        }
    }
}

#[cfg(unix)]
fn check_mode(path: &str, full: &Path) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(full) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(SecretError::FileTooOpen(
                    path.to_string(),
                    full.to_path_buf(),
                    mode,
                ));
            }
            Ok(())
        }
        Err(e) => Err(SecretError::FileUnreadable(
            path.to_string(),
            full.to_path_buf(),
            e.kind().to_string(),
        )),
    }
}

#[cfg(not(unix))]
fn check_mode(_: &str, _: &Path) -> Result<(), SecretError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_format_in_clear() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "(sensitive) (sensitive)");
    }

    #[test]
    fn file_sources_strip_newline_and_refuse_open_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret\n").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let r = SecretRef::File("pw".into());
        assert_eq!(r.resolve(dir.path()).expect("readable").expose(), "s3cret");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = r.resolve(dir.path()).expect_err("too open");
        assert!(matches!(err, SecretError::FileTooOpen(..)));
        assert!(!err.to_string().contains("s3cret"));
    }
}
