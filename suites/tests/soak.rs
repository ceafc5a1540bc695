//! Endurance: many labs up and down in one process, and lab owners killed
//! with SIGKILL then collected by `gc`, leave nothing behind and nothing
//! grows: namespaces, open descriptors, BPF programs (and links), files in
//! /run/cnlab, threads, RSS (bounded). Every figure is printed.
//!
//! `scripts/test` runs a short round (`CNLAB_SOAK` unset: 12 labs, 4
//! kills); `scripts/soak` runs the full one (`CNLAB_SOAK=300,50`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cnlab::lab::{gc, registry, Lab, UpOptions};
use cnlab_suites::topology;

/// A trunk lab: eBPF VLAN programs on two nodes and their hypervisors.
const TOPOLOGY: &str = "scenarios/t4-trunk-cross-node.yaml";
const CHILD_ENV: &str = "CNLAB_SOAK_CHILD";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    fds: usize,
    bpf_prog_fds: usize,
    bpf_link_fds: usize,
    threads: usize,
    rss_kib: u64,
}

fn status_field(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

impl Snapshot {
    fn take() -> Snapshot {
        let mut s = Snapshot {
            fds: 0,
            bpf_prog_fds: 0,
            bpf_link_fds: 0,
            threads: status_field("Threads:") as usize,
            rss_kib: status_field("VmRSS:"),
        };
        for e in std::fs::read_dir("/proc/self/fd")
            .into_iter()
            .flatten()
            .flatten()
        {
            s.fds += 1;
            match std::fs::read_link(e.path()).map(|t| t.to_string_lossy().into_owned()) {
                Ok(t) if t == "anon_inode:bpf-prog" => s.bpf_prog_fds += 1,
                Ok(t) if t == "anon_inode:bpf_link" => s.bpf_link_fds += 1,
                _ => {}
            }
        }
        s
    }
}

fn loaded_programs() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .map(|p| p.id())
        .collect()
}

/// Namespaces and /run/cnlab files of the given labs that still exist.
fn leftovers(ids: &[String]) -> (Vec<String>, Vec<String>) {
    let ns: Vec<String> = std::fs::read_dir("/run/netns")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ids.iter().any(|id| n.starts_with(&format!("cnl-{id}-"))))
        .collect();
    let files: Vec<String> = std::fs::read_dir(registry::RUN_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ids.iter().any(|id| n.starts_with(&format!("{id}."))))
        .collect();
    (ns, files)
}

/// Program ids still loaded, after giving the kernel's namespace cleanup
/// (asynchronous, batched) up to `wait` to free them.
fn programs_left(ids: &BTreeSet<u32>, wait: Duration) -> Vec<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let left: Vec<u32> = loaded_programs().intersection(ids).copied().collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sizes() -> (usize, usize) {
    match std::env::var("CNLAB_SOAK") {
        Ok(v) => {
            let mut it = v.split(',').map(|x| x.trim().parse::<usize>());
            match (it.next(), it.next()) {
                (Some(Ok(l)), Some(Ok(k))) => (l, k),
                (Some(Ok(l)), None) => (l, 0),
                _ => panic!("CNLAB_SOAK={v:?}: expected LABS[,KILLS], e.g. 300,50"),
            }
        }
        Err(_) => (12, 4),
    }
}

#[test]
fn labs_up_and_down_and_killed_owners_leave_nothing_and_nothing_grows() {
    assert!(cnlab::lab::is_root(), "run as root (sudo -E cargo test)");
    let (labs, kills) = sizes();
    let r = topology(TOPOLOGY);
    // Warm-up: lazily created things (capability cache, aya's feature
    // probes, thread-locals, allocator arenas) exist before the baseline.
    for _ in 0..3 {
        Lab::up(&r, &UpOptions::default())
            .unwrap_or_else(|e| panic!("{e}"))
            .down();
    }
    let base = Snapshot::take();
    let t0 = Instant::now();
    let mut ids: Vec<String> = Vec::new();
    let mut progs: BTreeSet<u32> = BTreeSet::new();
    let mut peak_rss = base.rss_kib;
    let mut peak_threads = base.threads;
    let mut up_ms: Vec<u128> = Vec::new();
    let mut down_ms: Vec<u128> = Vec::new();
    for i in 0..labs {
        let t = Instant::now();
        let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("lab {i}: {e}"));
        up_ms.push(t.elapsed().as_millis());
        let mine = lab.tc_program_ids();
        assert!(
            !mine.is_empty(),
            "lab {i}: the trunk lab loaded no VLAN program"
        );
        progs.extend(mine);
        ids.push(lab.id().to_string());
        let during = Snapshot::take();
        peak_threads = peak_threads.max(during.threads);
        let t = Instant::now();
        lab.down();
        down_ms.push(t.elapsed().as_millis());
        let now = Snapshot::take();
        peak_rss = peak_rss.max(during.rss_kib).max(now.rss_kib);
        if (i + 1) % 50 == 0 || i + 1 == labs {
            eprintln!(
                "soak: {:>4} labs  fds {}  threads {}  rss {} KiB  ({:.1} s)",
                i + 1,
                now.fds,
                now.threads,
                now.rss_kib,
                t0.elapsed().as_secs_f64()
            );
        }
    }
    let elapsed = t0.elapsed();
    let left_progs = programs_left(&progs, Duration::from_secs(10));
    let after = Snapshot::take();
    let (left_ns, left_files) = leftovers(&ids);
    up_ms.sort();
    down_ms.sort();
    let med = |v: &[u128]| v.get(v.len() / 2).copied().unwrap_or(0);
    let max = |v: &[u128]| v.last().copied().unwrap_or(0);
    eprintln!(
        "soak: {labs} labs of {TOPOLOGY} in {:.1} s (up median {} ms, max {}; down median {} ms, max {})",
        elapsed.as_secs_f64(),
        med(&up_ms),
        max(&up_ms),
        med(&down_ms),
        max(&down_ms)
    );
    eprintln!("soak:                before   after   (peak)");
    eprintln!("soak: open fds       {:>6}  {:>6}", base.fds, after.fds);
    eprintln!(
        "soak: bpf prog fds   {:>6}  {:>6}",
        base.bpf_prog_fds, after.bpf_prog_fds
    );
    eprintln!(
        "soak: bpf link fds   {:>6}  {:>6}",
        base.bpf_link_fds, after.bpf_link_fds
    );
    eprintln!(
        "soak: threads        {:>6}  {:>6}   ({peak_threads})",
        base.threads, after.threads
    );
    eprintln!(
        "soak: rss KiB        {:>6}  {:>6}   ({peak_rss})",
        base.rss_kib, after.rss_kib
    );
    eprintln!(
        "soak: programs loaded by the labs {}, still loaded {}; namespaces left {}; /run/cnlab files left {}",
        progs.len(),
        left_progs.len(),
        left_ns.len(),
        left_files.len()
    );
    assert!(
        left_ns.is_empty(),
        "namespaces outlived their labs: {left_ns:?}"
    );
    assert!(
        left_files.is_empty(),
        "files outlived their labs: {left_files:?}"
    );
    assert!(
        left_progs.is_empty(),
        "programs outlived their labs: {left_progs:?}"
    );
    assert_eq!(after.fds, base.fds, "open descriptors grew");
    assert_eq!(
        after.bpf_prog_fds, base.bpf_prog_fds,
        "BPF program fds grew"
    );
    assert_eq!(after.bpf_link_fds, base.bpf_link_fds, "BPF link fds grew");
    assert_eq!(after.threads, base.threads, "threads grew");
    // Allocator arenas and caches may keep some memory; a leak per lab
    // would show as growth proportional to the number of labs.
    let bound = 64 * 1024;
    assert!(
        after.rss_kib <= base.rss_kib + bound,
        "RSS grew by {} KiB over {labs} labs (bound {bound} KiB)",
        after.rss_kib.saturating_sub(base.rss_kib)
    );

    if kills > 0 {
        killed_owners_are_collected(kills);
    }
}

