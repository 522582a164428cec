//! A segment's data file, `<segment>/spans`: its span records ([`super::record::encode_record`]),
//! one after the other, each written once and never rewritten.
//!
//! Why not sled values: sled 0.34 writes a leaf again whenever it consolidates it (every 10
//! changes) or splits it (past 16 entries), values included, so every span byte went to
//! disk two to three times, and a segment closes before sled's cleaner reuses that space
//! (2.2–2.7 × the queued bytes on disk); values past a quarter of sled's segment go to
//! `blobs/` files that are rewritten the same way, and never fsynced. Here each byte is
//! written once, made durable by this file's own `fdatasync` before the sled batch that
//! indexes it is flushed, and read back with one `pread`.
//!
//! # Invariants
//! - Created (empty) before the segment's base is flushed, so every segment with a base
//!   has one.
//! - Bytes below the active segment's committed end (the end of its last indexed record)
//!   are never written again; a write that failed, or one whose sled batch never reached
//!   the disk, left bytes past that end, which the next commit overwrites and the next
//!   open truncates.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

/// The data file's name inside its segment directory.
pub const DATA_FILE: &str = "spans";

/// An open data file.
#[derive(Debug)]
pub(crate) struct DataFile {
    path: PathBuf,
    file: File,
}

impl DataFile {
    /// Creates the empty data file of a new segment (the caller fsyncs the directory).
    pub fn create(segment: &Path) -> io::Result<DataFile> {
        let path = segment.join(DATA_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(DataFile { path, file })
    }

    /// Opens the active segment's data file for reading and writing.
    pub fn open_rw(segment: &Path) -> io::Result<DataFile> {
        let path = segment.join(DATA_FILE);
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        Ok(DataFile { path, file })
    }

    /// Opens a closed segment's data file for reading.
    pub fn open_read(segment: &Path) -> io::Result<DataFile> {
        let path = segment.join(DATA_FILE);
        let file = File::open(&path)?;
        Ok(DataFile { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Writes `bytes` at `offset` and waits until they are on disk (`fdatasync`, which
    /// also makes the file's new length durable).
    pub fn write_durable(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all_at(bytes, offset)?;
        self.file.sync_data()
    }

    /// Cuts the file to `len` bytes, durably.
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()
    }

    /// The `len` bytes at `offset` (`UnexpectedEof` when the file ends before them).
    pub fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    }
}
