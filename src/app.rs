//! Starts the pipeline's actors in order (queue → sinks → correlator → listeners) and stops
//! them in the reverse order, so that every event read before shutdown is committed.
//!
//! Threads: the correlator, the dead-letter writer and the accept loops run on the
//! calling (system) arbiter; the queue has its own arbiter, because every sled call
//! blocks; each sink has its own, because writing may block; connections are read on a
//! pool of listener arbiters, one per core, because parsing is the most expensive step.

use std::{
    future::Future,
    path::{Path, PathBuf},
    time::Duration,
};

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::{
    codec,
    config::{Config, SinkKind},
    correlate::{self, Correlator, Drain},
    deadletter::{DeadLetter, Reopen},
    listener::unix::{self, ConnectionSettings, UnixIngest},
    queue::{
        QueueError, QueueStore, StoreOptions,
        actor::{GetStats, LoadPending, SpanQueue},
    },
    sink::{
        Resource, Sink,
        honeycomb::HoneycombSink,
        otlp::{self, OtlpSink},
        stdout::StdoutSink,
        worker::{SinkWorker, WorkerSettings},
        zipkin::ZipkinSink,
    },
    telemetry::{
        self,
        ready::{self, QueueHealth, Readiness},
    },
};

/// How often shutdown and `import` look at the sinks' progress.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Why the daemon could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Listener(#[from] unix::ListenerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the queue stopped unexpectedly")]
    QueueGone,
    /// A sink could not be set up (a missing secret, an unreadable CA file, ...).
    #[error("sink \"{sink}\": {message}")]
    Sink { sink: String, message: String },
}

/// The resource of this process's spans.
pub fn resource(config: &Config) -> Resource {
    Resource {
        service_name: config.service_name.clone(),
        instance_id: config.instance_id.clone(),
        host_name: gethostname::gethostname().to_string_lossy().into_owned(),
    }
}

/// The correlator's settings from the config.
pub fn correlator_settings(config: &Config) -> correlate::Settings {
    correlate::Settings {
        pair_timeout: config.correlate.pair_timeout,
        join_traceparent: config.correlate.join_traceparent,
        max_attributes: config.parse.max_attributes,
        max_span_bytes: config.parse.max_span_bytes,
    }
}

/// The queue, its sink workers and the correlator in front of them: the part of the
/// pipeline the daemon and `import` share.
pub struct Core {
    pub queue: Addr<SpanQueue>,
    pub correlator: Addr<Correlator>,
    /// What the queue publishes for `/readyz`.
    pub queue_health: watch::Receiver<QueueHealth>,
    sink_names: Vec<String>,
    sink_threads: Vec<Arbiter>,
    queue_thread: Arbiter,
}

impl Core {
    /// Opens the queue in `data_dir`, starts one worker per configured sink (stdout goes to
    /// what `stdout` returns) and a correlator with the waiting entries of the last run.
    pub async fn start(
        config: &Config,
        data_dir: &Path,
        inputs: &[String],
        live: bool,
        stdout: impl Fn() -> Box<dyn std::io::Write + Send>,
        deadletter: Addr<DeadLetter>,
    ) -> Result<Core, AppError> {
        let options = StoreOptions::new(config.queue.max_bytes, config.queue.overflow);
        let mut store = QueueStore::open(data_dir, options)?;
        let sink_names: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
        store.set_sinks(&sink_names)?;
        let (committed_tx, committed_rx) = watch::channel(store.stats().committed);
        let (health_tx, queue_health) = ready::queue_channel();
        let queue_thread = Arbiter::new();
        let queue = SpanQueue::start_in_arbiter(&queue_thread.handle(), move |_| {
            SpanQueue::new(store, committed_tx).with_health(health_tx)
        });

        let resource = resource(config);
        let mut sink_threads = Vec::new();
        for sink in &config.sinks {
            let settings = WorkerSettings {
                batch_size: sink.batch_size,
                max_retry_delay: sink.max_retry_delay,
                resource: resource.clone(),
            };
            let thread = Arbiter::new();
            let worker = WorkerParts {
                settings: &settings,
                queue: &queue,
                committed: &committed_rx,
                deadletter: &deadletter,
            };
            let failed = |message: String| AppError::Sink {
                sink: sink.name.clone(),
                message,
            };
            match &sink.kind {
                SinkKind::Stdout => thread.spawn(worker.run(StdoutSink::with_writer(
                    sink.name.clone(),
                    resource.clone(),
                    stdout(),
                ))),
                SinkKind::Zipkin(c) => thread.spawn(
                    worker.run(ZipkinSink::new(sink.name.clone(), c, &resource).map_err(failed)?),
                ),
                SinkKind::Honeycomb(c) => thread.spawn(
                    worker
                        .run(HoneycombSink::new(sink.name.clone(), c, &resource).map_err(failed)?),
                ),
                SinkKind::Otlp(otlp) => {
                    let defaults = otlp::ResourceDefaults::from_config(config);
                    let env = otlp::settings::process_env;
                    let effective =
                        otlp::Settings::resolve(otlp, &defaults, &env).map_err(failed)?;
                    for warning in &effective.warnings {
                        warn!(sink = %sink.name, "{warning}");
                    }
                    info!(
                        sink = %sink.name,
                        protocol = ?effective.protocol.0,
                        endpoint = %effective.endpoint.0,
                        "OTLP sink configured."
                    );
                    let built =
                        OtlpSink::new(sink.name.clone(), &effective, &env).map_err(failed)?;
                    thread.spawn(worker.run(built))
                }
            };
            sink_threads.push(thread);
        }

        let pending = queue
            .send(LoadPending)
            .await
            .map_err(|_| AppError::QueueGone)??;
        let mut restored = Vec::with_capacity(pending.len());
        for (key, bytes) in pending {
            match codec::decode_waiting(&bytes) {
                Ok(entry) => restored.push(entry),
                Err(err) => {
                    warn!(key = ?key, error = %err, "Skipping a stored waiting entry that does not decode.")
                }
            }
        }
        let mut correlator = Correlator::new(
            correlator_settings(config),
            inputs,
            queue.clone(),
            config.queue.flush_interval,
            live,
        );
        correlator.restore(restored);
        if telemetry::metrics::installed() {
            correlator.record_vault_requests(config.metrics.max_label_values);
        }
        let correlator = correlator.start();
        Ok(Core {
            queue,
            correlator,
            queue_health,
            sink_names,
            sink_threads,
            queue_thread,
        })
    }

