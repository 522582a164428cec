//! The file input: Vault's `file` audit device, followed like `tail -F`, losing nothing
//! across rotations and restarts.
//!
//! # How files are followed
//! `path` is a glob pattern. Every [`POLL_INTERVAL`] the pattern is expanded again and
//! every followed file is read to its end; `notify` (inotify) wakes the loop as soon as a
//! watched directory changes, so a line is usually read within microseconds of its write,
//! and polling alone still works where inotify does not (NFS, exhausted watches). The
//! input runs on a thread of its own: reads of regular files block (epoll does not apply
//! to them), and parsing is the expensive step.
//!
//! A followed file ([`tracked::Tracked`]) is identified by (device, inode) plus the
//! fingerprint of its first line, and is read by position (`pread`), never by path:
//! - **A new file** (an identity not followed yet) starts at its checkpointed position if
//!   the checkpoint names it (same identity and fingerprint), at the position of a
//!   followed or checkpointed file whose fingerprint it carries (a copy of it), at its
//!   end on the very first start with `start_at = "end"`, else at its beginning.
//! - **Rename rotation, delete and recreate**: the old file, no longer named by the
//!   pattern, becomes an *orphan*: it is still read (Vault writes it until its SIGHUP
//!   reopen), before the files the pattern names, and closed once it has not grown for
//!   [`ORPHAN_GRACE`]; the new file at the path is a new identity, read from its start.
//! - **copytruncate**: a file shorter than the read position, or whose first line no
//!   longer matches its fingerprint (replaced in place, checked every poll), was
//!   truncated. The copy is looked for among the pattern's matches and the path's rotated
//!   siblings (same directory, name starting with the file's name) by fingerprint; its
//!   unread rest is read first, then the truncated file from 0. Lines written between
//!   logrotate's copy and its truncate that had not been read yet are in neither file:
//!   that loss is logrotate's, and counted (`input_errors_total{reason="truncated"}`).
//! - **Vault's SIGHUP reopen** of an unchanged path keeps the identity: nothing happens.
//!
//! # Exact resume
//! Lines are framed as they are read; a partial last line waits for its newline. After
//! every read the events and the checkpoint ([`checkpoint`]: each file's identity,
//! fingerprint and the end of the last line handed on) travel in one `Ingest`, so the
//! correlator stores the checkpoint in the same atomic commit as every span and waiting
//! entry those lines made. A restart, kill -9 included, reads on from the checkpoint: no
//! line is lost, none is read twice. A file the checkpoint names that the pattern no
//! longer matches (rotated while auditspan was down) is looked for among the path's
//! rotated siblings by identity, then by fingerprint, and read to its end first; one that
//! is gone is logged and counted (`reason="file_gone"`).

pub mod checkpoint;
pub mod tracked;

use std::{
    collections::HashSet,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use actix::Arbiter;
use metrics::Counter;
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, oneshot};
use tracing::{debug, info, warn};

use self::{
    checkpoint::Position,
    tracked::{FileId, Fingerprint, Tracked},
};
use super::{Delivery, Framer, InputContext, LineHandler, ListenerError, READ_CHUNK};
use crate::{
    config::{FileInput, InputConfig, StartAt},
    correlate::{Source, StreamClosed},
    telemetry::{metrics as m, ready::InputReporter},
};

/// How often the pattern is expanded again and every file read, without a wake-up.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// An orphan (a file renamed away or deleted) is closed once it has not grown for this
/// long: Vault writes the old file until its SIGHUP reopen, right after logrotate's rename.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(60);

/// A file input, validated, ready to run.
pub struct Bound {
    pattern: String,
    start_at: StartAt,
    max_line_bytes: usize,
}

/// Checks the pattern (the directory need not exist yet: Vault may create it later).
pub fn bind(config: &InputConfig, file: &FileInput) -> Result<Bound, ListenerError> {
    glob::Pattern::new(&file.path).map_err(|e| ListenerError::File {
        input: config.name.clone(),
        reason: format!("path \"{}\" is not a valid glob pattern: {e}", file.path),
    })?;
    Ok(Bound {
        pattern: file.path.clone(),
        start_at: file.start_at,
        max_line_bytes: config.max_line_bytes,
    })
}

