//! A tmpfs mounted for one test: a real file system that fills up (needs root and
//! mount(8), as CI runs).

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
};

/// A tmpfs at a directory, unmounted (lazily, so an open file cannot stop it) on drop.
pub struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (mount's syntax: "100m") at `at`.
    pub fn mount(at: &Path, size: &str) -> Tmpfs {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .unwrap_or_else(|e| panic!("running mount: {e}; this test needs root and mount(8)"));
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {}: {}; this test needs root (CI runs as root)",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_owned())
    }

    /// Bytes still free.
    pub fn available(&self) -> u64 {
        let fs = nix::sys::statvfs::statvfs(&self.0).unwrap();
        fs.blocks_available() * fs.fragment_size()
    }

    /// Writes `filler` until at most `leave` bytes are free; returns its path (remove it to
    /// give the space back).
    pub fn fill(&self, leave: u64) -> PathBuf {
        let path = self.0.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let chunk = vec![0x5a; 64 << 10];
        while self.available() > leave {
            let n = usize::try_from(self.available() - leave)
                .unwrap_or(usize::MAX)
                .min(chunk.len());
            if let Err(e) = file.write_all(&chunk[..n]) {
                assert_eq!(e.kind(), std::io::ErrorKind::StorageFull, "{e}");
                break;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg("-l").arg(&self.0).status().ok();
    }
}
