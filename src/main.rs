//! The `auditspan` command line: parses arguments, sets up logging and metrics, and hands
//! over to `app::run` (daemon), `import::run` or `Config::to_toml_redacted` (check).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use auditspan::{
    app, config,
    event::InvalidReason,
    import,
    queue::{StoreOptions, offline},
    sink,
    span::Outcome,
    telemetry,
};
use clap::{Args, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Turns HashiCorp Vault / OpenBao audit events into trace spans, without losing them.
///
/// auditspan listens where an audit device writes (a unix socket by default), pairs each
/// request with its response and writes one span per pair to its sinks. Logs go to
/// stderr; the log level comes from AUDITSPAN_LOG (e.g. "debug", default "info").
/// Without a subcommand, `run` is assumed.
#[derive(Parser)]
#[command(name = "auditspan", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: ConfigArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon (the default). SIGTERM/SIGINT stop it cleanly; SIGHUP reopens the
    /// dead-letter file.
    Run(ConfigArgs),
    /// Validate the configuration and print the effective configuration, secrets redacted.
    Check(ConfigArgs),
    /// Feed captured audit log files through the pipeline and exit once the sinks have
    /// everything. Exit status 0 on success; a summary goes to stderr. While it runs, its
    /// progress shows on stderr: a progress bar on a terminal, else a line every 10 s.
    Import(ImportArgs),
    /// Inspect, compact or migrate the durable queue while the daemon is stopped.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Ask the running daemon whether it is alive: GET /healthz on `metrics.listen` (on
    /// 127.0.0.1 when it listens on every address). Exit status 0 when it answers 200,
    /// 1 otherwise. For container HEALTHCHECKs and exec probes, where no HTTP client is
    /// installed.
    Health(HealthArgs),
}

#[derive(Args)]
struct HealthArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Readiness instead: GET /readyz (200 only while auditspan takes and keeps events).
    #[arg(long)]
    ready: bool,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 3)]
    timeout: u64,
}

#[derive(Subcommand)]
enum QueueCommand {
    /// Print the queue's counts, size, sequences and each sink's cursor and lag.
    ///
    /// Offline: refused (exit status 1) while a daemon holds the queue; read its /metrics
    /// instead. Output, one `key value` line each: queue (path), spans, bytes (what
    /// queue.max_bytes bounds), disk (bytes of the files under the queue directory),
    /// committed (last sequence), oldest (first sequence kept), waiting (requests stored
    /// without their response), and one `sink NAME  cursor N  lag N` line per sink.
    /// Nothing in the queue is changed (cursors of sinks missing from the config are kept).
    Stats(QueueArgs),
    /// Rewrite the queue into fresh files, giving back the space of delivered spans.
    ///
    /// Rarely needed: the queue is split into segments, and a segment every sink has
    /// passed is deleted whole while the daemon runs, so its files shrink by themselves.
    /// What compaction still gives back is the space of delivered spans inside the
    /// segments that also hold undelivered ones (at most a segment, `queue.segment_bytes`,
    /// per sink position). It copies what the queue still holds (spans, sink cursors,
    /// waiting requests, input checkpoints, the sequence) into new segments and swaps them
    /// in. Procedure: stop the daemon (compact refuses while it runs); make sure the data
    /// directory's filesystem has room for a second copy of the queue (see `auditspan
    /// queue stats`: bytes); run `auditspan queue compact`; start the daemon. The copy is
    /// built in <data_dir>/queue.compacting/, checked against the original, then swapped
    /// in under the queue lock: the old queue goes to <data_dir>/queue.precompact/ and is
    /// removed once the new one is in place. If it is interrupted, the daemon either starts
    /// with a complete queue or refuses to start with a message; a leftover
    /// queue.precompact/ then holds the old queue (its `queue` directory and
    /// `queue.manifest` go back into the data directory). Prints the disk size before and
    /// after.
    Compact(QueueArgs),
    /// Convert a queue written by an auditspan before the segmented queue (format 1) into
    /// the current format, keeping every span, sink cursor, waiting request and input
    /// checkpoint.
    ///
    /// The daemon refuses to start on a format 1 queue and says to run this. Stop the
    /// daemon, make sure the data directory's filesystem has room for a second copy of the
    /// queue, run `auditspan queue migrate` with the daemon's --config or --data-dir, then
    /// start the new version. The new queue is built in <data_dir>/queue.migrating/,
    /// checked against the old one, and swapped in as `compact` does (the old queue waits
    /// in <data_dir>/queue.premigrate/ until the new one is in place). A queue already of
    /// the current format is left alone (exit status 0).
    Migrate(QueueArgs),
}