/// `kills` processes each bring a lab up and are killed with SIGKILL (no
/// teardown runs); their namespaces, with the programs attached inside,
/// stay until `gc` removes them, and then nothing is left.
fn killed_owners_are_collected(kills: usize) {
    let exe = std::env::current_exe().unwrap();
    let t0 = Instant::now();
    let mut ids: Vec<String> = Vec::new();
    let mut progs: BTreeSet<u32> = BTreeSet::new();
    // A few at a time: each child builds a whole lab.
    for batch in (0..kills).collect::<Vec<_>>().chunks(5) {
        let mut children: Vec<_> = batch
            .iter()
            .map(|_| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "child_holds_a_lab_until_killed",
                        "--ignored",
                        "--nocapture",
                        "--test-threads=1",
                    ])
                    .env(CHILD_ENV, TOPOLOGY)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .expect("spawning a lab owner")
            })
            .collect();
        for c in &mut children {
            let out = c.stdout.take().unwrap();
            let line = BufReader::new(out)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| l.find("READY ").map(|at| l[at..].to_string()))
                .unwrap_or_else(|| panic!("a lab owner never got ready"));
            let mut words = line.split_whitespace().skip(1);
            ids.push(words.next().unwrap().to_string());
            progs.extend(words.filter_map(|w| w.parse::<u32>().ok()));
            // SIGKILL: no drop, no signal handler, no teardown.
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
        }
        for mut c in children {
            let _ = c.wait();
        }
    }
    let (ns_before, files_before) = leftovers(&ids);
    let loaded_before = loaded_programs().intersection(&progs).count();
    let t = Instant::now();
    let report = gc::collect();
    let gc_time = t.elapsed();
    let left_progs = programs_left(&progs, Duration::from_secs(10));
    let (left_ns, left_files) = leftovers(&ids);
    eprintln!(
        "soak: {kills} lab owners killed with SIGKILL in {:.1} s; before gc: {} namespaces, {} files, {}/{} programs still attached; gc ({} ms) removed {} labs; after: {} namespaces, {} files, {} programs",
        t0.elapsed().as_secs_f64(),
        ns_before.len(),
        files_before.len(),
        loaded_before,
        progs.len(),
        gc_time.as_millis(),
        report.labs.len(),
        left_ns.len(),
        left_files.len(),
        left_progs.len()
    );
    assert!(
        !ns_before.is_empty() && loaded_before > 0,
        "killed owners should leave their namespaces and attached programs for gc"
    );
    for id in &ids {
        assert!(report.labs.contains(id), "gc did not collect lab {id}");
    }
    assert!(left_ns.is_empty(), "gc left namespaces: {left_ns:?}");
    assert!(left_files.is_empty(), "gc left files: {left_files:?}");
    assert!(left_progs.is_empty(), "gc left programs: {left_progs:?}");
}

/// Not a test of its own: the lab owner the soak test starts (and kills).
#[test]
#[ignore = "helper process of the soak test, which starts it with CNLAB_SOAK_CHILD"]
fn child_holds_a_lab_until_killed() {
    let Ok(rel) = std::env::var(CHILD_ENV) else {
        panic!("{CHILD_ENV} is not set: this runs only as the soak test's child");
    };
    let r = topology(&rel);
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = lab.tc_program_ids().iter().map(|i| i.to_string()).collect();
    println!("\nREADY {} {}", lab.id(), ids.join(" "));
    use std::io::Write;
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(120));
    lab.down();
}
