//! One followed file: its identity, where it is read up to, and the reads.
//!
//! A file is identified by (device, inode) plus the fingerprint of its first line, since
//! a filesystem reuses a deleted file's inode at once (ext4 does) and `copytruncate`
//! or `cat new > audit.log` give an inode new content.

use std::{
    fs::File,
    io::{self, Read, Seek, SeekFrom},
    os::unix::fs::{FileExt, MetadataExt},
    path::PathBuf,
    time::{Instant, SystemTime},
};

use memchr::{memchr, memrchr};
use sha2::{Digest, Sha256};

use crate::{correlate::Source, listener::Framer};

/// Bytes a fingerprint covers at most: a first line longer than this is fingerprinted by
/// its first 64 KiB (audit lines differ in their first few hundred bytes: time, id).
pub const FINGERPRINT_MAX: usize = 64 * 1024;

/// (device, inode): what a file is while it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// SHA-256 (first 16 bytes) of a file's first `len` bytes: its first line, newline
/// included, or its first [`FINGERPRINT_MAX`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: [u8; 16],
}

impl Fingerprint {
    fn of(bytes: &[u8]) -> Fingerprint {
        let digest = Sha256::digest(bytes);
        let mut hash = [0u8; 16];
        hash.copy_from_slice(&digest[..16]);
        Fingerprint {
            len: bytes.len() as u32,
            hash,
        }
    }

    /// The fingerprint of `file`, or `None` while its first line is unfinished (and shorter
    /// than [`FINGERPRINT_MAX`]).
    pub fn read(file: &File) -> io::Result<Option<Fingerprint>> {
        let mut buf = vec![0u8; FINGERPRINT_MAX];
        let n = read_full_at(file, &mut buf, 0)?;
        let head = &buf[..n];
        Ok(match memchr(b'\n', head) {
            Some(i) => Some(Fingerprint::of(&head[..=i])),
            None if n == FINGERPRINT_MAX => Some(Fingerprint::of(head)),
            None => None,
        })
    }

    /// Whether `file` starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let mut buf = vec![0u8; self.len as usize];
        let n = read_full_at(file, &mut buf, 0)?;
        Ok(n == buf.len() && Fingerprint::of(&buf) == *self)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The end of the last complete line of `file` (0 when it has none): where
/// `start_at = "end"` starts, so that a line being written is not read from its middle.
pub fn last_line_end(file: &File, len: u64) -> io::Result<u64> {
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let want = (end - start) as usize;
        let n = read_full_at(file, &mut buf[..want], start)?;
        if let Some(i) = memrchr(b'\n', &buf[..n]) {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// A file being followed.
pub struct Tracked {
    pub id: FileId,
    pub file: File,
    /// Where it was last seen (a glob match, or a rotated name).
    pub path: PathBuf,
    pub fingerprint: Option<Fingerprint>,
    /// Bytes handed to the framer; [`Tracked::offset`] is where the lines handed on end.
    pub read_pos: u64,
    pub framer: Framer,
    /// Its stream: every file has its own event clock.
    pub source: Source,
    /// Since when no path of the pattern names it (renamed away or deleted): it is read
    /// to its end and closed once it stops growing.
    pub orphan_since: Option<Instant>,
    /// When a read last found new bytes.
    pub last_growth: Instant,
    /// Its modification time when the pattern was last expanded: among the files the
    /// pattern names, older ones are read first (a rotated `audit.log.1` the pattern
    /// matches before the new `audit.log`).
    pub modified: Option<SystemTime>,
}

impl Tracked {
    /// The end of the last line handed on: what the checkpoint stores.
    pub fn offset(&self) -> u64 {
        self.read_pos - self.framer.pending() as u64
    }

    /// Reads at most `max` bytes at the read position into the framer; 0 at the end.
    /// (`read_to_end` on a `take` fills the buffer's spare capacity without zeroing it
    /// first, as `read_at` would need.)
    pub fn read_chunk(&mut self, max: usize) -> io::Result<usize> {
        let buf = self.framer.buffer(max);
        let before = buf.len();
        let mut file = &self.file;
        let read = file
            .seek(SeekFrom::Start(self.read_pos))
            .and_then(|_| file.take(max as u64).read_to_end(buf));
        match read {
            Ok(n) => {
                self.read_pos += n as u64;
                Ok(n)
            }
            Err(err) => {
                // What a failed read appended is dropped: it is read again at the next try.
                buf.truncate(before);
                Err(err)
            }
        }
    }

    /// The file's size now.
    pub fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// The fingerprint covers the first line with its newline, is unknown until that line
    /// is complete, and tells content apart; the last line end skips an unfinished line.
    #[test]
    fn fingerprint_and_last_line_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let mut w = File::create(&path).unwrap();
        w.write_all(b"{\"first\":").unwrap();
        let r = File::open(&path).unwrap();
        assert_eq!(Fingerprint::read(&r).unwrap(), None);
        assert_eq!(last_line_end(&r, 9).unwrap(), 0);
        w.write_all(b"1}\n{\"second\"").unwrap();
        let fp = Fingerprint::read(&r).unwrap().unwrap();
        assert_eq!(fp.len, 12);
        assert!(fp.matches(&r).unwrap());
        assert_eq!(last_line_end(&r, r.metadata().unwrap().len()).unwrap(), 12);

        std::fs::write(&path, b"{\"other\":12}\n").unwrap();
        assert!(!fp.matches(&r).unwrap(), "same length, other content");
        std::fs::write(&path, b"{}\n").unwrap();
        assert!(!fp.matches(&r).unwrap(), "shorter");

        let long = vec![b'x'; FINGERPRINT_MAX + 10];
        std::fs::write(&path, &long).unwrap();
        let fp = Fingerprint::read(&r).unwrap().unwrap();
        assert_eq!(fp.len as usize, FINGERPRINT_MAX);
    }
}