/// Where the queue is: the config's data_dir, or --data-dir.
#[derive(Args)]
struct QueueArgs {
    /// Configuration file (TOML); without one, the defaults apply.
    #[arg(short, long, value_name = "FILE", env = config::ENV_CONFIG)]
    config: Option<PathBuf>,
    /// Directory holding the queue [default: the config's data_dir, ./auditspan-data].
    #[arg(long, value_name = "DIR", env = config::ENV_DATA_DIR)]
    data_dir: Option<PathBuf>,
}

impl QueueArgs {
    fn load(&self) -> anyhow::Result<config::Config> {
        let overrides = config::Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            metrics_listen: None,
            service_name: None,
        };
        Ok(config::load(&overrides)?)
    }
}

/// Options shared by every subcommand. Precedence: flags > AUDITSPAN_* environment >
/// config file > defaults.
#[derive(Args, Clone)]
struct ConfigArgs {
    /// Configuration file (TOML); without one, the defaults apply.
    #[arg(short, long, value_name = "FILE", env = config::ENV_CONFIG)]
    config: Option<PathBuf>,
    /// Directory for auditspan's state and the dead-letter file [default: ./auditspan-data].
    #[arg(long, value_name = "DIR", env = config::ENV_DATA_DIR)]
    data_dir: Option<PathBuf>,
    /// Address of the /metrics endpoint, e.g. 127.0.0.1:9464; "" disables it.
    #[arg(long, value_name = "ADDR", env = config::ENV_METRICS_LISTEN)]
    metrics_listen: Option<String>,
    /// service.name of the spans [default: vault].
    #[arg(long, value_name = "NAME", env = config::ENV_SERVICE_NAME)]
    service_name: Option<String>,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Text the audit device wrote before each JSON object (its `prefix` option);
    /// stripped where present. Default: the first input's prefix.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Where rejected lines go; created only when there is one.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "./auditspan-import-deadletter.jsonl"
    )]
    deadletter: PathBuf,
    /// Audit log files (one JSON event per line); read in the order of their first event.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Milliseconds between two progress lines when stderr is not a terminal (on a
    /// terminal a progress bar shows instead).
    #[arg(long, value_name = "MS", default_value_t = 10_000, hide = true)]
    progress_interval_ms: u64,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<config::Config> {
        let overrides = config::Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            metrics_listen: self.metrics_listen.clone(),
            service_name: self.service_name.clone(),
        };
        Ok(config::load(&overrides)?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging();
    // Every file auditspan creates holds audit data: owner-only unless configured otherwise.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    // Transparent huge pages turn every freshly touched allocator arena into 2 MiB of
    // resident memory; measured with the queue on, peak RSS fell by a third without them.
    nix::sys::prctl::set_thp_disable(true).ok();
    let result = match cli.command {
        None => run(cli.run),
        Some(Command::Run(args)) => run(args),
        Some(Command::Check(args)) => check(&args),
        Some(Command::Import(args)) => import(args),
        Some(Command::Queue(QueueCommand::Stats(args))) => queue_stats(&args),
        Some(Command::Queue(QueueCommand::Compact(args))) => queue_compact(&args),
        Some(Command::Queue(QueueCommand::Migrate(args))) => queue_migrate(&args),
        Some(Command::Health(args)) => health(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("auditspan: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: ConfigArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let metrics = match config.metrics.listen {
        Some(_) => Some(telemetry::metrics::install().context("installing the metrics recorder")?),
        None => None,
    };
    actix_rt::System::new().block_on(async move {
        // Installed before anything starts: a SIGTERM during start-up (the socket already
        // accepts) is then a clean shutdown once started, not the default instant death.
        let shutdown = shutdown_signal();
        app::run(config, metrics, shutdown).await
    })?;
    Ok(())
}

/// Installs the SIGTERM/SIGINT handlers now (inside the runtime); the future completes on
/// the first of them received since.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = signals else {
            tracing::error!("Cannot install signal handlers; stop with SIGKILL.");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

/// Prints the effective configuration, then for each sink that reads settings from the
/// environment (OTLP: `OTEL_*`) its effective settings, as TOML comments, so the output
/// stays valid input.
fn check(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let mut environment = String::new();
    for sink in &config.sinks {
        let described = sink::describe_environment(sink, &config)
            .map_err(|e| anyhow::anyhow!("sink \"{}\": {e}", sink.name))?;
        if let Some(text) = described {
            environment.push('\n');
            environment.push_str(&text);
        }
    }
    print!("{}{environment}", config.to_toml_redacted());
    eprintln!("auditspan: configuration OK");
    Ok(())
}

fn health(args: &HealthArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let Some(mut addr) = config.metrics.listen else {
        anyhow::bail!("metrics.listen is disabled, so there is no /healthz to ask");
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let path = if args.ready { "readyz" } else { "healthz" };
    let url = format!("http://{addr}/{path}");
    let timeout = std::time::Duration::from_secs(args.timeout);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let answer = runtime.block_on(async {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        let response = client.get(&url).send().await?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        Ok::<_, reqwest::Error>((status, body))
    });
    match answer {
        Ok((status, body)) if status.is_success() => {
            println!("{url}: {} {}", status.as_u16(), body.trim());
            Ok(())
        }
        Ok((status, body)) => anyhow::bail!("{url}: {} {}", status.as_u16(), body.trim()),
        Err(err) => anyhow::bail!("{url}: {}", sink::http::error_chain(&err)),
    }
}

fn queue_stats(args: &QueueArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let options = StoreOptions::from_config(&config.queue);
    let sinks: Vec<String> = config.sinks.iter().map(|s| s.name.clone()).collect();
    print!("{}", offline::stats(&config.data_dir, options, &sinks)?);
    Ok(())
}

fn queue_compact(args: &QueueArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let options = StoreOptions::from_config(&config.queue);
    print!("{}", offline::compact(&config.data_dir, options)?);
    Ok(())
}

fn queue_migrate(args: &QueueArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    print!("{}", offline::migrate(&config.data_dir)?);
    Ok(())
}

fn import(args: ImportArgs) -> anyhow::Result<()> {
    let config = args.config.load()?;
    let options = import::ImportOptions {
        files: args.files,
        prefix: args.prefix,
        deadletter: args.deadletter,
        data_dir: args.config.data_dir.clone(),
        progress: Some(std::time::Duration::from_millis(
            args.progress_interval_ms.max(1),
        )),
    };
    let summary = actix_rt::System::new().block_on(import::run(&config, options, || {
        Box::new(std::io::stdout())
    }))?;
    let l = summary.lines;
    let c = summary.correlator;
    let invalid: Vec<String> = InvalidReason::ALL
        .iter()
        .zip(l.invalid)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| format!("{} {n}", r.as_str()))
        .collect();
    let spans: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("{} {}", o.as_str(), c.spans.get(*o)))
        .collect();
    eprintln!(
        "auditspan import: {} file(s), {} lines: {} events, {} invalid{}, {} ignored (audit_test {}, duplicate {}); {} spans ({})",
        summary.files.len(),
        l.received,
        l.events,
        summary.dead_letters,
        if invalid.is_empty() {
            String::new()
        } else {
            format!(" ({})", invalid.join(", "))
        },
        l.audit_test + c.duplicates,
        l.audit_test,
        c.duplicates,
        c.spans.total(),
        spans.join(", "),
    );
    if summary.dead_letters > 0 {
        eprintln!(
            "auditspan import: rejected lines are in {}",
            summary.deadletter.display()
        );
    }
    Ok(())
}
