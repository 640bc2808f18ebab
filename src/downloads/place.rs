//! Atomic placement of a finished download (never over an existing file
//! unless asked) and the cleanup of partial downloads left by processes that
//! died mid-download.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

/// Temporary files are named `.heygen-…​.part`. Where the writer's lock cannot
/// be tested, leftovers older than this are removed.
pub(crate) const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);
/// An empty, unlocked temporary file younger than this may belong to a writer
/// that has created it but not locked it yet; it is left alone.
pub(crate) const UNLOCKED_EMPTY_GRACE: Duration = Duration::from_secs(60);
pub(crate) const TEMP_PREFIX: &str = ".heygen-";
pub(crate) const TEMP_SUFFIX: &str = ".part";

/// Deletes a temporary file when dropped, unless disarmed.
pub(crate) struct TempFile {
    path: PathBuf,
    pub(crate) armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Creates a temporary file and takes its exclusive advisory lock before
/// anything is written, so that the leftover cleanup of any process can tell
/// a live writer (locked) from a dead one (unlocked). Where locks are not
/// supported the file is used unlocked (cleanup then goes by age).
pub(crate) async fn create_locked_temp(path: &Path) -> std::io::Result<(std::fs::File, TempFile)> {
    let p = path.to_path_buf();
    let file = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&p)?;
        if let Err(std::fs::TryLockError::Error(e)) = file.try_lock() {
            tracing::debug!("temporary download file not locked: {e}");
        }
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(std::io::Error::other)??;
    Ok((
        file,
        TempFile {
            path: path.to_path_buf(),
            armed: true,
        },
    ))
}

/// Moves the verified temporary file to `target` (or, without `overwrite`, to
/// the first free `name (n).mp4`) and returns where it landed.
pub(crate) async fn place(temp: &Path, target: &Path, overwrite: bool) -> std::io::Result<PathBuf> {
    if overwrite {
        tokio::fs::rename(temp, target).await?;
        return Ok(target.to_path_buf());
    }
    for n in 1..=1000u32 {
        let candidate = numbered(target, n);
        // A hard link never replaces an existing file: an atomic "create if absent".
        match tokio::fs::hard_link(temp, &candidate).await {
            Ok(()) => {
                let _ = tokio::fs::remove_file(temp).await;
                return Ok(candidate);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(_) => {
                // No hard links on this file system: check, then rename.
                if tokio::fs::symlink_metadata(&candidate).await.is_ok() {
                    continue;
                }
                tokio::fs::rename(temp, &candidate).await?;
                return Ok(candidate);
            }
        }
    }
    Err(std::io::Error::new(
        ErrorKind::AlreadyExists,
        "too many files with this name",
    ))
}

/// `name.mp4` for n = 1, `name (n).mp4` after that.
pub(crate) fn numbered(target: &Path, n: u32) -> PathBuf {
    if n <= 1 {
        return target.to_path_buf();
    }
    let name = target
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".mp4").unwrap_or(&name);
    target.with_file_name(format!("{stem} ({n}).mp4"))
}

/// The first path among `name.mp4`, `name (2).mp4`, … that does not exist yet.
pub async fn free_path(target: &Path) -> PathBuf {
    for n in 1..=1000u32 {
        let candidate = numbered(target, n);
        if tokio::fs::symlink_metadata(&candidate).await.is_err() {
            return candidate;
        }
    }
    target.to_path_buf()
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Removes the temporary files in `dir` whose writer is gone (see
/// [`writer_gone`]); a live writer's file is never touched. Returns how many
/// were removed.
pub(crate) async fn clean_leftovers(dir: &Path) -> usize {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || clean_leftovers_blocking(&dir, STALE_TEMP_AGE))
        .await
        .unwrap_or(0)
}

pub(crate) fn clean_leftovers_blocking(dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_temp_name(&name) {
            continue;
        }
        // Not followed: a link named like a temporary file is not ours.
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if !writer_gone(&entry.path(), meta.len(), age, max_age) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => {
                removed += 1;
                tracing::info!("removed a partial download left by a stopped process: {name}");
            }
            Err(e) => tracing::debug!("could not remove {name}: {e}"),
        }
    }
    removed
}

