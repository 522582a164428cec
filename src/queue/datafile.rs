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
    io::{self, IoSlice, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use super::record::{self, SPAN_RECORD_HEADER};

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

    /// Writes `records` at `offset` and waits until they are on disk (`fdatasync`, which
    /// also makes the file's new length durable). One vectored write takes every record's
    /// header, spans and checksum from where they lie.
    pub fn write_durable(&self, offset: u64, records: &Records<'_>) -> io::Result<()> {
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))?;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(3 * records.parts.len());
        for (header, section, crc) in &records.parts {
            slices.extend([
                IoSlice::new(header),
                IoSlice::new(section),
                IoSlice::new(crc),
            ]);
        }
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match file.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => return Err(err),
            }
        }
        self.file.sync_data()
    }

    /// Cuts the file to `len` bytes, durably.
    pub fn truncate(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()
    }

    /// Appends the `len` bytes at `offset` to `buf` (`UnexpectedEof`, `buf` unchanged,
    /// when the file ends before them). Read into the buffer's spare capacity (`seek`, then
    /// `read`): a buffer zeroed first only to be overwritten cost a measurable part of a
    /// drain. Every read and write seeks first (one thread owns the store).
    pub fn read_into(&self, buf: &mut Vec<u8>, offset: u64, len: u32) -> io::Result<()> {
        let start = buf.len();
        buf.reserve(len as usize);
        let mut file = &self.file;
        let read = file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| file.take(u64::from(len)).read_to_end(buf));
        match read {
            Ok(n) if n == len as usize => Ok(()),
            Ok(_) => {
                buf.truncate(start);
                Err(io::ErrorKind::UnexpectedEof.into())
            }
            Err(err) => {
                buf.truncate(start);
                Err(err)
            }
        }
    }

    /// The `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: u32) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_into(&mut buf, offset, len)?;
        Ok(buf)
    }
}

/// The records of one write, each framed around a span section that stays where it is.
#[derive(Debug, Default)]
pub(crate) struct Records<'a> {
    parts: Vec<([u8; SPAN_RECORD_HEADER], &'a [u8], [u8; 4])>,
    len: u64,
}

impl<'a> Records<'a> {
    /// Adds the record of spans `first..first + count` whose span section is `section`;
    /// returns its offset from the start of the write and its length.
    pub fn push(&mut self, first: u64, count: u32, section: &'a [u8]) -> (u64, u32) {
        let (header, crc) = record::record_frame(first, count, section);
        let at = self.len;
        let len = (SPAN_RECORD_HEADER + section.len() + crc.len()) as u32;
        self.parts.push((header, section, crc));
        self.len += u64::from(len);
        (at, len)
    }

    /// Bytes of every record.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }
}
