//! Reading and writing key material on disk.
//!
//! Private keys are written with mode 0600 from the moment the file exists;
//! they are never created world-readable and then tightened.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::{PkiError, Result};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a secret (a private key) readable by its owner only.
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_err(path))?;
    #[cfg(unix)]
    {
        // An existing file keeps its old mode through open(); tighten it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(io_err(path))?;
    }
    file.write_all(contents.as_bytes()).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Writes public material (a certificate), readable by everyone.
pub fn write_public(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    fs::write(path, contents).map_err(io_err(path))
}

pub fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(io_err(path))
}

/// Reads the first PEM block with `label` from a file as DER.
pub fn read_pem_der(path: &Path, label: &str) -> Result<Vec<u8>> {
    let text = read_text(path)?;
    crate::authority::pem_to_der(&text, label).map_err(|e| match e {
        PkiError::BadCertificate(msg) => {
            PkiError::BadCertificate(format!("{}: {msg}", path.display()))
        }
        other => other,
    })
}

/// PEM-encodes DER bytes under `label`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
