//! Mininet, side by side: the same N hosts on one Linux bridge, no
//! controller, `pingAll`, timed inside a small python script written to a
//! temporary file at run time.
//!
//! Mininet's switches live in the namespace it runs in, so the script runs
//! in a namespace of our own (`cnl-b<pid>mn-0`), never in the host's.
//! `Mininet.init()` is skipped on purpose: its `fixLimits()` writes
//! host-wide sysctls (fs.file-max, net.core.*mem_max, kernel.pty.max); the
//! script raises its own rlimits instead.

use std::process::Command;
use std::time::{Duration, Instant};

use super::BenchError;
use crate::kernel::{netns, NetNs};

pub const NOT_INSTALLED: &str = "mininet: not installed (apt-get install mininet bridge-utils)";

/// Where Mininet can run: a python3 that imports it, and `brctl`.
#[derive(Debug, Clone)]
pub struct Mininet {
    pub python: String,
    pub version: String,
}

/// Finds a python3 that can `import mininet` (the Debian package installs
/// it for /usr/bin/python3, which a pyenv shim on PATH may hide) and `brctl`
/// (LinuxBridge drives the bridge with it). Err: why Mininet cannot run.
pub fn detect() -> Result<Mininet, String> {
    let mut why = NOT_INSTALLED.to_string();
    for python in ["/usr/bin/python3", "python3"] {
        let out = Command::new(python)
            .args([
                "-c",
                "import mininet.net, mininet.nodelib; print(mininet.net.VERSION)",
            ])
            .output();
        match out {
            Ok(o) if o.status.success() => {
                if Command::new("brctl").arg("--version").output().is_err() {
                    return Err("mininet: brctl missing, LinuxBridge needs it (apt-get install bridge-utils)".into());
                }
                return Ok(Mininet {
                    python: python.into(),
                    version: String::from_utf8_lossy(&o.stdout).trim().to_string(),
                });
            }
            Ok(_) | Err(_) => why = NOT_INSTALLED.to_string(),
        }
    }
    Err(why)
}

const SCRIPT: &str = r#"
import json, resource, sys, time
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import SingleSwitchTopo
from mininet.log import setLogLevel

n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
want = max(soft, 16384)
resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
# Mininet.init() would run fixLimits(), which writes host-wide sysctls.
Mininet.inited = True
setLogLevel('error')
t0 = time.monotonic()
net = Mininet(topo=SingleSwitchTopo(n), switch=LinuxBridge, controller=None,
              autoSetMacs=True)
net.start()
t1 = time.monotonic()
loss = net.pingAll(timeout=1)
t2 = time.monotonic()
net.stop()
t3 = time.monotonic()
print(json.dumps({"start": t1 - t0, "ping": t2 - t1, "stop": t3 - t2,
                  "loss": loss, "pings": n * (n - 1)}))
"#;

/// One Mininet run.
#[derive(Debug, Clone, Copy)]
pub struct MininetRun {
    pub start: Duration,
    pub ping_all: Duration,
    pub stop: Duration,
    /// Wall time of the whole python process (imports included).
    pub process: Duration,
    pub pings: usize,
    pub loss_percent: f64,
}

/// Deletes our namespace for Mininet on drop.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

pub fn run(mn: &Mininet, hosts: usize) -> Result<MininetRun, BenchError> {
    let dir = std::env::temp_dir().join(format!("cnlab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|e| BenchError::new(format!("mininet: creating {}: {e}", dir.display())))?;
    let script = dir.join("mininet_flat.py");
    std::fs::write(&script, SCRIPT)
        .map_err(|e| BenchError::new(format!("mininet: writing {}: {e}", script.display())))?;
    let ns_name = format!("cnl-b{}mn-0", std::process::id());
    let _ = netns::delete(&ns_name);
    let ns = NetNs::create(&ns_name)?;
    let _scratch = Scratch(ns_name.clone());
    // Mininet pings hosts through their own loopback-less namespaces; our
    // namespace only holds the bridge, but bring lo up as a host would.
    let _ = Command::new("ip")
        .args(["-n", &ns_name, "link", "set", "lo", "up"])
        .status();
    drop(ns);
    let t = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns_name, &mn.python])
        .arg(&script)
        .arg(hosts.to_string())
        .output()
        .map_err(|e| BenchError::new(format!("mininet: starting {}: {e}", mn.python)))?;
    let process = t.elapsed();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    let (true, Some(line)) = (out.status.success(), line) else {
        return Err(BenchError::new(format!(
            "mininet with {hosts} hosts failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    };
    let v: serde_json::Value = serde_json::from_str(line)
        .map_err(|e| BenchError::new(format!("mininet: reading its timings {line:?}: {e}")))?;
    let secs = |k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or(0.0).max(0.0));
    Ok(MininetRun {
        start: secs("start"),
        ping_all: secs("ping"),
        stop: secs("stop"),
        process,
        pings: v["pings"].as_u64().unwrap_or(0) as usize,
        loss_percent: v["loss"].as_f64().unwrap_or(100.0),
    })
}
