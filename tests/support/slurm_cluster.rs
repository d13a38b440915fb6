//! A one-node Slurm cluster of the caller's own, for tests and benches: `scripts/slurm.sh
//! start DIR` on free ports, stopped (by the PIDs its daemons wrote) on drop. Included by
//! `tests/it/cluster.rs` and `benches/slurm.rs` through `#[path]`.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm.sh")
}

pub struct Cluster {
    dir: tempfile::TempDir,
    /// The `SLURM_CONF` that the client commands need.
    pub conf: String,
}

impl Cluster {
    /// Brings a cluster up; panics, saying how to install Slurm, when it does not start.
    ///
    /// A port found free can be taken before slurmd binds it (by any other test's connection),
    /// so a start that fails with "Address already in use" is stopped and tried again on new
    /// ports, up to three times.
    pub fn start() -> Cluster {
        let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
        let mut failure = String::new();
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let out = Command::new("bash")
                .arg(script())
                .args(["start", &dir.path().to_string_lossy()])
                .env("SLURMCTLD_PORT", free())
                .env("SLURMD_PORT", free())
                .output()
                .expect("run scripts/slurm.sh");
            if out.status.success() {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let conf =
                    stdout.lines().last().and_then(|l| l.strip_prefix("export SLURM_CONF=")).expect("start prints SLURM_CONF").to_string();
                return Cluster { dir, conf };
            }
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            failure = format!("{}\n{stderr}", out.status);
            let _ = Command::new("bash").arg(script()).args(["stop", &dir.path().to_string_lossy()]).status();
            if !stderr.contains("Address already in use") {
                break;
            }
        }
        panic!("the Slurm cluster did not start ({failure}); install it with `scripts/slurm.sh install`, or set MASKFLOW_SKIP_SLURM=1")
    }

    pub fn env(&self) -> [(&'static str, &str); 1] {
        [("SLURM_CONF", self.conf.as_str())]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", &self.dir.path().to_string_lossy()]).status();
    }
}