/// Follows the files until shutdown, on a thread of its own.
pub async fn run(bound: Bound, ctx: InputContext, ready: InputReporter) {
    let thread = Arbiter::new();
    let (done, finished) = oneshot::channel::<()>();
    let name = ctx.name.clone();
    let task = async move {
        let mut tailer = Tailer::new(bound, ctx);
        tailer.start().await;
        ready.listening(true);
        tailer.follow().await;
        ready.listening(false);
        tailer.close().await;
        done.send(()).ok();
    };
    if !thread.spawn(task) {
        warn!(input = %name, "Could not start the file input's thread.");
        return;
    }
    // The sender is dropped unanswered only if the thread died.
    finished.await.ok();
    thread.stop();
    info!(input = %name, "Stopped following files.");
}

/// The input's own problems, by reason (`auditspan_input_errors_total`).
struct Errors {
    open: Counter,
    read: Counter,
    truncated: Counter,
    gone: Counter,
}

/// Every followed file of one input, read in turn by one task.
struct Tailer {
    ctx: InputContext,
    pattern: String,
    start_at: StartAt,
    max_line_bytes: usize,
    /// Orphans first (oldest first), then the files the pattern names, least recently
    /// modified first: the reading order.
    files: Vec<Tracked>,
    /// Positions of the stored checkpoint not matched to a file yet (start-up only).
    lost: Vec<Position>,
    /// No checkpoint was stored: the first start (`start_at` applies).
    fresh: bool,
    lines: LineHandler,
    delivery: Delivery,
    /// The checkpoint sent last, so an unchanged one is not sent again.
    sent: Vec<u8>,
    errors: Errors,
    /// Paths whose open failed, logged once until they open.
    failing: HashSet<PathBuf>,
    wake: Arc<Notify>,
    /// A watched directory changed otherwise than by a write: expand the pattern again.
    rescan: Arc<AtomicBool>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: HashSet<PathBuf>,
}

