//! The wiring: starts the pipeline's actors in order (queue → sinks → correlator → inputs)
//! and stops them in the reverse order, so that every event read before shutdown is
//! committed. Only `main.rs` and `import.rs` use this module; every stage builds itself
//! from the config (`sink::build`, `correlate::Settings::from_config`, `listener::bind`).
//!
//! Threads: the correlator, the dead-letter writer and the accept loops run on the
//! calling (system) arbiter; the queue has its own arbiter, because every sled call
//! blocks; each sink has its own, because writing may block; connections are read on a
//! pool of reader arbiters, one per core, because parsing is the most expensive step.

use std::{
    collections::HashMap,
    future::Future,
    path::Path,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    config::Config,
    correlate::{self, Correlator, Counts, Drain, Feed, Finish},
    deadletter::{DeadLetter, Reopen},
    listener::{self, InputContext, ListenerError, Readers, Shutdown},
    queue::{
        QueueError, QueueStore, StoreOptions,
        actor::{LoadPending, QueueState, SpanQueue},
    },
    sink::{self, SinkError, StdoutFactory, worker::SinkWorker, worker::WorkerSettings},
    telemetry::{self, ready::Readiness},
};

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path}: {cause}")]
    DataDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("metrics server on {addr}: {cause}")]
    Metrics {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("the queue stopped unexpectedly")]
    QueueGone,
    /// Every input ended (stdin) and the sinks did not have every span in time; the rest
    /// stays queued for the next start.
    #[error(
        "the inputs ended, but the sinks did not acknowledge every span within import_timeout ({0:?}); the rest stays queued for the next start"
    )]
    Undelivered(Duration),
    /// A sink could not be set up (a missing secret, an unreadable CA file, ...).
    #[error("sink \"{sink}\": {error}")]
    Sink { sink: String, error: SinkError },
}

/// The queue, its sink workers and the correlator in front of them: the part of the
/// pipeline the daemon and `import` share.
pub struct Pipeline {
    pub correlator: Addr<Correlator>,
    /// What the queue publishes (committed and delivered sequences, health).
    pub queue_state: watch::Receiver<QueueState>,
    /// The checkpoint each input committed last (file inputs), by input name, as read
    /// from the queue at start.
    pub checkpoints: HashMap<String, Vec<u8>>,
    queue: Addr<SpanQueue>,
    sink_threads: Vec<Arbiter>,
    queue_thread: Arbiter,
}

impl Pipeline {
    /// Opens the queue in `data_dir`, starts one worker per configured sink (stdout goes to
    /// what `stdout` returns) and a correlator with the waiting entries of the last run.
    /// `inputs` are the input names, in the order of their [`correlate::InputId`]s.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        inputs: &[String],
        feed: Feed,
        stdout: StdoutFactory<'_>,
        deadletter: Addr<DeadLetter>,
    ) -> Result<Pipeline, AppError> {
        let options = StoreOptions::from_config(&config.queue);
        let mut store = QueueStore::open(data_dir, options)?;
        let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
        store.set_sinks(&sink_names)?;
        let mut checkpoints = HashMap::new();
        for input in inputs {
            if let Some(checkpoint) = store.checkpoint(input)? {
                checkpoints.insert(input.clone(), checkpoint);
            }
        }
        let (queue_actor, queue_state) = SpanQueue::new(store);
        let queue_thread = Arbiter::new();
        let queue = SpanQueue::start_in_arbiter(&queue_thread.handle(), move |_| queue_actor);

        let settings_of = |sink: &crate::config::SinkConfig| WorkerSettings {
            batch_size: sink.batch_size,
            max_retry_delay: sink.max_retry_delay,
            resource: sink::Resource::from_config(config),
        };
        let mut sink_threads = Vec::new();
        for sink in &config.sinks {
            let built = sink::build(sink, config, stdout).map_err(|error| AppError::Sink {
                sink: sink.name.clone(),
                error,
            })?;
            let worker = SinkWorker::new(
                built,
                &settings_of(sink),
                queue.clone(),
                queue_state.clone(),
                deadletter.clone(),
            );
            let thread = Arbiter::new();
            thread.spawn(worker.run());
            sink_threads.push(thread);
        }

        let stored = queue
            .send(LoadPending)
            .await
            .map_err(|_| AppError::QueueGone)??;
        let mut correlator = Correlator::new(
            correlate::Settings::from_config(config),
            inputs,
            queue.clone(),
            queue_state.clone(),
            config.queue.flush_interval,
            feed,
        );
        correlator.restore(stored.pending);
        correlator.restore_paired(stored.paired);
        if telemetry::metrics::installed() {
            correlator.record_vault_requests(config.metrics.max_label_values);
        }
        let correlator = correlator.start();
        Ok(Pipeline {
            correlator,
            queue_state,
            checkpoints,
            queue,
            sink_threads,
            queue_thread,
        })
    }

    /// Commits every span and every waiting entry, and answers once the queue has them
    /// (shutdown: waiting entries are kept for the next start).
    pub async fn drain(&self) -> Result<Counts, MailboxError> {
        self.correlator.send(Drain).await
    }

    /// Turns every waiting entry into a span and commits everything (end of an import).
    pub async fn finish(&self) -> Result<Counts, MailboxError> {
        self.correlator.send(Finish).await
    }

    /// Waits until every sink has acknowledged every committed span; false on timeout.
    pub async fn wait_delivered(&self, timeout: Duration) -> bool {
        let mut state = self.queue_state.clone();
        let delivered = state.wait_for(|s| s.delivered >= s.committed);
        // A queue that is gone has nothing more to deliver.
        tokio::time::timeout(timeout, delivered).await.is_ok()
    }

    /// Stops the sink workers and closes the queue, waiting until the store is dropped: its
    /// `Drop` brings `queue.manifest` up to the last committed sequence, so that a `db` file
    /// truncated after a clean stop is detected at the next start. (Sink threads are not
    /// waited for: one may be blocked writing to a stalled backend or pipe.)
    pub fn stop(self) {
        for thread in &self.sink_threads {
            thread.stop();
        }
        drop(self.queue);
        drop(self.correlator);
        self.queue_thread.stop();
        if self.queue_thread.join().is_err() {
            warn!("The queue thread panicked while closing.");
        }
    }
}

