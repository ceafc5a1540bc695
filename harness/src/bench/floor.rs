//! The kernel's floor: the same number of namespaces and veth pairs created
//! and destroyed by `ip -batch` (one process, one netlink socket, no
//! addresses, no servers) — the cheapest way to get those objects.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::kernel::netns;

/// Create and destroy times of one floor run.
#[derive(Debug, Clone, Copy)]
pub struct FloorRun {
    pub create: Duration,
    pub destroy: Duration,
}

/// Deletes the floor's namespaces on drop, also when a batch failed halfway.
struct Cleanup {
    prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for n in netns::list(&self.prefix) {
            let _ = netns::delete(&n);
        }
    }
}

/// Creates `namespaces` namespaces and `veths` veth pairs between them,
/// then deletes the namespaces. Veth ends are created directly in their
/// namespaces, never in the caller's.
///
/// The veths form `hubs` stars: namespace `h < hubs` holds one end of every
/// `hubs`-th veth, the other ends go to the other namespaces in turn. A
/// cluster lab is one star per node (a node holds its pods' veths), so its
/// floor has one hub per node: the same objects in the same arrangement,
/// made the cheapest way. One hub holding all 10,000 veths is not the same
/// work: every device registration then lands in one namespace's device
/// and sysctl tables, which grow with it.
pub fn run(
    tag: &str,
    namespaces: usize,
    veths: usize,
    hubs: usize,
) -> Result<FloorRun, BenchError> {
    let namespaces = namespaces.max(2);
    let hubs = hubs.clamp(1, namespaces - 1);
    let prefix = format!("cnl-b{}{tag}-", std::process::id());
    let _cleanup = Cleanup {
        prefix: prefix.clone(),
    };
    let name = |i: usize| format!("{prefix}{i}");
    let mut create = String::new();
    for i in 0..namespaces {
        create.push_str(&format!("netns add {}\n", name(i)));
    }
    for v in 0..veths {
        let hub = v % hubs;
        let far = hubs + v % (namespaces - hubs);
        create.push_str(&format!(
            // One queue each way, as the lab's veths: the cheapest veth
            // (more queues cost an RCU wait under RTNL per veth).
            "link add name fv{v}a netns {} numtxqueues 1 numrxqueues 1 type veth peer name fv{v}b netns {} numtxqueues 1 numrxqueues 1\n",
            name(hub),
            name(far)
        ));
    }
    let destroy: String = (0..namespaces)
        .map(|i| format!("netns delete {}\n", name(i)))
        .collect();
    let create = batches(&create, "creating the floor's namespaces and veths")?;
    let destroy = batches(&destroy, "deleting the floor's namespaces")?;
    Ok(FloorRun { create, destroy })
}

/// Lines per `ip -batch` run. iproute2 (6.1 at least) opens the namespace
/// file for every `netns NAME` of a batch line and never closes it, so one
/// batch of 10,000 veths (two namespaces each) runs out of descriptors
/// ("Invalid \"netns\" value") under a 20,000 RLIMIT_NOFILE. A few more
/// `ip` starts cost milliseconds.
const BATCH_LINES: usize = 4000;

/// Runs `script` in `ip -batch` runs of at most `BATCH_LINES` lines each.
fn batches(script: &str, what: &str) -> Result<Duration, BenchError> {
    let lines: Vec<&str> = script.lines().collect();
    let mut total = Duration::ZERO;
    for part in lines.chunks(BATCH_LINES) {
        let mut text = part.join("\n");
        text.push('\n');
        total += batch(&text, what)?;
    }
    Ok(total)
}

/// Runs `ip -batch -` on `script`; the time includes starting `ip`.
fn batch(script: &str, what: &str) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let mut child = Command::new("ip")
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::new(format!("{what}: starting `ip -batch`: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| BenchError::new(format!("{what}: writing to `ip -batch`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BenchError::new(format!("{what}: waiting for `ip -batch`: {e}")))?;
    let took = t.elapsed();
    if !out.status.success() {
        return Err(BenchError::new(format!(
            "{what}: `ip -batch` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(took)
}
