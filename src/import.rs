//! `auditspan import`: feeds captured audit logs through the same framer, parser,
//! correlator and sinks as the daemon.
//!
//! Files are read in the order of their first event's time, as one input with one event
//! clock, so that rotated logs of one device pair across file boundaries. When the last
//! file ends, every entry still waiting expires. Spans go through a queue like the
//! daemon's, in a fresh temporary data directory unless one is given (so an import never
//! fights a running daemon for its lock), and the import ends once every sink has
//! acknowledged every span. Rejected lines go to the dead-letter file given on the
//! command line, created only when the first one arrives. Its progress shows on stderr
//! while it runs ([`crate::progress`]).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use actix::prelude::*;
use tokio::io::AsyncReadExt;

use crate::{
    app,
    config::Config,
    correlate::{Counts, Feed, Source},
    deadletter::DeadLetter,
    event::{Parsed, parse_line},
    listener::{Delivery, Frame, Framer, LineCounts, LineHandler, StreamReader},
    progress::{Counting, Display, Progress},
};

/// The input name `import` uses in metrics and dead-letter records.
pub const INPUT: &str = "import";

/// Lines handed to the correlator at a time.
const BATCH_LINES: u64 = 1024;

#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub files: Vec<PathBuf>,
    /// Overrides the first input's `prefix`.
    pub prefix: Option<String>,
    pub deadletter: PathBuf,
    /// Keep the queue here instead of in a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Show the progress on stderr: a bar on a terminal, else a line this often; `None`:
    /// nothing (the library's callers, tests of the summary).
    pub progress: Option<std::time::Duration>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// The files in the order they were read.
    pub files: Vec<PathBuf>,
    pub lines: LineCounts,
    pub correlator: Counts,
    /// Lines written to the dead-letter file.
    pub dead_letters: u64,
    pub deadletter: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("sinks did not acknowledge every span within import_timeout ({0:?})")]
    Timeout(std::time::Duration),
    #[error("{0} spans could not be committed to the queue")]
    Undelivered(u64),
    #[error("temporary data directory: {0}")]
    TempDir(std::io::Error),
    #[error(transparent)]
    App(#[from] app::AppError),
    #[error("the pipeline stopped unexpectedly: {0}")]
    Mailbox(MailboxError),
}

// By hand rather than `#[from]`, which would also make the cause the error's `source()`:
// the message names it already, and `{:#}` would print it twice.
impl From<MailboxError> for ImportError {
    fn from(cause: MailboxError) -> Self {
        ImportError::Mailbox(cause)
    }
}

/// Runs an import inside an actix system; spans go to the configured sinks (stdout goes
/// to `stdout`).
pub async fn run(
    config: &Config,
    options: ImportOptions,
    stdout: impl Fn() -> Box<dyn std::io::Write + Send>,
) -> Result<ImportSummary, ImportError> {
    let prefix = options
        .prefix
        .clone()
        .or_else(|| config.inputs.first().map(|i| i.prefix.clone()))
        .unwrap_or_default();
    let max_line_bytes = config.inputs.first().map_or(4 << 20, |i| i.max_line_bytes);
    let limits = config.parse.limits();

    let mut files = Vec::new();
    for path in &options.files {
        files.push((
            first_event_time(path, &prefix, max_line_bytes).await?,
            path.clone(),
        ));
    }
    // Files without any event go last; the sort is stable, so ties keep command-line order.
    files.sort_by_key(|(time, _)| time.unwrap_or(i64::MAX));
    let files: Vec<PathBuf> = files.into_iter().map(|(_, p)| p).collect();

    let temp;
    let data_dir = match &options.data_dir {
        Some(dir) => dir.as_path(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("auditspan-import-")
                .tempdir()
                .map_err(ImportError::TempDir)?;
            temp.path()
        }
    };
    let deadletter =
        DeadLetter::new(options.deadletter.clone(), config.deadletter_max_bytes).start();
    let pipeline = app::Pipeline::start(
        config,
        data_dir,
        &[INPUT.to_owned()],
        Feed::Replay,
        &stdout,
        deadletter.clone(),
    )
    .await?;

    // Every file is one stream of the one input: rotated logs of a device pair across
    // file boundaries.
    let delivery = Delivery::new(Source::from(0), pipeline.correlator.clone(), deadletter);
    let lines = LineHandler::new(INPUT, prefix, limits);
    let mut reader = StreamReader::new(max_line_bytes, lines, delivery).batch_lines(BATCH_LINES);
    let mut total = 0;
    for path in &files {
        total += tokio::fs::metadata(path).await.map_or(0, |m| m.len());
    }
    let progress = Arc::new(Progress::default());
    let display = options.progress.map(|interval| {
        Display::start(
            Arc::clone(&progress),
            total,
            pipeline.queue_state.clone(),
            interval,
        )
    });
    for path in &files {
        let read_err = |source| ImportError::Read {
            path: path.clone(),
            cause: source,
        };
        let file = tokio::fs::File::open(path).await.map_err(read_err)?;
        let mut file = Counting::new(file, Arc::clone(&progress));
        reader
            .read_to_end(&mut file, None)
            .await
            .map_err(read_err)?;
    }
    let lines = reader.close().await;

    let counts = pipeline.finish().await?;
    if counts.held > 0 {
        return Err(ImportError::Undelivered(counts.held));
    }
    let delivered = pipeline.wait_delivered(config.import_timeout).await;
    if let Some(display) = display {
        display.finish();
    }
    if !delivered {
        return Err(ImportError::Timeout(config.import_timeout));
    }
    pipeline.stop();
    let dead_letters = lines.invalid.iter().sum();
    Ok(ImportSummary {
        files,
        lines,
        correlator: counts,
        dead_letters,
        deadletter: options.deadletter,
    })
}

/// The time of the first valid event in the file, if it has one.
async fn first_event_time(
    path: &Path,
    prefix: &str,
    max_line_bytes: usize,
) -> Result<Option<i64>, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        cause: source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(read_err)?;
    let mut framer = Framer::new(max_line_bytes);
    let limits = crate::event::ParseLimits {
        max_depth: 1,
        max_attributes: 0,
        max_value_bytes: 0,
    };
    let mut found = None;
    let check = |found: &mut Option<i64>, frame: Frame<'_>| {
        if let (None, Frame::Line(line)) = (*found, frame)
            && let Ok(Parsed::Event(event)) = parse_line(line, prefix, &limits)
        {
            *found = Some(event.time_unix_nano);
        }
    };
    loop {
        let n = file
            .read_buf(framer.buffer(64 * 1024))
            .await
            .map_err(read_err)?;
        if n == 0 {
            framer.finish(|f| check(&mut found, f));
            break;
        }
        framer.drain(|f| check(&mut found, f));
        if found.is_some() {
            break;
        }
    }
    Ok(found)
}
