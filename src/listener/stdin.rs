//! The stdin input: `bao server … | auditspan run --config …`. It reads the daemon's
//! standard input until its end, then ends; the daemon then drains like `import` (every
//! entry still waiting expires, every span is committed and delivered) and exits 0 (see
//! `app::run`). With `tee = "stdout"` the raw lines are copied to stdout.
//!
//! A pipe or FIFO on stdin is read non-blocking on a reader thread; anything else (a
//! regular file, a terminal) through tokio's blocking stdin. SIGTERM before the end stops
//! it like any input (what the writer had sent is still taken) and keeps waiting entries
//! for the next start.

use std::os::fd::AsFd;

use tokio::{io::AsyncRead, net::unix::pipe, sync::oneshot};
use tracing::{info, warn};

use super::{InputContext, ListenerError, tee::Tee};
use crate::{
    config::{StdinInput, Tee as TeeConfig},
    correlate::Source,
    telemetry::{metrics as m, ready::InputReporter},
};

/// Stdin, taken over.
pub struct Bound {
    /// A duplicate of fd 0.
    file: std::fs::File,
    tee: Option<TeeConfig>,
}

pub fn bind(config: &StdinInput) -> Result<Bound, ListenerError> {
    let fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| ListenerError::Open {
            what: "standard input",
            path: "/dev/stdin".into(),
            cause: source,
        })?;
    let file = std::fs::File::from(fd);
    if file.metadata().is_ok_and(|m| {
        use std::os::unix::fs::FileTypeExt;
        m.file_type().is_fifo()
    }) {
        super::fifo::grow_pipe(&file);
    }
    Ok(Bound {
        file,
        tee: config.tee,
    })
}

/// Reads stdin to its end (or shutdown), then returns: the input has ended.
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    let (done, finished) = oneshot::channel::<()>();
    let readers = ctx.readers.clone();
    let read = async move {
        let Bound { file, tee } = bound;
        let input: Box<dyn AsyncRead + Unpin + Send> = match pipe::Receiver::from_file(file) {
            Ok(pipe) => Box::new(pipe),
            // Not a pipe: a file or a terminal.
            Err(_) => Box::new(tokio::io::stdin()),
        };
        let source = Source {
            input: ctx.id,
            stream: super::new_stream(),
        };
        let mut reader = ctx.stream_reader(source);
        info!(input = %ctx.name, "Reading standard input.");
        ready.listening(true);
        let result = match tee {
            Some(TeeConfig::Stdout) => match Tee::stdout(&ctx.name, ctx.max_line_bytes) {
                Ok(tee) => {
                    let mut teed = tee.reader(input);
                    let result = reader.read_to_end(&mut teed, Some(&ctx.shutdown)).await;
                    if let Some(tee) = teed.into_tee() {
                        tee.finish().await;
                    }
                    result
                }
                Err(err) => Err(err),
            },
            None => {
                let mut input = input;
                reader.read_to_end(&mut input, Some(&ctx.shutdown)).await
            }
        };
        ready.listening(false);
        if let Err(err) = result {
            m::input_errors(&ctx.name, m::INPUT_ERROR_READ).increment(1);
            warn!(input = %ctx.name, error = %err, "Reading standard input failed.");
        }
        let counts = reader.close().await;
        info!(input = %ctx.name, lines = counts.received, "Standard input ended.");
        done.send(()).ok();
    };
    readers.spawn(read);
    // The sender is dropped unanswered only if the reader thread died.
    finished.await.ok();
}
