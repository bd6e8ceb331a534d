//! Replacing a file all at once: written to a temporary file in the same directory, flushed to
//! disk, then renamed over the target, so that a kill or a full disk at any moment leaves the
//! old file or the new one, never a torn one. (Burn's burnpack writer already does this for
//! `.bpk` files: the model and the checkpoints.)

use std::io::Write;
use std::path::Path;

use crate::TrainingError;

/// Replaces `path` with `contents`.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), TrainingError> {
    let failed = |source: std::io::Error| TrainingError::Io {
        what: format!("cannot write {}", path.display()),
        source,
    };
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Hidden and removed on any failure (the guard deletes it when dropped unpersisted).
    let mut partial = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".partial")
        .tempfile_in(dir)
        .map_err(failed)?;
    partial.write_all(contents).map_err(failed)?;
    partial.as_file().sync_all().map_err(failed)?;
    partial.persist(path).map_err(|error| failed(error.error))?;
    // The rename itself is durable only once the directory is synced.
    sync_dir(dir);
    Ok(())
}

/// Makes renames and new entries in `dir` durable; not every filesystem allows syncing a
/// directory, hence no error.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(directory) = std::fs::File::open(dir) {
        let _ = directory.sync_all();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    pub(crate) fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        write_atomically(&path, b"old").unwrap();
        write_atomically(&path, b"new contents").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new contents");
        assert_eq!(listing(dir.path()), ["config.toml"]);
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the final rename fails, as a full disk or a
        // permission error would fail a step of the write.
        let target = dir.path().join("taken");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("inside"), b"kept").unwrap();
        let error = write_atomically(&target, b"new").unwrap_err();
        assert!(error.to_string().contains("cannot write"), "{error}");
        assert_eq!(std::fs::read(target.join("inside")).unwrap(), b"kept");
        assert_eq!(
            listing(dir.path()),
            ["taken"],
            "the temporary file is removed"
        );
    }
}
