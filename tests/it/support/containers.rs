//! Containers for the deployment tests (`tests/it/deploy.rs`): podman, the image built
//! from `deploy/Dockerfile`, and the Python tools that validate the manifests.
//!
//! `./scripts/test` installs all of it (Debian's podman with runc and cgroupfs, the
//! `.venv` tools from PyPI) and builds two local base images with mmdebstrap, because no
//! public registry is reachable here; it passes them in `AUDITSPAN_BUILDER_IMAGE` and
//! `AUDITSPAN_RUNTIME_IMAGE`, and its `containers.conf` in `AUDITSPAN_CONTAINERS_CONF`.
//! Missing any of it fails the test with the reason: these tests never skip.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use super::repo_dir;

/// The tag of the image under test.
pub const IMAGE: &str = "localhost/auditspan:test";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through ./scripts/test, which prepares podman")
    })
}

/// `podman` with the test's `containers.conf`.
pub fn podman() -> Command {
    let mut command = Command::new("podman");
    command.env("CONTAINERS_CONF", required_env("AUDITSPAN_CONTAINERS_CONF"));
    command
}

/// Runs `command` and returns its output; fails the test, with stderr, unless it succeeds.
pub fn run_ok(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("running {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A tool installed in the repository's `.venv` (check-jsonschema, kubernetes-validate,
/// podman-compose, the Python interpreter).
pub fn venv_tool(name: &str) -> PathBuf {
    let path = repo_dir().join(".venv/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: ./scripts/test installs it",
        path.display()
    );
    path
}

/// The local stand-ins for the Dockerfile's public base images.
pub fn builder_image() -> String {
    required_env("AUDITSPAN_BUILDER_IMAGE")
}

pub fn runtime_image() -> String {
    required_env("AUDITSPAN_RUNTIME_IMAGE")
}

/// Builds [`IMAGE`] once per test run from `deploy/Dockerfile`, with the local base images
/// and the `auditspan` binary these tests run (copied to `target/image/`, the one part of
/// `target/` the `.dockerignore` lets into the build context).
pub fn auditspan_image() -> &'static str {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = repo_dir().join("target/image");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_auditspan"), dir.join("auditspan")).unwrap();
        run_ok(
            podman()
                .current_dir(repo_dir())
                .args(["build", "--format", "docker", "-f", "deploy/Dockerfile"])
                .args(["--build-arg", &format!("BUILDER_IMAGE={}", builder_image())])
                .args(["--build-arg", &format!("RUNTIME_IMAGE={}", runtime_image())])
                .args(["--build-arg", "PREBUILT=target/image/auditspan"])
                .args(["-t", IMAGE, "."]),
        );
    });
    IMAGE
}

/// A container removed (with its anonymous volumes) when dropped, so a failing test never
/// leaves one running.
pub struct Container {
    pub name: String,
}

impl Container {
    /// `podman run -d --name NAME ARGS...`
    pub fn run(name: &str, args: &[&str]) -> Container {
        podman().args(["rm", "-f", "-v", name]).output().ok();
        run_ok(podman().args(["run", "-d", "--name", name]).args(args));
        Container {
            name: name.to_owned(),
        }
    }

    /// The host port published for `container_port` (tcp).
    pub fn host_port(&self, container_port: u16) -> u16 {
        let out = run_ok(podman().args(["port", &self.name, &format!("{container_port}/tcp")]));
        let text = String::from_utf8_lossy(&out.stdout);
        let port = text
            .lines()
            .next()
            .and_then(|l| l.rsplit(':').next())
            .and_then(|p| p.trim().parse().ok());
        port.unwrap_or_else(|| panic!("no published port for {container_port}: {text}"))
    }

    pub fn logs(&self) -> String {
        let out = podman().args(["logs", &self.name]).output().unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `podman inspect --format FORMAT`.
    pub fn inspect(&self, format: &str) -> String {
        let out = run_ok(podman().args(["inspect", "--format", format, &self.name]));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        podman().args(["rm", "-f", "-v", &self.name]).output().ok();
    }
}

/// Every file in the image, as `podman export` lists it (paths without a leading `./`).
pub fn image_files(image: &str) -> Vec<String> {
    let name = format!("auditspan-files-{}", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    podman().args(["rm", "-f", &name]).output().ok();
    run_ok(podman().args(["create", "--name", &name, image]));
    let exported = podman()
        .args(["export", "-o"])
        .arg(&archive)
        .arg(&name)
        .output();
    podman().args(["rm", "-f", &name]).output().ok();
    assert!(exported.unwrap().status.success(), "podman export failed");
    let list = run_ok(Command::new("tar").arg("-tf").arg(&archive));
    let mut files: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .collect();
    files.sort();
    files
}

/// A file of the repository, for error messages and tool arguments.
pub fn repo_file(path: &str) -> PathBuf {
    let file = repo_dir().join(path);
    assert!(file.exists(), "{} is missing", file.display());
    file
}

/// Every `*.yaml` file under `dir` (not recursive), sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
