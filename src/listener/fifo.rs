//! The FIFO input: a named pipe auditspan owns, the target of Vault's `file` audit device
//! (`file_path` = the pipe), with `tee = "stdout"` to keep the audit log in `kubectl logs`.
//!
//! - The pipe is created with the configured mode (0600 by default) when missing; an
//!   existing pipe is reused (its mode set); anything else at the path is an error. It is
//!   left in place at exit, so that the device keeps its path.
//! - It is opened read-write and non-blocking at bind, before anything runs: a pipe with
//!   a reader-writer open never reports end of file when a writer closes, and a writer's
//!   open never blocks while auditspan runs. Writers may close and reopen it at will
//!   (Vault's SIGHUP reopen); the read goes on. The whole pipe is one stream (one event
//!   clock): Vault writes each entry whole (≤ `PIPE_BUF` is atomic; Vault writes larger
//!   ones under a mutex, so one device's lines never interleave).
//! - While auditspan is not running, a writer that has the pipe open gets EPIPE and one
//!   that opens it blocks until auditspan opens it: the audit device fails. Never make it
//!   the only audit device.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::{net::unix::pipe, sync::oneshot};
use tracing::{info, warn};

use super::{InputContext, ListenerError, tee::Tee};
use crate::{
    config::{FifoInput, Tee as TeeConfig},
    correlate::Source,
    telemetry::{metrics as m, ready::InputReporter},
};

/// A named pipe, open for reading and writing.
pub struct Bound {
    path: PathBuf,
    file: File,
    tee: Option<TeeConfig>,
}

/// Creates the pipe if missing, sets its mode and opens it.
pub fn bind(config: &FifoInput) -> Result<Bound, ListenerError> {
    let path = &config.path;
    let err = |source| ListenerError::Open {
        what: "named pipe",
        path: path.clone(),
        cause: source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => {}
        Ok(_) => return Err(ListenerError::NotAFifo { path: path.clone() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mode = nix::sys::stat::Mode::from_bits_truncate(config.mode);
            nix::unistd::mkfifo(path.as_path(), mode).map_err(|e| err(io::Error::from(e)))?;
            info!(path = %path.display(), "Created the named pipe.");
        }
        Err(e) => return Err(err(e)),
    }
    // mkfifo's mode went through the umask; set it as configured.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.mode)).map_err(err)?;
    let file = open_read_write(path).map_err(err)?;
    grow_pipe(&file);
    Ok(Bound {
        path: path.clone(),
        file,
        tee: config.tee,
    })
}

/// The pipe buffer auditspan asks for (Linux's default is 64 KiB; 1 MiB is the default
/// `/proc/sys/fs/pipe-max-size`).
const PIPE_BYTES: i32 = 1 << 20;

/// Grows the pipe's buffer to [`PIPE_BYTES`], so that a writer is not held up while the
/// reader waits for a commit (with 64 KiB, the reads were bound to 64 KiB per commit:
/// ~15,000 events/s). Where that is refused, the pipe keeps its size.
pub(super) fn grow_pipe(file: &impl std::os::fd::AsFd) {
    if let Err(err) = nix::fcntl::fcntl(file, nix::fcntl::FcntlArg::F_SETPIPE_SZ(PIPE_BYTES)) {
        tracing::debug!(error = %err, "The pipe buffer keeps its size.");
    }
}

fn open_read_write(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
}

/// Reads the pipe until shutdown (on a reader thread), then takes what writers had sent.
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    let Bound { path, file, tee } = bound;
    let (done, finished) = oneshot::channel::<()>();
    let name = ctx.name.clone();
    let readers = ctx.readers.clone();
    let read = async move {
        let receiver = match pipe::Receiver::from_file(file) {
            Ok(r) => r,
            Err(err) => {
                m::input_errors(&ctx.name, m::INPUT_ERROR_OPEN).increment(1);
                warn!(input = %ctx.name, error = %err, "Could not register the named pipe.");
                return;
            }
        };
        let source = Source {
            input: ctx.id,
            stream: super::new_stream(),
        };
        let mut reader = ctx.stream_reader(source);
        info!(input = %ctx.name, path = %path.display(), "Reading the named pipe.");
        ready.listening(true);
        let result = match tee {
            Some(TeeConfig::Stdout) => match Tee::stdout(&ctx.name, ctx.max_line_bytes) {
                Ok(tee) => {
                    let mut teed = tee.reader(receiver);
                    let result = reader.read_to_end(&mut teed, Some(&ctx.shutdown)).await;
                    if let Some(tee) = teed.into_tee() {
                        tee.finish().await;
                    }
                    result
                }
                Err(err) => Err(err),
            },
            None => {
                let mut receiver = receiver;
                reader.read_to_end(&mut receiver, Some(&ctx.shutdown)).await
            }
        };
        ready.listening(false);
        if let Err(err) = result {
            m::input_errors(&ctx.name, m::INPUT_ERROR_READ).increment(1);
            warn!(input = %ctx.name, error = %err, "Reading the named pipe failed.");
        }
        reader.close().await;
        done.send(()).ok();
    };
    // Parsing is the expensive step: read on a reader thread, as connections are.
    readers.spawn(read);
    finished.await.ok();
    info!(input = %name, "Stopped reading the named pipe.");
}
