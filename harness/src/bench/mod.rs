//! Benchmarks: bring-up, probing and teardown of cnlab labs, side by side
//! with Mininet (same hosts, one Linux bridge, `pingAll`) and with the
//! kernel's floor (the same namespaces and veths through `ip -batch`).
//!
//! Cases: `flat-N` (one node, N pods, all-pairs TCP probes), `floor` (the
//! floor alone for the flat sizes), `reference` (the largest shipped
//! scenario, every expectation), `scale` (nodes × pods, random probes, peak
//! RSS). Every case runs `repeat` times; the report keeps every sample and
//! shows medians. Nothing here asserts on time.

pub mod floor;
pub mod gen;
pub mod mininet;
pub mod report;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::check::{self, CheckResult};
use crate::kernel::caps::BackendChoice;
use crate::kernel::tc::TcAttach;
use crate::lab::{self, Lab, UpOptions};
use crate::plan::LabPlan;
use crate::topology::model::{Expectation, Verdict};
use crate::topology::{load_file, load_str, Resolved};
pub use gen::ScaleCni;
pub use report::{BenchReport, CaseReport, Row};

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct BenchError(pub String);

impl BenchError {
    pub fn new(msg: impl Into<String>) -> Self {
        BenchError(msg.into())
    }
}

impl From<crate::kernel::KernelError> for BenchError {
    fn from(e: crate::kernel::KernelError) -> Self {
        BenchError(e.to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Case {
    Flat,
    Reference,
    Floor,
    Scale,
}

impl Case {
    pub const ALL: [Case; 4] = [Case::Flat, Case::Floor, Case::Reference, Case::Scale];
}

#[derive(Debug, Clone)]
pub struct ScaleOptions {
    pub nodes: usize,
    pub pods_per_node: usize,
    pub probes: usize,
    pub cni: ScaleCni,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        ScaleOptions {
            nodes: 20,
            pods_per_node: 50,
            probes: 1000,
            cni: ScaleCni::Flannel,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub cases: Vec<Case>,
    /// Pod counts of the flat (and floor) case.
    pub sizes: Vec<usize>,
    pub repeat: usize,
    /// Run Mininet next to the flat case when it is installed.
    pub mininet: bool,
    /// Probes in flight at once.
    pub parallel: usize,
    pub scale: ScaleOptions,
    /// Where the shipped topologies live (`scenarios/`, maybe `reference/`).
    pub topologies: PathBuf,
    pub backend: BackendChoice,
    /// How trunk programs attach; several: the reference case runs once per
    /// mode, side by side (empty: the automatic choice).
    pub tc_attach: Vec<TcAttach>,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            cases: Case::ALL.to_vec(),
            sizes: vec![10, 50, 100],
            repeat: 3,
            mininet: true,
            parallel: 8,
            scale: ScaleOptions::default(),
            topologies: PathBuf::from("topologies"),
            backend: BackendChoice::Auto,
            tc_attach: Vec::new(),
        }
    }
}

/// Runs the chosen cases; `progress` hears one line per step.
pub fn run(opts: &BenchOptions, progress: &mut dyn FnMut(&str)) -> Result<BenchReport, BenchError> {
    baseline_namespaces();
    if !lab::is_root() {
        return Err(BenchError::new(
            "cnlab bench creates network namespaces: run it as root (sudo cnlab bench …)",
        ));
    }
    let repeat = opts.repeat.max(1);
    let mininet = if opts.mininet && opts.cases.contains(&Case::Flat) {
        Some(mininet::detect())
    } else {
        None
    };
    let mut report = BenchReport::new(repeat, mininet.as_ref());
    for case in &opts.cases {
        match case {
            Case::Flat => {
                for &n in &opts.sizes {
                    let mn = mininet.as_ref().and_then(|m| m.as_ref().ok());
                    report
                        .cases
                        .push(flat(opts, n, repeat, mn, true, progress)?);
                }
            }
            Case::Floor => {
                for &n in &opts.sizes {
                    report
                        .cases
                        .push(flat(opts, n, repeat, None, false, progress)?);
                }
            }
            Case::Reference => {
                let modes: Vec<Option<TcAttach>> = if opts.tc_attach.is_empty() {
                    vec![None]
                } else {
                    opts.tc_attach.iter().copied().map(Some).collect()
                };
                for m in modes {
                    report.cases.push(reference(opts, m, repeat, progress)?);
                }
            }
            Case::Scale => report.cases.push(scale(opts, repeat, progress)?),
        }
    }
    Ok(report)
}

fn load_yaml(yaml: &str, origin: &str) -> Result<Resolved, BenchError> {
    load_str(yaml, origin)
        .map(|l| l.resolved)
        .map_err(|r| BenchError::new(format!("{origin}: generated topology is invalid: {r}")))
}

fn plan_of(opts: &BenchOptions, r: &Resolved) -> Result<LabPlan, BenchError> {
    let backends = lab::backends(opts.backend).map_err(|e| BenchError::new(e.to_string()))?;
    crate::plan::plan(r, backends)
        .map_err(|e| BenchError::new(format!("planning {}: {e}", r.topo.name)))
}

/// One bring-up, probe round and teardown of a cnlab lab.
struct LabRun {
    up: Duration,
    timings: lab::UpTimings,
    probe: Duration,
    down: Duration,
    /// After `down`, until the kernel had freed the lab's namespaces.
    freed: Duration,
    results: Vec<CheckResult>,
    /// Times the kernel's ARP table was full during the run.
    arp_table_fulls: u64,
    /// Most descriptors this process had open at once during the run.
    peak_fds: usize,
}

/// Live network namespaces as `/proc/slabinfo` counts them (`net_namespace`
/// objects in use; SLUB's figure lags its per-CPU caches a little).
fn live_namespaces() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/slabinfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("net_namespace "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Live namespaces when the bench started (the first call's count).
fn baseline_namespaces() -> Option<u64> {
    static BASELINE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *BASELINE.get_or_init(live_namespaces)
}

/// Waits until the kernel has freed the namespaces the previous run
/// deleted, and says how long that took.
///
/// Deleting a namespace only drops its last reference: the kernel frees it
/// later on its `netns` workqueue (one worker, taking RTNL for every
/// batch), so a run measured right after another would pay for part of the
/// other's teardown (cnlab's up after the floor's down, and the floor's up
/// after cnlab's). Every measured run therefore starts once the count of
/// live namespaces is back to what it was when the bench started
/// (`baseline`, a few of slack: SLUB's count is approximate), or once it
/// has not moved for a second while the CPUs were idle (another program's
/// namespaces came or went; the count alone stands still for many seconds
/// while the worker unregisters the links of one big batch), at most
/// 120 s; where slabinfo is unreadable, after 300 ms.
fn settle() -> Duration {
    const SLACK: u64 = 8;
    const QUIET: Duration = Duration::from_secs(1);
    const IDLE_BELOW: f64 = 0.10;
    let baseline = baseline_namespaces();
    let start = Instant::now();
    let (Some(baseline), Some(mut last)) = (baseline, live_namespaces()) else {
        std::thread::sleep(Duration::from_millis(300));
        return start.elapsed();
    };
    let mut changed = Instant::now();
    let mut cpu = CpuBusy::now();
    let mut idle_since = Instant::now();
    while last > baseline + SLACK
        && (changed.elapsed() < QUIET || idle_since.elapsed() < QUIET)
        && start.elapsed() < Duration::from_secs(120)
    {
        std::thread::sleep(Duration::from_millis(50));
        let now = live_namespaces().unwrap_or(last);
        if now != last {
            last = now;
            changed = Instant::now();
        }
        if cpu.busy_since() > IDLE_BELOW {
            idle_since = Instant::now();
        }
    }
    let waited = start.elapsed();
    // The quiet second proves the end, it is not part of the work.
    if last > baseline + SLACK {
        waited.saturating_sub(QUIET)
    } else {
        waited
    }
}

/// Share of CPU time spent busy (all CPUs, /proc/stat) between readings.
struct CpuBusy {
    busy: u64,
    total: u64,
}

impl CpuBusy {
    fn now() -> CpuBusy {
        let (busy, total) = Self::read().unwrap_or((0, 0));
        CpuBusy { busy, total }
    }

    fn read() -> Option<(u64, u64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let ticks: Vec<u64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect();
        let total: u64 = ticks.iter().sum();
        let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
        Some((total - idle, total))
    }

    /// Busy share since the last call (0 when unreadable).
    fn busy_since(&mut self) -> f64 {
        let Some((busy, total)) = Self::read() else {
            return 0.0;
        };
        let share = (busy - self.busy) as f64 / (total - self.total).max(1) as f64;
        (self.busy, self.total) = (busy, total);
        share
    }
}

fn lab_run(
    opts: &BenchOptions,
    r: &Resolved,
    expects: &[Expectation],
    tc_attach: Option<TcAttach>,
) -> Result<LabRun, BenchError> {
    settle();
    let fulls = arp_table_fulls();
    let fds = FdSampler::start();
    let t = Instant::now();
    let up_opts = UpOptions {
        backend: opts.backend,
        file: None,
        tc_attach: tc_attach.or(opts.tc_attach.first().copied()),
    };
    let lab =
        Lab::up(r, &up_opts).map_err(|e| BenchError::new(format!("{}: up: {e}", r.topo.name)))?;
    let up = t.elapsed();
    let timings = lab.timings.clone();
    let t = Instant::now();
    let results = check::run(&lab, expects, opts.parallel);
    let probe = t.elapsed();
    let t = Instant::now();
    lab.down();
    let down = t.elapsed();
    let peak_fds = fds.stop();
    let freed = settle();
    Ok(LabRun {
        up,
        timings,
        probe,
        down,
        freed,
        results,
        arp_table_fulls: arp_table_fulls().saturating_sub(fulls),
        peak_fds,
    })
}

/// Counts this process's open descriptors (/proc/self/fd) every 100 ms
/// on a thread of its own, keeping the largest count.
struct FdSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<usize>,
}

impl FdSampler {
    fn start() -> FdSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            loop {
                peak = peak.max(open_fds());
                if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        FdSampler { stop, thread }
    }

    fn stop(self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(0)
    }
}

/// Descriptors this process has open now.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Adds one cnlab run to the case's rows and probe counts.
fn record_lab(c: &mut CaseReport, run: &LabRun) {
    c.add("up", Tool::Cnlab, run.up);
    c.add("  plan", Tool::Cnlab, run.timings.plan);
    c.add("  namespaces", Tool::Cnlab, run.timings.namespaces);
    c.add("  build", Tool::Cnlab, run.timings.build);
    if !run.timings.tc.is_zero() {
        c.add("    tc", Tool::Cnlab, run.timings.tc);
    }
    c.add("  servers", Tool::Cnlab, run.timings.servers);
    c.add("probe", Tool::Cnlab, run.probe);
    c.add("down", Tool::Cnlab, run.down);
    c.add("  kernel frees", Tool::Cnlab, run.freed);
    c.add("total", Tool::Cnlab, run.up + run.probe + run.down);
    c.arp_table_fulls += run.arp_table_fulls;
    c.peak_fds = c.peak_fds.max(Some(run.peak_fds));
    c.probes = run.results.len();
    c.connected = run
        .results
        .iter()
        .filter(|r| r.observed.outcome.verdict == Verdict::Connected)
        .count();
    c.passed = run.results.iter().filter(|r| r.passed()).count();
    if c.first_failure.is_none() {
        c.first_failure = run
            .results
            .iter()
            .find(|r| !r.passed())
            .map(|r| format!("{}: {}", r.expect.name, r.failures.join("; ")));
    }
}

/// The stars of a scale lab's veths, for its floor: one per node (its pods'
/// veths) and the VPC's; with trunking, one more per node: its hypervisor,
/// which holds the member ENIs' links to the VPC.
fn scale_hubs(s: &ScaleOptions) -> usize {
    match s.cni {
        gen::ScaleCni::TerwayTrunking => 2 * s.nodes + 1,
        _ => s.nodes + 1,
    }
}

/// The floor for the case's objects, as `hubs` stars (see `floor::run`).
fn record_floor(c: &mut CaseReport, tag: &str, hubs: usize) -> Result<(), BenchError> {
    settle();
    let f = floor::run(tag, c.namespaces, c.veths, hubs)?;
    c.add("up", Tool::Floor, f.create);
    c.add("down", Tool::Floor, f.destroy);
    c.add("  kernel frees", Tool::Floor, settle());
    c.add("total", Tool::Floor, f.create + f.destroy);
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Cnlab,
    Mininet,
    Floor,
}

/// The most probes a flat case sends (all pairs of N pods: N ≈ 1,000).
const MAX_FLAT_PROBES: usize = 1_000_000;

/// flat-N: cnlab (unless `with_lab` is false: the floor case alone),
/// Mininet when given, and the floor, `repeat` times each.
fn flat(
    opts: &BenchOptions,
    n: usize,
    repeat: usize,
    mn: Option<&mininet::Mininet>,
    with_lab: bool,
    progress: &mut dyn FnMut(&str),
) -> Result<CaseReport, BenchError> {
    let name = if with_lab {
        format!("flat-{n}")
    } else {
        format!("floor-{n}")
    };
    let r = load_yaml(&gen::flat_yaml(n), &name)?;
    let plan = plan_of(opts, &r)?;
    let mut c = CaseReport::new(&name, &plan);
    // flat-N probes every ordered pair; the floor case alone probes nothing
    // (and must not build N·(N−1) expectations it never sends).
    let expects = if with_lab {
        let pairs = n.saturating_mul(n.saturating_sub(1));
        if pairs > MAX_FLAT_PROBES {
            return Err(BenchError::new(format!(
                "flat-{n} would probe all {pairs} ordered pod pairs (more than {MAX_FLAT_PROBES}); \
                 use `--case floor --n {n}` for the floor alone, or `--case scale` for a large lab \
                 with random probes"
            )));
        }
        gen::all_pairs(&gen::pod_names(1, n))
    } else {
        Vec::new()
    };
    for i in 0..repeat {
        if with_lab {
            progress(&format!(
                "{name} [{}/{repeat}] cnlab: {} probes",
                i + 1,
                expects.len()
            ));
            let run = lab_run(opts, &r, &expects, None)?;
            record_lab(&mut c, &run);
            if let Some(mn) = mn {
                progress(&format!(
                    "{name} [{}/{repeat}] mininet: {n} hosts, pingAll",
                    i + 1
                ));
                let m = mininet::run(mn, n)?;
                c.add("up", Tool::Mininet, m.start);
                c.add("probe", Tool::Mininet, m.ping_all);
                c.add("down", Tool::Mininet, m.stop);
                c.add("total", Tool::Mininet, m.start + m.ping_all + m.stop);
                c.mininet_pings = m.pings;
                c.mininet_loss_percent = Some(m.loss_percent);
            }
        }
        progress(&format!(
            "{name} [{}/{repeat}] floor: {} namespaces, {} veths",
            i + 1,
            c.namespaces,
            c.veths
        ));
        record_floor(&mut c, "f", 1)?;
    }
    Ok(c)
}

/// The reference topology: `topologies/reference/*.yaml` when it exists,
/// else the shipped scenario that plans the most namespaces.
pub fn reference_topology(opts: &BenchOptions) -> Result<(PathBuf, Resolved), BenchError> {
    let reference_dir = opts.topologies.join("reference");
    let dir = if reference_dir.is_dir() {
        reference_dir
    } else {
        opts.topologies.join("scenarios")
    };
    let files = yaml_files(&dir)?;
    let mut best: Option<(usize, PathBuf, Resolved)> = None;
    for f in files {
        let r = load_file(&f)
            .map_err(|e| BenchError::new(format!("{}: {e}", f.display())))?
            .resolved;
        let size = plan_of(opts, &r)?.namespaces.len();
        if best.as_ref().is_none_or(|(s, _, _)| size > *s) {
            best = Some((size, f, r));
        }
    }
    best.map(|(_, f, r)| (f, r))
        .ok_or_else(|| BenchError::new(format!("{}: no topology to benchmark", dir.display())))
}

fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| BenchError::new(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    v.sort();
    Ok(v)
}

fn reference(
    opts: &BenchOptions,
    mode: Option<TcAttach>,
    repeat: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<CaseReport, BenchError> {
    let (file, r) = reference_topology(opts)?;
    let plan = plan_of(opts, &r)?;
    let tc = plan.namespaces.iter().any(|n| !n.tc.is_empty());
    let name = match (tc, mode) {
        (true, Some(m)) => format!("reference-{}", m.name()),
        _ => "reference".to_string(),
    };
    let mut c = CaseReport::new(&name, &plan);
    c.notes.push(format!("topology: {}", file.display()));
    if tc {
        let m = lab::tc_attach(mode).map_err(|e| BenchError::new(e.to_string()))?;
        c.notes.push(format!("tc attach: {}", m.describe()));
    }
    for i in 0..repeat {
        progress(&format!(
            "reference [{}/{repeat}] cnlab: {}",
            i + 1,
            file.display()
        ));
        let run = lab_run(opts, &r, &r.topo.expect, mode)?;
        if i == 0 && tc && repeat > 1 {
            // Later runs of this process reuse its eBPF object loader; a
            // one-file `cnlab check` is always a first run.
            c.notes.push(format!(
                "first run (the process's first eBPF load) up {:.1} ms",
                run.up.as_secs_f64() * 1e3
            ));
        }
        record_lab(&mut c, &run);
        progress(&format!("reference [{}/{repeat}] floor", i + 1));
        record_floor(&mut c, "r", 1)?;
    }
    Ok(c)
}

fn scale(
    opts: &BenchOptions,
    repeat: usize,
    progress: &mut dyn FnMut(&str),
) -> Result<CaseReport, BenchError> {
    let s = &opts.scale;
    let name = format!("scale-{}x{}", s.nodes, s.pods_per_node);
    let r = load_yaml(
        &gen::cluster_yaml(&name, s.cni, s.nodes, s.pods_per_node),
        &name,
    )?;
    let plan = plan_of(opts, &r)?;
    let mut c = CaseReport::new(&name, &plan);
    c.notes.push(format!("cni: {}", s.cni.as_str()));
    if s.cni == gen::ScaleCni::TerwayTrunking {
        // Said with every figure: the datapath is measured at a density no
        // real instance reaches (Terway: EniTotalQuantity − EniQuantity
        // member ENIs per node, e.g. 40 − 8 = 32 on ecs.r6.8xlarge).
        c.notes.push(format!(
            "{} member ENIs per node (enis.total = {} + {0}, a quota no real instance has; ecs.r6.8xlarge: 40 − 8 = 32)",
            s.pods_per_node,
            gen::TRUNK_NODE_ENIS
        ));
    }
    let pods = gen::pod_names(s.nodes, s.pods_per_node);
    let expects = gen::random_pairs(&pods, s.probes, 0x5eed);
    reset_peak_rss();
    for i in 0..repeat {
        progress(&format!(
            "{name} [{}/{repeat}] cnlab: {} pods, {} probes",
            i + 1,
            pods.len(),
            expects.len()
        ));
        let run = lab_run(opts, &r, &expects, None)?;
        record_lab(&mut c, &run);
        progress(&format!("{name} [{}/{repeat}] floor", i + 1));
        record_floor(&mut c, "s", scale_hubs(s))?;
    }
    // The floor as a single star once, so the effect of the shape shows.
    progress(&format!("{name} floor as one star"));
    settle();
    let one = floor::run("s1", c.namespaces, c.veths, 1)?;
    c.notes.push(format!(
        "floor as ONE star (every veth in one namespace): up {} ms, down {} ms",
        one.create.as_millis(),
        one.destroy.as_millis()
    ));
    c.peak_rss_kib = peak_rss_kib();
    Ok(c)
}

/// Peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resets VmHWM to the current RSS (Linux ≥ 4.0), so a case measures its
/// own peak rather than an earlier case's.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// How often the kernel found its ARP table full (`table_fulls` of
/// /proc/net/stat/arp_cache, summed over CPUs). The table is shared by every
/// network namespace and capped by the host's gc_thresh3, which only the
/// host namespace can raise: a lab with more neighbours than that loses
/// packets ("neighbour: arp_cache: neighbor table overflow!").
pub fn arp_table_fulls() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/net/stat/arp_cache") else {
        return 0;
    };
    let mut lines = text.lines();
    let Some(col) = lines
        .next()
        .and_then(|h| h.split_whitespace().position(|c| c == "table_fulls"))
    else {
        return 0;
    };
    lines
        .filter_map(|l| l.split_whitespace().nth(col))
        .filter_map(|v| u64::from_str_radix(v, 16).ok())
        .sum()
}

/// The host's cap on ARP entries across all namespaces (read only).
pub fn arp_gc_thresh3() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()?
        .trim()
        .parse()
        .ok()
}
