//! Writing identity files: complete, fsynced temp files renamed into place.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use super::IdentityError;

pub(super) fn io_err(path: &Path, e: &std::io::Error) -> IdentityError {
    IdentityError::Io(format!("{}: {e}", path.display()))
}

/// Writes `data` to a new, fsynced temp file beside `target` and returns its path.
pub(super) fn write_temp(target: &Path, data: &[u8], mode: u32) -> Result<PathBuf, IdentityError> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let not_file = || IdentityError::Io(format!("{}: not a file path", target.display()));
    let name = target.file_name().ok_or_else(not_file)?.to_string_lossy();
    let (pid, seq) = (std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
    let tmp = target.with_file_name(format!(".{name}.{pid}-{seq}.tmp"));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = opts.open(&tmp).map_err(|e| io_err(&tmp, &e))?;
    if let Err(e) = file.write_all(data).and_then(|()| file.sync_all()) {
        drop(file);
        let _ = fs::remove_file(&tmp);
        return Err(io_err(target, &e));
    }
    Ok(tmp)
}

/// Best effort: makes a rename durable; failure only weakens crash safety.
pub(super) fn sync_parent(target: &Path) {
    #[cfg(unix)]
    if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    #[cfg(not(unix))]
    let _ = target;
}

/// Writes `cert_pem` (0644) and `key_pem` (0600). Each file is replaced atomically, and the
/// key is never readable by others, even briefly. Without `overwrite`, an existing target
/// yields [`IdentityError::Exists`] and nothing is written.
pub(super) fn save_pair(
    cert_path: &Path,
    key_path: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
    overwrite: bool,
) -> Result<(), IdentityError> {
    if cert_path == key_path {
        let msg = "certificate and key paths must be different";
        return Err(IdentityError::Io(format!("{}: {msg}", key_path.display())));
    }
    // symlink_metadata so that a dangling symlink also counts as existing.
    let existing = [cert_path, key_path]
        .into_iter()
        .find(|p| fs::symlink_metadata(p).is_ok());
    if let (false, Some(p)) = (overwrite, existing) {
        return Err(IdentityError::Exists(p.display().to_string()));
    }
    // Both temp files are complete before either rename, which shrinks the window for
    // leaving a new key beside an old certificate to the gap between two renames.
    let key_tmp = write_temp(key_path, key_pem, 0o600)?;
    let cert_tmp = write_temp(cert_path, cert_pem, 0o644);
    let renamed = cert_tmp.and_then(|cert_tmp| {
        for (tmp, target) in [(&key_tmp, key_path), (&cert_tmp, cert_path)] {
            fs::rename(tmp, target).map_err(|e| {
                let _ = fs::remove_file(&cert_tmp);
                io_err(target, &e)
            })?;
        }
        Ok(())
    });
    if renamed.is_err() {
        let _ = fs::remove_file(&key_tmp);
    }
    renamed?;
    for target in [key_path, cert_path] {
        sync_parent(target);
    }
    Ok(())
}