/// Runs the daemon until `shutdown` completes, then stops it in order. Must run inside
/// an actix system.
pub async fn run(
    config: Config,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AppError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| AppError::DataDir {
        path: config.data_dir.clone(),
        cause: source,
    })?;

    // Bind every input first, so that a configuration error stops us before anything runs.
    let mut bound = Vec::new();
    for input in &config.inputs {
        bound.push(listener::bind(input)?);
    }
    let deadletter = DeadLetter::new(
        config.data_dir.join("deadletter.jsonl"),
        config.deadletter_max_bytes,
    );
    let deadletter_writable = deadletter.writable();
    let deadletter = deadletter.start();
    let names: Vec<String> = config.inputs.iter().map(|i| i.name.clone()).collect();
    let stdout = || Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>;
    let pipeline = Pipeline::start(
        &config,
        &config.data_dir,
        &names,
        Feed::Live,
        &stdout,
        deadletter.clone(),
    )
    .await?;

    let mut readiness = Readiness::new();
    readiness.queue(pipeline.queue_state.clone(), config.queue.max_bytes);
    readiness.deadletter(deadletter_writable);
    let input_ready: Vec<_> = config
        .inputs
        .iter()
        .map(|input| readiness.input(&input.name))
        .collect();
    let http = match (config.metrics.listen, metrics) {
        (Some(addr), Some(handle)) => {
            for sink in &config.sinks {
                telemetry::metrics::register_sink(&sink.name);
            }
            Some(
                telemetry::http::serve(addr, handle, readiness)
                    .map_err(|source| AppError::Metrics {
                        addr,
                        cause: source,
                    })?
                    .1,
            )
        }
        _ => None,
    };

    let reader_threads: Vec<Arbiter> = (0..std::thread::available_parallelism()
        .map_or(1, usize::from))
        .map(|_| Arbiter::new())
        .collect();
    let readers = Readers::new(reader_threads.iter().map(Arbiter::handle).collect());
    let inputs_shutdown = Shutdown::new();
    // Inputs still running; the last one to end by itself (stdin at its end) wakes `ended`.
    let running = Arc::new(AtomicUsize::new(config.inputs.len()));
    let ended = Arc::new(tokio::sync::Notify::new());
    for (id, ((input, bound), ready)) in
        config.inputs.iter().zip(bound).zip(input_ready).enumerate()
    {
        let ctx = InputContext {
            name: input.name.as_str().into(),
            id,
            prefix: input.prefix.clone(),
            max_line_bytes: input.max_line_bytes,
            limits: config.parse.limits(),
            correlator: pipeline.correlator.clone(),
            deadletter: deadletter.clone(),
            shutdown: inputs_shutdown.clone(),
            readers: readers.clone(),
            checkpoint: pipeline
                .checkpoints
                .get(&input.name)
                .map(|c| c.as_slice().into()),
            queue_state: pipeline.queue_state.clone(),
        };
        let (running, ended) = (Arc::clone(&running), Arc::clone(&ended));
        actix::spawn(inputs_shutdown.track(async move {
            bound.run(ctx, ready).await;
            if running.fetch_sub(1, Ordering::AcqRel) == 1 {
                ended.notify_one();
            }
        }));
    }

    let hup = deadletter.clone();
    actix::spawn(async move {
        let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while signal.recv().await.is_some() {
            hup.do_send(Reopen);
        }
    });

    info!("auditspan is running.");
    // The ordered shutdown begins on the signal, or once every input has ended by itself
    // (stdin at its end): then, as `import` does, every entry still waiting expires.
    let inputs_ended = tokio::select! {
        () = shutdown => false,
        () = ended.notified() => true,
    };
    if inputs_ended {
        info!("Every input ended; draining and exiting.");
    } else {
        info!("Shutting down.");
    }

    inputs_shutdown.begin();
    let grace = config.shutdown_timeout;
    if tokio::time::timeout(grace, inputs_shutdown.finished())
        .await
        .is_err()
    {
        warn!(timeout = ?grace, "Connections did not finish in time.");
    }
    let counts = if inputs_ended {
        pipeline.finish().await
    } else {
        pipeline.drain().await
    };
    match counts {
        Ok(counts) if counts.held > 0 => warn!(
            spans = counts.held,
            "The queue could not take these spans before exit; they are lost."
        ),
        Ok(counts) => info!(
            paired = counts.spans.paired,
            response_missing = counts.spans.response_missing,
            request_missing = counts.spans.request_missing,
            waiting = counts.pending,
            "Committed; requests still waiting are kept for the next start."
        ),
        Err(err) => warn!(error = %err, "The correlator stopped before committing."),
    }
    // Once every input ended, sinks get as long as `import` gives them.
    let wait = if inputs_ended {
        config.import_timeout
    } else {
        grace
    };
    let delivered = pipeline.wait_delivered(wait).await;
    if !delivered {
        warn!(timeout = ?wait, "Sinks did not catch up in time; the rest is delivered after the next start.");
    }
    for thread in reader_threads {
        thread.stop();
    }
    pipeline.stop();
    if let Some(http) = http {
        http.stop(true).await;
    }
    if inputs_ended && !delivered {
        return Err(AppError::Undelivered(wait));
    }
    Ok(())
}
