//! `auditspan import`'s progress, on stderr while it runs: on a terminal a progress bar
//! (`indicatif`: bytes read of the total, events per second, spans committed, ETA);
//! otherwise (a log, a CI job) one line every `interval` (10 s), so logs stay readable.
//!
//! The reader counts what it reads ([`Counting`]); the display reads the counts and the
//! queue's committed sequence (its `watch` channel) on a timer. Nothing here slows the
//! read: counting is two atomic adds per read.

use std::{
    io::IsTerminal,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::{
    io::{AsyncRead, ReadBuf},
    sync::watch,
};

use crate::queue::actor::QueueState;

/// How often the bar is redrawn.
const BAR_REFRESH: Duration = Duration::from_millis(200);

/// What the import read so far, shared by the reader and the display.
#[derive(Debug, Default)]
pub struct Progress {
    bytes: AtomicU64,
    lines: AtomicU64,
}

impl Progress {
    fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    fn lines(&self) -> u64 {
        self.lines.load(Ordering::Relaxed)
    }
}

/// A reader that adds what it reads to a [`Progress`].
pub struct Counting<R> {
    inner: R,
    progress: Arc<Progress>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, progress: Arc<Progress>) -> Self {
        Counting { inner, progress }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Counting<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let read = &buf.filled()[before..];
        self.progress
            .bytes
            .fetch_add(read.len() as u64, Ordering::Relaxed);
        self.progress.lines.fetch_add(
            memchr::memchr_iter(b'\n', read).count() as u64,
            Ordering::Relaxed,
        );
        Poll::Ready(Ok(()))
    }
}

/// Shows the progress of reading `total` bytes until dropped (or [`Display::finish`]).
pub struct Display {
    task: tokio::task::JoinHandle<()>,
    bar: Option<ProgressBar>,
}

impl Display {
    /// A bar when stderr is a terminal, else a line every `interval`.
    pub fn start(
        progress: Arc<Progress>,
        total: u64,
        queue: watch::Receiver<QueueState>,
        interval: Duration,
    ) -> Display {
        let started = Instant::now();
        let spans = move || queue.borrow().committed;
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style =
                ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} {msg}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            let shown = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    let lines = progress.lines();
                    shown.set_position(progress.bytes());
                    shown.set_message(format!(
                        "{lines} events ({:.0}/s), {} spans",
                        per_second(lines, started),
                        spans()
                    ));
                    tokio::time::sleep(BAR_REFRESH).await;
                }
            });
            return Display {
                task,
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                eprintln!("{}", line(&progress, total, started, spans()));
            }
        });
        Display { task, bar: None }
    }

    /// Stops the display (the bar is cleared; the caller prints the summary).
    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

fn per_second(count: u64, since: Instant) -> f64 {
    count as f64 / since.elapsed().as_secs_f64().max(1e-3)
}

/// One progress line: `auditspan import: 12.3 MB of 45.6 MB (27%), 40000 events
/// (41000/s), 19000 spans, ETA 3s`.
fn line(progress: &Progress, total: u64, started: Instant, spans: u64) -> String {
    let bytes = progress.bytes();
    let lines = progress.lines();
    let rate = per_second(bytes, started);
    let eta = if rate > 0.0 && total > bytes {
        format!("{:.0}s", (total - bytes) as f64 / rate)
    } else {
        "0s".to_owned()
    };
    format!(
        "auditspan import: {:.1} MB of {:.1} MB ({:.0}%), {lines} events ({:.0}/s), {spans} spans, ETA {eta}",
        bytes as f64 / 1e6,
        total as f64 / 1e6,
        100.0 * bytes as f64 / total.max(1) as f64,
        per_second(lines, started),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counting reader counts bytes and lines; the line names them with the total.
    #[tokio::test]
    async fn counts_what_is_read_and_prints_it() {
        use tokio::io::AsyncReadExt;
        let progress = Arc::new(Progress::default());
        let mut reader = Counting::new(&b"a\nbb\nccc"[..], Arc::clone(&progress));
        let mut out = Vec::new();
        reader.read_to_end(&mut out).await.unwrap();
        assert_eq!((progress.bytes(), progress.lines()), (8, 2));
        let text = line(&progress, 16, Instant::now(), 1);
        assert!(
            text.starts_with("auditspan import: 0.0 MB of 0.0 MB (50%), 2 events ("),
            "{text}"
        );
        assert!(text.contains(", 1 spans, ETA "), "{text}");
    }
}