impl Tailer {
    fn new(bound: Bound, ctx: InputContext) -> Tailer {
        let (lost, fresh) = match ctx.checkpoint.as_deref().map(checkpoint::decode) {
            None => (Vec::new(), true),
            Some(Ok(positions)) => (positions, false),
            Some(Err(err)) => {
                warn!(input = %ctx.name, error = %err, "The stored checkpoint is unreadable; every file starts over.");
                (Vec::new(), false)
            }
        };
        let wake = Arc::new(Notify::new());
        let rescan = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (wake, rescan) = (Arc::clone(&wake), Arc::clone(&rescan));
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                match event.kind {
                    // Our own opens and reads are reported too; they change nothing.
                    EventKind::Access(_) => return,
                    EventKind::Modify(notify::event::ModifyKind::Data(_)) => {}
                    _ => rescan.store(true, Ordering::Relaxed),
                }
                wake.notify_one();
            })
        };
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(err) => {
                warn!(input = %ctx.name, error = %err, "No file notifications; polling only.");
                None
            }
        };
        let name: &str = &ctx.name;
        let errors = Errors {
            open: m::input_errors(name, m::INPUT_ERROR_OPEN),
            read: m::input_errors(name, m::INPUT_ERROR_READ),
            truncated: m::input_errors(name, m::INPUT_ERROR_TRUNCATED),
            gone: m::input_errors(name, m::INPUT_ERROR_FILE_GONE),
        };
        let lines = ctx.line_handler();
        let delivery = Delivery::new(
            Source {
                input: ctx.id,
                stream: 0,
            },
            ctx.correlator.clone(),
            ctx.deadletter.clone(),
        );
        Tailer {
            pattern: bound.pattern,
            start_at: bound.start_at,
            max_line_bytes: bound.max_line_bytes,
            files: Vec::new(),
            lost,
            fresh,
            lines,
            delivery,
            sent: Vec::new(),
            errors,
            failing: HashSet::new(),
            wake,
            rescan,
            watcher,
            watched: HashSet::new(),
            ctx,
        }
    }

    /// The first scan: files the pattern names, then the checkpointed files it no longer
    /// names (rotated while auditspan was down), and a first checkpoint, so that a restart
    /// after `start_at = "end"` does not skip what was written meanwhile.
    async fn start(&mut self) {
        self.scan(true);
        for position in std::mem::take(&mut self.lost) {
            self.recover(position);
        }
        self.order();
        info!(input = %self.ctx.name, pattern = %self.pattern, files = self.files.len(), "Following files.");
        self.deliver(Source {
            input: self.ctx.id,
            stream: 0,
        })
        .await;
    }

    /// Reads, then waits for a wake-up, a poll or shutdown, until shutdown.
    async fn follow(&mut self) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.ctx.shutdown.clone();
        loop {
            self.read_all().await;
            if shutdown.is_signalled() {
                return;
            }
            self.retire_orphans().await;
            let polled = tokio::select! {
                _ = tick.tick() => true,
                () = self.wake.notified() => false,
                () = shutdown.signalled() => return,
            };
            if self.rescan.swap(false, Ordering::Relaxed) || polled {
                self.scan(false);
                self.verify();
                self.order();
            }
        }
    }

    /// Hands on what is in flight and ends every file's stream. An unfinished last line is
    /// not taken: the checkpoint ends before it, and the next start reads it whole.
    async fn close(&mut self) {
        self.delivery.settle().await;
        for t in &self.files {
            if self
                .ctx
                .correlator
                .send(StreamClosed(t.source.stream))
                .await
                .is_err()
            {
                debug!("The correlator is gone.");
            }
        }
    }

    /// Expands the pattern: a followed file found under a new path (renamed within the
    /// pattern) keeps its state; one no path names any more becomes an orphan; a new
    /// identity is opened.
    fn scan(&mut self, initial: bool) {
        let mut found: Vec<(FileId, PathBuf, Option<std::time::SystemTime>)> = Vec::new();
        match glob::glob(&self.pattern) {
            Ok(paths) => {
                for entry in paths {
                    let path = match entry {
                        Ok(path) => path,
                        Err(err) => {
                            debug!(input = %self.ctx.name, error = %err, "A directory of the pattern is unreadable.");
                            continue;
                        }
                    };
                    match std::fs::metadata(&path) {
                        Ok(meta) if meta.is_file() => {
                            found.push((FileId::of(&meta), path, meta.modified().ok()));
                        }
                        _ => {}
                    }
                }
            }
            Err(err) => warn!(input = %self.ctx.name, error = %err, "The pattern is invalid."),
        }
        let now = Instant::now();
        for t in &mut self.files {
            match found.iter().position(|(id, _, _)| *id == t.id) {
                Some(i) => {
                    let (_, path, modified) = found.swap_remove(i);
                    t.modified = modified;
                    if t.orphan_since.take().is_some() || t.path != path {
                        debug!(input = %self.ctx.name, path = %path.display(), "A followed file is named by the pattern again.");
                    }
                    t.path = path;
                }
                None if t.orphan_since.is_none() => {
                    info!(input = %self.ctx.name, path = %t.path.display(), "The file was renamed or deleted; reading it to its end.");
                    t.orphan_since = Some(now);
                }
                None => {}
            }
        }
        found.sort_by(|a, b| a.1.cmp(&b.1));
        for (_, path, _) in found {
            self.open_new(&path, initial);
        }
        self.watch();
    }

    /// Watches the pattern's fixed directory and the directory of every followed file.
    fn watch(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let mut dirs = vec![base_dir(&self.pattern)];
        dirs.extend(self.files.iter().map(|t| parent(&t.path)));
        for dir in dirs {
            if self.watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(err) => {
                    debug!(input = %self.ctx.name, dir = %dir.display(), error = %err, "Not watching; polling.")
                }
            }
        }
    }

    /// Opens a file the pattern newly names and decides where to start reading it.
    fn open_new(&mut self, path: &Path, initial: bool) {
        let opened = File::open(path).and_then(|file| {
            let meta = file.metadata()?;
            Ok((file, meta))
        });
        let (file, meta) = match opened {
            Ok(opened) => {
                self.failing.remove(path);
                opened
            }
            Err(err) => {
                if self.failing.insert(path.to_owned()) {
                    self.errors.open.increment(1);
                    warn!(input = %self.ctx.name, path = %path.display(), error = %err, "Cannot open a file the pattern names.");
                }
                return;
            }
        };
        let id = FileId::of(&meta);
        if let Some(t) = self.files.iter_mut().find(|t| t.id == id) {
            // Renamed between the pattern's expansion and the open.
            t.path = path.to_owned();
            return;
        }
        let fingerprint = Fingerprint::read(&file).ok().flatten();
        let start = self.start_position(id, fingerprint, &file, meta.len(), path, initial);
        debug!(input = %self.ctx.name, path = %path.display(), offset = start, "Following a file.");
        self.files
            .push(self.tracked(file, id, path, fingerprint, start, None));
    }

    fn tracked(
        &self,
        file: File,
        id: FileId,
        path: &Path,
        fingerprint: Option<Fingerprint>,
        start: u64,
        orphan_since: Option<Instant>,
    ) -> Tracked {
        Tracked {
            id,
            file,
            path: path.to_owned(),
            fingerprint,
            read_pos: start,
            framer: Framer::new(self.max_line_bytes),
            source: Source {
                input: self.ctx.id,
                stream: super::new_stream(),
            },
            orphan_since,
            last_growth: Instant::now(),
            modified: file_modified(path),
        }
    }

    /// Where reading a newly found file starts (see the module doc).
    fn start_position(
        &mut self,
        id: FileId,
        fingerprint: Option<Fingerprint>,
        file: &File,
        len: u64,
        path: &Path,
        initial: bool,
    ) -> u64 {
        if let Some(k) = self.lost.iter().position(|p| p.id == id) {
            let p = self.lost.remove(k);
            let same = match &p.fingerprint {
                None => true,
                Some(fp) => fp.matches(file).unwrap_or(false),
            };
            if same && len >= p.offset {
                return p.offset;
            }
            // Truncated or replaced while auditspan was down: the copy, if any, first.
            self.errors.truncated.increment(1);
            warn!(input = %self.ctx.name, path = %path.display(), offset = p.offset, "The file was truncated or replaced while auditspan was down; reading it from its start.");
            if let Some(fp) = p.fingerprint {
                self.adopt_copy(path, fp, id, p.offset);
            }
            return 0;
        }
        if let Some(fp) = fingerprint {
            // A copy of a file whose content was read up to a point.
            if let Some(k) = self.lost.iter().position(|p| p.fingerprint == Some(fp)) {
                let p = self.lost.remove(k);
                return p.offset.min(len);
            }
            if let Some(t) = self.files.iter().find(|t| t.fingerprint == Some(fp)) {
                return t.offset().min(len);
            }
        }
        if initial && self.fresh && self.start_at == StartAt::End {
            return tracked::last_line_end(file, len).unwrap_or(len);
        }
        0
    }

    /// A checkpointed file the pattern no longer names: rotated while auditspan was down.
    /// It is found among the path's rotated siblings by identity, else by fingerprint (a
    /// copy), and read from its position to its end, before the files the pattern names.
    fn recover(&mut self, p: Position) {
        let mut by_fingerprint = None;
        for candidate in siblings(&p.path) {
            let Ok(file) = File::open(&candidate) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let id = FileId::of(&meta);
            if self.files.iter().any(|t| t.id == id) {
                continue;
            }
            let same = p
                .fingerprint
                .is_none_or(|fp| fp.matches(&file).unwrap_or(false));
            if id == p.id && same {
                info!(input = %self.ctx.name, path = %candidate.display(), offset = p.offset, "Reading the rest of a file rotated while auditspan was down.");
                let t = self.tracked(
                    file,
                    id,
                    &candidate,
                    p.fingerprint,
                    p.offset,
                    Some(Instant::now()),
                );
                self.files.push(t);
                return;
            }
            if by_fingerprint.is_none() && p.fingerprint.is_some() && same {
                by_fingerprint = Some((file, id, candidate));
            }
        }
        if let Some((file, id, candidate)) = by_fingerprint {
            info!(input = %self.ctx.name, path = %candidate.display(), offset = p.offset, "Reading the rest of a copy of a file rotated while auditspan was down.");
            let t = self.tracked(
                file,
                id,
                &candidate,
                p.fingerprint,
                p.offset,
                Some(Instant::now()),
            );
            self.files.push(t);
            return;
        }
        self.errors.gone.increment(1);
        warn!(input = %self.ctx.name, path = %p.path.display(), offset = p.offset, "A file in the checkpoint no longer exists (deleted after rotation?); whatever it held past the offset is lost.");
    }

    /// Looks for a copy of content `fp` (copytruncate's) beside `path` and follows it from
    /// `offset` as an orphan, so its unread rest is read first. Returns whether one was found.
    fn adopt_copy(&mut self, path: &Path, fp: Fingerprint, except: FileId, offset: u64) -> bool {
        let mut candidates = siblings(path);
        if let Ok(paths) = glob::glob(&self.pattern) {
            candidates.extend(paths.flatten());
        }
        for candidate in candidates {
            let Ok(file) = File::open(&candidate) else {
                continue;
            };
            let Ok(meta) = file.metadata() else { continue };
            let id = FileId::of(&meta);
            if id == except || !meta.is_file() {
                continue;
            }
            if self.files.iter().any(|t| t.id == id) {
                // Followed already (the pattern names the copies): it started at the
                // position of this content when it appeared.
                if self
                    .files
                    .iter()
                    .any(|t| t.id == id && t.fingerprint == Some(fp))
                {
                    return true;
                }
                continue;
            }
            if fp.matches(&file).unwrap_or(false) {
                info!(input = %self.ctx.name, path = %candidate.display(), offset, "Reading the unread rest of the truncated file's copy.");
                let t = self.tracked(
                    file,
                    id,
                    &candidate,
                    Some(fp),
                    offset.min(meta.len()),
                    Some(Instant::now()),
                );
                self.files.insert(0, t);
                return true;
            }
        }
        false
    }

    /// Each poll: a followed file whose first line no longer matches its fingerprint was
    /// replaced in place (truncated and rewritten past the read position between polls).
    fn verify(&mut self) {
        let mut replaced = Vec::new();
        for (i, t) in self.files.iter().enumerate() {
            if let Some(fp) = t.fingerprint
                && t.read_pos > 0
                && !fp.matches(&t.file).unwrap_or(true)
            {
                replaced.push(i);
            }
        }
        for i in replaced.into_iter().rev() {
            self.truncated(i);
        }
    }

    /// The file at `i` was truncated or replaced: its copy's unread rest first (if found),
    /// then the file again from its start. Returns whether a copy was put before it.
    fn truncated(&mut self, i: usize) -> bool {
        let t = &mut self.files[i];
        let (path, id, fp, offset) = (t.path.clone(), t.id, t.fingerprint, t.offset());
        t.framer.reset();
        t.read_pos = 0;
        t.fingerprint = Fingerprint::read(&t.file).ok().flatten();
        self.errors.truncated.increment(1);
        warn!(input = %self.ctx.name, path = %path.display(), offset, "The file was truncated or replaced (copytruncate?); reading it again from its start.");
        match fp {
            Some(fp) if offset > 0 => self.adopt_copy(&path, fp, id, offset),
            _ => false,
        }
    }

    /// Orphans first (oldest first), then the files the pattern names, least recently
    /// modified first, then by path.
    fn order(&mut self) {
        self.files.sort_by(|a, b| {
            (
                a.orphan_since.is_none(),
                a.orphan_since,
                a.modified,
                &a.path,
            )
                .cmp(&(
                    b.orphan_since.is_none(),
                    b.orphan_since,
                    b.modified,
                    &b.path,
                ))
        });
    }

    /// Reads every followed file to its end, in order.
    async fn read_all(&mut self) {
        let mut i = 0;
        while i < self.files.len() {
            if self.ctx.shutdown.is_signalled() {
                return;
            }
            // Before reading on: a file shorter than the read position was truncated; one
            // that grew but no longer starts with its first line was replaced in place
            // (truncated and written past the read position since the last read).
            let t = &self.files[i];
            let replaced = match t.size() {
                Ok(len) if len < t.read_pos => true,
                Ok(len) if len > t.read_pos && t.read_pos > 0 => t
                    .fingerprint
                    .is_some_and(|fp| !fp.matches(&t.file).unwrap_or(true)),
                _ => false,
            };
            if replaced && self.truncated(i) {
                // The copy went first in the order: read it, then this file.
                i = 0;
                continue;
            }
            self.read_file(i).await;
            i += 1;
        }
    }

    /// Reads the file at `i` to its end, handing on the lines after every read.
    async fn read_file(&mut self, i: usize) {
        loop {
            if self.ctx.shutdown.is_signalled() {
                return;
            }
            let read_at = Instant::now();
            let t = &mut self.files[i];
            let n = match t.read_chunk(READ_CHUNK) {
                Ok(n) => n,
                Err(err) => {
                    self.errors.read.increment(1);
                    warn!(input = %self.ctx.name, path = %t.path.display(), error = %err, "Reading a file failed; retrying at the next poll.");
                    return;
                }
            };
            if n == 0 {
                return;
            }
            t.last_growth = read_at;
            let lines = &mut self.lines;
            t.framer.drain(|f| lines.handle(f));
            if t.fingerprint.is_none() {
                t.fingerprint = Fingerprint::read(&t.file).ok().flatten();
            }
            let source = t.source;
            self.deliver(source).await;
            if n < READ_CHUNK {
                return;
            }
        }
    }

    /// Closes orphans that stopped growing, taking an unfinished last line as it is.
    async fn retire_orphans(&mut self) {
        let mut i = 0;
        while i < self.files.len() {
            let t = &self.files[i];
            let idle = t
                .orphan_since
                .is_some_and(|since| since.elapsed() >= ORPHAN_GRACE)
                && t.last_growth.elapsed() >= ORPHAN_GRACE;
            if !idle {
                i += 1;
                continue;
            }
            let mut t = self.files.remove(i);
            info!(input = %self.ctx.name, path = %t.path.display(), "Closed a rotated file that stopped growing.");
            let lines = &mut self.lines;
            t.framer.finish(|f| lines.handle(f));
            self.deliver(t.source).await;
            self.delivery.settle().await;
            if self
                .ctx
                .correlator
                .send(StreamClosed(t.source.stream))
                .await
                .is_err()
            {
                debug!("The correlator is gone.");
            }
        }
    }

    /// Hands the lines framed so far to the correlator (as stream `source`) with the
    /// checkpoint of every file, unless neither changed.
    async fn deliver(&mut self, source: Source) {
        let positions: Vec<Position> = self
            .files
            .iter()
            .map(|t| Position {
                id: t.id,
                fingerprint: t.fingerprint,
                offset: t.offset(),
                path: t.path.clone(),
            })
            .collect();
        let bytes = checkpoint::encode(&positions);
        let checkpoint = if bytes == self.sent {
            None
        } else {
            self.sent = bytes.clone();
            Some((self.ctx.name.to_string(), bytes))
        };
        self.delivery
            .send_from(source, &mut self.lines, Instant::now(), checkpoint)
            .await;
    }
}

fn file_modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The directory of `path` (`.` for a bare file name).
fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The longest directory prefix of `pattern` without glob characters.
fn base_dir(pattern: &str) -> PathBuf {
    let fixed: PathBuf = Path::new(pattern)
        .components()
        .take_while(|c| {
            !c.as_os_str()
                .to_string_lossy()
                .contains(['*', '?', '[', ']'])
        })
        .collect();
    if fixed.as_os_str() == pattern {
        parent(&fixed)
    } else if fixed.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        fixed
    }
}

/// Rotated names of `path`: the files in its directory whose name starts with its name
/// (`audit.log.1`, `audit.log-20250311`), sorted, `path` itself excepted.
fn siblings(path: &Path) -> Vec<PathBuf> {
    let Some(name) = path.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = parent(path);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n != name && n.starts_with(&name) && e.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}
