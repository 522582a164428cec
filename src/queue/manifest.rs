//! The files beside the sled directory: `queue.manifest` and `queue.lock`.
//!
//! The manifest exists so that a database sled opens as empty (a truncated or zero-length
//! `db` file, a deleted directory) is an error instead of a silently empty queue. It is
//! written when the database is created, after the database's own `meta` entries are
//! flushed, and replaced (temporary file, fsync, rename) at most once a second with the last
//! committed sequence, always after sled flushed that sequence: so a database that opens
//! with an older committed sequence than the manifest's was truncated (sled opens a cut
//! `db` file with what precedes the cut, silently), while a crash never makes the manifest
//! claim more than the database holds.
//!
//! # Warning
//! The manifest is on-disk format: keep its keys and their meaning.
//! ```text
//! # auditspan queue manifest: written when the queue was created; do not edit.
//! format = 1
//! db_id = 5f0c…(32 hex digits, also stored in the database as meta `db_id`)
//! segment_size = 8388608
//! committed = 120345   (a lower bound of the database's committed sequence)
//! ```

use std::{
    fs::{self, File, OpenOptions},
    io::{Read, Seek, Write},
    path::{Path, PathBuf},
};

use nix::{
    errno::Errno,
    fcntl::{Flock, FlockArg},
};

use super::QueueError;

/// What the manifest records about the database beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// Queue format version ([`super::FORMAT_VERSION`] when written by this build).
    pub format: u32,
    /// Random id of this database; the database's meta `db_id` must match.
    pub db_id: String,
    /// sled `segment_size` the database was created with (sled refuses another).
    pub segment_size: usize,
    /// A sequence the database had committed (flushed) when the manifest was written.
    pub committed: u64,
}

impl Manifest {
    /// Reads `path`; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Manifest>, QueueError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(QueueError::io(path, source)),
        };
        let bad = |detail: String| QueueError::Manifest {
            path: path.to_owned(),
            detail,
        };
        let (mut format, mut db_id, mut segment_size, mut committed) = (None, None, None, 0);
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(format!("line {line:?} is not `key = value`")));
            };
            let value = value.trim();
            match key.trim() {
                "format" => format = Some(value.parse().map_err(|_| bad("bad format".into()))?),
                "db_id" => db_id = Some(value.to_owned()),
                "segment_size" => {
                    segment_size = Some(value.parse().map_err(|_| bad("bad segment_size".into()))?);
                }
                "committed" => {
                    committed = value.parse().map_err(|_| bad("bad committed".into()))?;
                }
                other => return Err(bad(format!("unknown key {other:?}"))),
            }
        }
        match (format, db_id, segment_size) {
            (Some(format), Some(db_id), Some(segment_size)) => Ok(Some(Manifest {
                format,
                db_id,
                segment_size,
                committed,
            })),
            _ => Err(bad("format, db_id or segment_size is missing".into())),
        }
    }

    /// Writes the manifest to `path` atomically: a temporary file, fsync, rename, fsync of
    /// the directory.
    pub fn write(&self, path: &Path) -> Result<(), QueueError> {
        let tmp = path.with_extension("manifest.tmp");
        let text = format!(
            "# auditspan queue manifest: written when the queue was created; do not edit.\n\
             format = {}\ndb_id = {}\nsegment_size = {}\ncommitted = {}\n",
            self.format, self.db_id, self.segment_size, self.committed
        );
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|source| QueueError::io(path, source))
    }
}

/// An exclusive `flock` on `<data_dir>/queue.lock`, held for the store's lifetime; the file
/// holds the owner's pid so that the error can name it.
#[derive(Debug)]
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    /// Takes the lock or fails with [`QueueError::Locked`] naming the holder's pid.
    pub fn acquire(path: &Path, queue_path: &Path) -> Result<DirLock, QueueError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|source| QueueError::io(path, source))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut lock) => {
                let pid = std::process::id().to_string();
                let write = |file: &mut File| -> std::io::Result<()> {
                    file.set_len(0)?;
                    file.rewind()?;
                    file.write_all(pid.as_bytes())
                };
                write(&mut lock).map_err(|source| QueueError::io(path, source))?;
                Ok(DirLock { _lock: lock })
            }
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let pid = file
                    .read_to_string(&mut text)
                    .ok()
                    .and_then(|_| text.trim().parse().ok());
                Err(QueueError::Locked {
                    path: queue_path.to_owned(),
                    pid,
                })
            }
            Err((_, errno)) => Err(QueueError::io(path, std::io::Error::from(errno))),
        }
    }
}

/// `<data_dir>/queue.manifest`.
pub fn manifest_path(data_dir: &Path) -> PathBuf {
    data_dir.join("queue.manifest")
}

/// `<data_dir>/queue.lock`.
pub fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("queue.lock")
}
