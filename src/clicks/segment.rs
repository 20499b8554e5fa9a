//! One segment file of the click journal, held under an exclusive `flock`:
//! the process that writes it holds the lock for the segment's life, and an
//! adopter may read a segment only once it holds the lock itself, which is
//! free only when the owner is gone (the kernel releases a dead process's
//! locks). Owns every file-system step, so that their order is written
//! once:
//! - **creation** is race-free: `<name>.clicks.tmp` is created, locked and
//!   given its header, then renamed to `<name>.clicks`; adopters look only
//!   at `*.clicks`, so none ever sees a segment that is not locked or has
//!   no header;
//! - **removal** unlinks the file while still holding the lock, then
//!   closes it: an adopter that was waiting for the lock finds the file no
//!   longer linked and leaves it ([`LockedSegment::try_lock`] checks);
//! - **appends** go through one `O_APPEND` descriptor, so a failed write
//!   (`ENOSPC` …) truncated back to the last whole record leaves the next
//!   append where it belongs.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The file name ending of a segment.
pub const SEGMENT_SUFFIX: &str = ".clicks";
/// The file name ending of a segment being created.
pub const CREATING_SUFFIX: &str = ".clicks.tmp";

/// A segment file this process holds the lock of.
#[derive(Debug)]
pub struct LockedSegment {
    /// Its name: the file name without `.clicks`, and its `click_batches`
    /// key.
    pub name: String,
    pub path: PathBuf,
    /// Where its records start (the header's length).
    pub records_start: u64,
    file: File,
}

impl LockedSegment {
    /// Creates segment `name` in `dir` with `header`, locked.
    pub fn create(dir: &Path, name: &str, header: &[u8]) -> io::Result<Self> {
        let creating = dir.join(format!("{name}{CREATING_SUFFIX}"));
        let path = dir.join(format!("{name}{SEGMENT_SUFFIX}"));
        let mut file = OpenOptions::new()
            .append(true)
            .read(true)
            .create_new(true)
            .open(&creating)?;
        let made = lock(&file, false).and_then(|locked| {
            if locked {
                Ok(())
            } else {
                Err(io::Error::other(
                    "a segment just created is locked by another",
                ))
            }
        });
        let made = made
            .and_then(|()| file.write_all(header))
            .and_then(|()| std::fs::rename(&creating, &path));
        if let Err(e) = made {
            let _ = std::fs::remove_file(&creating);
            return Err(e);
        }
        Ok(Self {
            name: name.to_owned(),
            path,
            records_start: header.len() as u64,
            file,
        })
    }

    /// Locks the file at `path`, named `name`, when no process holds it and
    /// it is still linked there; `None` otherwise (its owner lives, or it
    /// was removed meanwhile).
    pub fn try_lock(path: &Path, name: &str) -> io::Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).append(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if !lock(&file, true)? {
            return Ok(None);
        }
        let held = file.metadata()?;
        let linked = match std::fs::metadata(path) {
            Ok(now) => now.ino() == held.ino() && now.dev() == held.dev() && held.nlink() > 0,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        Ok(linked.then(|| Self {
            name: name.to_owned(),
            path: path.to_owned(),
            records_start: 0,
            file,
        }))
    }

    /// Appends `bytes`; on failure cuts the file back to `whole_end`, the
    /// end of the last whole record, so no torn record stays in the middle.
    pub fn append(&self, bytes: &[u8], whole_end: u64) -> io::Result<()> {
        let written = (&self.file).write_all(bytes);
        if written.is_err() {
            let _ = self.file.set_len(whole_end);
        }
        written
    }

    /// `fdatasync(2)`: what was appended survives a power loss. Not needed
    /// against a `kill -9`: what `write(2)` returned is in the page cache,
    /// which outlives the process.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The whole file, read from its start whatever the descriptor's
    /// position (appends move it to the end).
    pub fn read_all(&self) -> io::Result<Vec<u8>> {
        let len = usize::try_from(self.file.metadata()?.len()).map_err(io::Error::other)?;
        let mut bytes = vec![0u8; len];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(bytes)
    }

    /// Unlinks the file, then lets the lock go (with the descriptor).
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// `flock(LOCK_EX)`, waiting or not (`LOCK_NB`): `false` when another
/// descriptor holds it and `nonblocking`.
fn lock(file: &File, nonblocking: bool) -> io::Result<bool> {
    let operation = if nonblocking {
        libc::LOCK_EX | libc::LOCK_NB
    } else {
        libc::LOCK_EX
    };
    loop {
        // SAFETY: the descriptor is open for as long as `file` lives.
        if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EWOULDBLOCK) => return Ok(false),
            _ => return Err(error),
        }
    }
}

/// This machine's host name, for segment names (`host` when it cannot be
/// read), restricted to the characters of a file name.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let read = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    let name = if read == 0 {
        let len = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..len]).into_owned()
    } else {
        String::new()
    };
    let name: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_'))
        .collect();
    if name.is_empty() {
        "host".to_owned()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        use rand::RngExt;
        let dir = std::env::temp_dir().join(format!(
            "linkhub-segment-test-{}-{}",
            std::process::id(),
            rand::rng().random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        dir
    }

    #[test]
    fn a_live_segment_cannot_be_locked_and_a_closed_one_can() {
        let dir = scratch();
        let segment = LockedSegment::create(&dir, "a-1", b"head").expect("created");
        assert!(!dir.join("a-1.clicks.tmp").exists());
        assert!(
            LockedSegment::try_lock(&segment.path, "a-1")
                .expect("tried")
                .is_none(),
            "the owner holds it"
        );
        let path = segment.path.clone();
        drop(segment);
        let adopted = LockedSegment::try_lock(&path, "a-1")
            .expect("tried")
            .expect("free once its owner is gone");
        assert_eq!(adopted.read_all().expect("read"), b"head");
        adopted.remove().expect("removed");
        assert!(!path.exists());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_segment_removed_by_its_owner_is_not_adopted() {
        let dir = scratch();
        let segment = LockedSegment::create(&dir, "b-1", b"head").expect("created");
        let path = segment.path.clone();
        // The adopter opened it before the owner removed it.
        let early = OpenOptions::new().read(true).open(&path).expect("open");
        segment.remove().expect("removed");
        assert!(lock(&early, true).expect("lock"), "the lock is free now");
        drop(early);
        assert!(
            LockedSegment::try_lock(&path, "b-1")
                .expect("tried")
                .is_none()
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_append_after_a_cut_lands_at_the_new_end() {
        let dir = scratch();
        let segment = LockedSegment::create(&dir, "c-1", b"head").expect("created");
        segment.append(b"0123", 4).expect("appended");
        // A torn write, cut back as a failed append cuts it.
        (&segment.file).write_all(b"01").expect("written");
        let _ = segment.file.set_len(8);
        segment.append(b"4567", 8).expect("appended");
        assert_eq!(segment.read_all().expect("read"), b"head01234567");
        let _ = std::fs::remove_dir_all(dir);
    }
}