    /// Commits everything the correlator holds; with `expire_all`, it first turns every
    /// waiting entry into a span (end of an import).
    pub async fn commit_all(&self, expire_all: bool) -> Result<correlate::Counts, MailboxError> {
        if expire_all {
            self.correlator.send(correlate::Finish).await
        } else {
            self.correlator.send(Drain).await
        }
    }

    /// Waits until every sink has acknowledged every committed span; false on timeout.
    pub async fn wait_delivered(&self, timeout: Duration) -> bool {
        let done = async {
            loop {
                let Ok(stats) = self.queue.send(GetStats).await else {
                    return;
                };
                let behind = stats
                    .sinks
                    .iter()
                    .filter(|s| self.sink_names.contains(&s.name))
                    .any(|s| s.cursor < stats.committed);
                if !behind {
                    return;
                }
                tokio::time::sleep(DRAIN_POLL).await;
            }
        };
        tokio::time::timeout(timeout, done).await.is_ok()
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

/// What a sink worker needs besides its sink, so that one generic call starts a worker
/// for any sink type.
struct WorkerParts<'a> {
    settings: &'a WorkerSettings,
    queue: &'a Addr<SpanQueue>,
    committed: &'a watch::Receiver<u64>,
    deadletter: &'a Addr<DeadLetter>,
}

impl WorkerParts<'_> {
    /// The worker's loop, to spawn on the sink's own arbiter.
    fn run<S: Sink>(&self, sink: S) -> impl Future<Output = ()> + use<S> {
        SinkWorker::new(
            sink,
            self.settings,
            self.queue.clone(),
            self.committed.clone(),
            self.deadletter.clone(),
        )
        .run()
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
        source,
    })?;

    // Bind every socket first, so that a configuration error stops us before anything runs.
    let mut listeners = Vec::new();
    for input in &config.inputs {
        listeners.push(unix::bind(&input.path, input.mode)?);
    }
    let deadletter = DeadLetter::new(
        config.data_dir.join("deadletter.jsonl"),
        config.deadletter_max_bytes,
    )
    .start();
    let names: Vec<String> = config.inputs.iter().map(|i| i.name.clone()).collect();
    let core = Core::start(
        &config,
        &config.data_dir,
        &names,
        true,
        || Box::new(std::io::stdout()),
        deadletter.clone(),
    )
    .await?;

    let mut readiness = Readiness::new();
    readiness.queue(core.queue_health.clone(), config.queue.max_bytes);
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
                    .map_err(|source| AppError::Metrics { addr, source })?
                    .1,
            )
        }
        _ => None,
    };

    let readers: Vec<Arbiter> = (0..std::thread::available_parallelism().map_or(1, usize::from))
        .map(|_| Arbiter::new())
        .collect();
    let reader_handles: Vec<ArbiterHandle> = readers.iter().map(Arbiter::handle).collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut ingests = Vec::new();
    for (input_id, ((input, listener), ready)) in config
        .inputs
        .iter()
        .zip(listeners)
        .zip(input_ready)
        .enumerate()
    {
        let settings = ConnectionSettings {
            input: input.name.clone(),
            input_id,
            prefix: input.prefix.clone(),
            max_line_bytes: input.max_line_bytes,
            limits: config.parse.limits(),
            correlator: core.correlator.clone(),
            deadletter: deadletter.clone(),
        };
        ingests.push(
            UnixIngest::new(
                input.path.clone(),
                listener,
                settings,
                reader_handles.clone(),
                stop_rx.clone(),
                done_tx.clone(),
            )
            .with_readiness(ready)
            .start(),
        );
    }
    drop(done_tx);

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
    shutdown.await;
    info!("Shutting down.");

    for ingest in &ingests {
        ingest.send(unix::Stop).await.ok();
    }
    stop_tx.send_replace(true);
    let grace = config.shutdown_timeout;
    if tokio::time::timeout(grace, done_rx.recv()).await.is_err() {
        warn!(timeout = ?grace, "Connections did not finish in time.");
    }
    match core.commit_all(false).await {
        Ok(counts) if counts.held > 0 => warn!(
            spans = counts.held,
            "The queue could not take these spans before exit; they are lost."
        ),
        Ok(counts) => info!(
            paired = counts.spans[0],
            response_missing = counts.spans[1],
            request_missing = counts.spans[2],
            waiting = counts.pending,
            "Committed; requests still waiting are kept for the next start."
        ),
        Err(err) => warn!(error = %err, "The correlator stopped before committing."),
    }
    if !core.wait_delivered(grace).await {
        warn!(timeout = ?grace, "Sinks did not catch up in time; the rest is delivered after the next start.");
    }
    for reader in readers {
        reader.stop();
    }
    core.stop();
    if let Some(http) = http {
        http.stop(true).await;
    }
    Ok(())
}
