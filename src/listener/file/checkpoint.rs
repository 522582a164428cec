//! The file input's checkpoint: where each followed file is read up to, stored by the
//! correlator in the same commit as the spans and waiting entries made from the bytes
//! before it (`Ingest::checkpoint`, key = the input's name).
//!
//! # Warning
//! This is an on-disk format: a checkpoint written by one version is read by the next.
//! Never change the meaning of a byte; add a version instead.
//!
//! ```text
//! u8 version (= 1) · u32 BE count · count × file
//! file: u64 BE dev · u64 BE inode · u64 BE offset
//!       · u32 BE fingerprint length (0: not known yet) · [16] fingerprint hash (if length > 0)
//!       · u32 BE path length · path bytes (as the OS gave them)
//! ```
//!
//! `offset` is the end of the last line handed to the correlator (an unfinished last line
//! is read again after a restart). The fingerprint is the first 16 bytes of SHA-256 of the
//! file's first `length` bytes: its first line with the newline, or its first
//! [`FINGERPRINT_MAX`](super::tracked::FINGERPRINT_MAX) bytes when that line is longer.
//! The path is where the file was last seen, a hint for finding it after a rotation.

use std::{
    ffi::OsString,
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::PathBuf,
};

use super::tracked::{FileId, Fingerprint};

const VERSION: u8 = 1;

/// One followed file's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub id: FileId,
    pub fingerprint: Option<Fingerprint>,
    pub offset: u64,
    pub path: PathBuf,
}

/// Why stored checkpoint bytes could not be read (the input then starts over; each file
/// from its beginning, or from its end with `start_at = "end"`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The bytes end before a field does.
    #[error("the checkpoint is truncated")]
    Truncated,
    /// A newer auditspan wrote it.
    #[error("checkpoint version {0} is not supported (this version reads 1)")]
    Version(u8),
    /// A fingerprint length this version never writes.
    #[error("bad fingerprint length {0}")]
    Fingerprint(u32),
}

pub fn encode(positions: &[Position]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + positions.len() * 80);
    out.push(VERSION);
    out.extend_from_slice(&(positions.len() as u32).to_be_bytes());
    for p in positions {
        out.extend_from_slice(&p.id.dev.to_be_bytes());
        out.extend_from_slice(&p.id.ino.to_be_bytes());
        out.extend_from_slice(&p.offset.to_be_bytes());
        match &p.fingerprint {
            Some(fp) => {
                out.extend_from_slice(&fp.len.to_be_bytes());
                out.extend_from_slice(&fp.hash);
            }
            None => out.extend_from_slice(&0u32.to_be_bytes()),
        }
        let path = p.path.as_os_str().as_bytes();
        out.extend_from_slice(&(path.len() as u32).to_be_bytes());
        out.extend_from_slice(path);
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Vec<Position>, CheckpointError> {
    let mut r = Reader(bytes);
    let version = r.take(1)?[0];
    if version != VERSION {
        return Err(CheckpointError::Version(version));
    }
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let dev = r.u64()?;
        let ino = r.u64()?;
        let offset = r.u64()?;
        let fingerprint = match r.u32()? {
            0 => None,
            len if len as usize <= super::tracked::FINGERPRINT_MAX => {
                let mut hash = [0u8; 16];
                hash.copy_from_slice(r.take(16)?);
                Some(Fingerprint { len, hash })
            }
            len => return Err(CheckpointError::Fingerprint(len)),
        };
        let path_len = r.u32()? as usize;
        let path = PathBuf::from(OsString::from_vec(r.take(path_len)?.to_vec()));
        out.push(Position {
            id: FileId { dev, ino },
            fingerprint,
            offset,
            path,
        });
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CheckpointError> {
        if self.0.len() < n {
            return Err(CheckpointError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, CheckpointError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Positions read back equal, with and without a fingerprint; damaged bytes are errors.
    #[test]
    fn positions_round_trip_and_damage_is_an_error() {
        let positions = vec![
            Position {
                id: FileId { dev: 2049, ino: 77 },
                fingerprint: Some(Fingerprint {
                    len: 312,
                    hash: [7; 16],
                }),
                offset: 1 << 40,
                path: PathBuf::from("/var/log/vault/audit.log"),
            },
            Position {
                id: FileId { dev: 1, ino: 2 },
                fingerprint: None,
                offset: 0,
                path: PathBuf::from(OsString::from_vec(b"odd\xffname".to_vec())),
            },
        ];
        let bytes = encode(&positions);
        assert_eq!(decode(&bytes).unwrap(), positions);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(CheckpointError::Truncated)
        );
        let mut newer = bytes.clone();
        newer[0] = 2;
        assert_eq!(decode(&newer), Err(CheckpointError::Version(2)));
    }
}
