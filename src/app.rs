//! Starts the pipeline's actors in order (sinks → correlator → listeners) and stops them
//! in the reverse order, so that every event read before shutdown reaches the sinks.
//!
//! Threads: the correlator, the dead-letter writer and the accept loops run on the
//! calling (system) arbiter; each sink has its own arbiter, because writing may block;
//! connections are read on a pool of listener arbiters, one per core, because parsing is
//! the most expensive step.

use std::{future::Future, path::PathBuf};

use actix::prelude::*;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::{
    config::{Config, SinkKind},
    correlate::{self, Correlator, Drain, SpanBatch},
    deadletter::{DeadLetter, Reopen},
    listener::unix::{self, ConnectionSettings, UnixIngest},
    sink::{Resource, SinkError, stdout::StdoutSink},
    telemetry,
};

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
    #[error("metrics server on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
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

/// Starts one actor per configured sink, each on its own arbiter, and returns the single
/// span output the correlator hands its batches to.
pub fn start_sinks(
    config: &Config,
    stdout: impl Fn() -> Box<dyn std::io::Write + Send>,
) -> Recipient<SpanBatch> {
    let resource = resource(config);
    let mut outputs: Vec<Recipient<SpanBatch>> = config
        .sinks
        .iter()
        .map(|sink| match sink.kind {
            SinkKind::Stdout => {
                let actor = StdoutSink::with_writer(sink.name.clone(), resource.clone(), stdout());
                let arbiter = Arbiter::new();
                StdoutSink::start_in_arbiter(&arbiter.handle(), move |_| actor).recipient()
            }
        })
        .collect();
    if outputs.len() == 1 {
        outputs.remove(0)
    } else {
        Fanout { outputs }.start().recipient()
    }
}

/// Hands each batch to every sink and answers once all have answered.
struct Fanout {
    outputs: Vec<Recipient<SpanBatch>>,
}

impl Actor for Fanout {
    type Context = Context<Self>;
}

impl Handler<SpanBatch> for Fanout {
    type Result = ResponseFuture<Result<(), SinkError>>;

    fn handle(&mut self, msg: SpanBatch, _: &mut Self::Context) -> Self::Result {
        let sends: Vec<_> = self
            .outputs
            .iter()
            .map(|o| o.send(SpanBatch(msg.0.clone())))
            .collect();
        Box::pin(async move {
            let mut result = Ok(());
            for send in sends {
                match send.await {
                    Ok(Ok(())) => {}
                    Ok(Err(err)) => result = Err(err),
                    Err(err) => error!(error = %err, "A sink is gone."),
                }
            }
            result
        })
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

    let http = match (config.metrics.listen, metrics) {
        (Some(addr), Some(handle)) => Some(
            telemetry::http::serve(addr, handle)
                .map_err(|source| AppError::Metrics { addr, source })?
                .1,
        ),
        _ => None,
    };

    let deadletter = DeadLetter::new(
        config.data_dir.join("deadletter.jsonl"),
        config.deadletter_max_bytes,
    )
    .start();
    let output = start_sinks(&config, || Box::new(std::io::stdout()));
    let names: Vec<String> = config.inputs.iter().map(|i| i.name.clone()).collect();
    let correlator = Correlator::new(correlator_settings(&config), &names, output, true).start();

    let readers: Vec<ArbiterHandle> = (0..std::thread::available_parallelism()
        .map_or(1, usize::from))
        .map(|_| Arbiter::new().handle())
        .collect();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut ingests = Vec::new();
    for (input_id, (input, listener)) in config.inputs.iter().zip(listeners).enumerate() {
        let settings = ConnectionSettings {
            input: input.name.clone(),
            input_id,
            prefix: input.prefix.clone(),
            max_line_bytes: input.max_line_bytes,
            limits: config.parse.limits(),
            correlator: correlator.clone(),
            deadletter: deadletter.clone(),
        };
        ingests.push(
            UnixIngest::new(
                input.path.clone(),
                listener,
                settings,
                readers.clone(),
                stop_rx.clone(),
                done_tx.clone(),
            )
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
    match tokio::time::timeout(grace, correlator.send(Drain)).await {
        Ok(Ok(counts)) => info!(
            paired = counts.spans[0],
            response_missing = counts.spans[1],
            request_missing = counts.spans[2],
            lost_pending = counts.pending,
            "Stopped."
        ),
        Ok(Err(err)) => warn!(error = %err, "The correlator stopped before draining."),
        Err(_) => {
            warn!(timeout = ?grace, "Sinks did not drain in time; undelivered spans are lost.")
        }
    }
    for reader in readers {
        reader.stop();
    }
    if let Some(http) = http {
        http.stop(true).await;
    }
    Ok(())
}