/// Whether a temporary file's writer is gone. On Unix a writer holds the
/// file's lock from before its first byte until the file is renamed, so an
/// unlocked file with bytes is a leftover; an unlocked empty one is only
/// once it is older than [`UNLOCKED_EMPTY_GRACE`] (its writer may be between
/// creating and locking it). Where locks cannot be tested, a file older
/// than `max_age` is a leftover.
pub(crate) fn writer_gone(path: &Path, len: u64, age: Duration, max_age: Duration) -> bool {
    #[cfg(unix)]
    {
        let Ok(file) = std::fs::File::open(path) else {
            return false;
        };
        match file.try_lock() {
            Ok(()) => return len > 0 || age >= UNLOCKED_EMPTY_GRACE,
            Err(std::fs::TryLockError::WouldBlock) => return false,
            Err(std::fs::TryLockError::Error(_)) => {}
        }
    }
    #[cfg(not(unix))]
    let _ = (path, len);
    age >= max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_names() {
        let t = Path::new("/d/clip.mp4");
        assert_eq!(numbered(t, 1), PathBuf::from("/d/clip.mp4"));
        assert_eq!(numbered(t, 2), PathBuf::from("/d/clip (2).mp4"));
    }

    #[tokio::test]
    async fn place_never_replaces_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("v.mp4");
        std::fs::write(&target, b"old").unwrap();
        let temp = dir.path().join(".heygen-x.part");
        std::fs::write(&temp, b"new").unwrap();
        let landed = place(&temp, &target, false).await.unwrap();
        assert_eq!(landed, dir.path().join("v (2).mp4"));
        assert_eq!(std::fs::read(&target).unwrap(), b"old");
        assert_eq!(std::fs::read(&landed).unwrap(), b"new");
        assert!(!temp.exists());

        std::fs::write(&temp, b"newer").unwrap();
        let landed = place(&temp, &target, true).await.unwrap();
        assert_eq!(landed, target);
        assert_eq!(std::fs::read(&target).unwrap(), b"newer");
        assert!(!temp.exists());
    }

    #[test]
    fn leftovers_of_dead_writers_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let dead = d.join(".heygen-task-999999999-0000000000000001.part");
        let keep = d.join("video.mp4");
        let young_empty = d.join(".heygen-task-1-0000000000000002.part");
        std::fs::write(&dead, b"partial bytes").unwrap();
        std::fs::write(&keep, b"x").unwrap();
        std::fs::write(&young_empty, b"").unwrap();
        // A live writer: this process holds the lock on an open file.
        let live = d.join(".heygen-task-2-0000000000000003.part");
        let live_file = std::fs::File::create(&live).unwrap();
        live_file.lock().unwrap();
        std::fs::write(&live, b"still writing").unwrap();

        let removed = clean_leftovers_blocking(d, STALE_TEMP_AGE);
        if cfg!(unix) {
            assert_eq!(removed, 1);
            assert!(!dead.exists());
            assert!(live.exists(), "a live writer's file is never removed");
            assert!(young_empty.exists(), "may be between create and lock");
        } else {
            // By age only: nothing is a day old.
            assert_eq!(removed, 0);
        }
        assert!(keep.exists());

        // An old empty unlocked file is a leftover too; the live one stays
        // even when it is old.
        let old = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
        for p in [&young_empty, &live] {
            std::fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        clean_leftovers_blocking(d, STALE_TEMP_AGE);
        assert!(!young_empty.exists());
        if cfg!(unix) {
            assert!(live.exists());
        }
        drop(live_file);
        // The writer is gone: its file is now a leftover.
        if cfg!(unix) {
            assert_eq!(clean_leftovers_blocking(d, STALE_TEMP_AGE), 1);
            assert!(!live.exists());
        }
        assert!(keep.exists());
    }
}
