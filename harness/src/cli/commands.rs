//! What each `cnlab` command does.

use crate::topology::PointId;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{running, BackendArg, Command};
use crate::check::file::{check_keeping, check_loaded, expand_paths, FileOutcome};
use crate::check::input::load_planned as load_file;
use crate::check::report::{self, FileResults};
use crate::check::runner;
use crate::kernel::caps::{self, BackendChoice};
use crate::lab::registry::{self, LabRecord};
use crate::lab::{self, gc, is_root, Lab, UpOptions};

pub(super) const EXIT_OK: i32 = 0;
pub(super) const EXIT_FAIL: i32 = 1;
pub(super) const EXIT_ENV: i32 = 2;

pub(super) fn need_root(what: &str) -> Result<(), i32> {
    if is_root() {
        Ok(())
    } else {
        eprintln!("cnlab {what}: needs root to create and enter network namespaces; run it with sudo (sudo cnlab {what} …)");
        Err(EXIT_ENV)
    }
}

fn cni_check(lab: Option<&str>, pods: &[String]) -> Result<i32, i32> {
    need_root("cni check")?;
    match super::pods::cni_check(lab, pods) {
        Ok((text, ok)) => {
            print!("{text}");
            Ok(if ok { EXIT_OK } else { EXIT_FAIL })
        }
        Err(e) => {
            eprintln!("cnlab cni check: {e}");
            Ok(EXIT_FAIL)
        }
    }
}

pub fn run(cmd: Command) -> i32 {
    let r = match cmd {
        Command::Check {
            paths,
            json,
            junit,
            backend,
            parallel,
            explain,
            jobs,
            shard,
        } => check(
            &paths,
            json,
            junit.as_deref(),
            backend,
            parallel,
            &explain,
            (jobs, shard),
        ),
        Command::Validate { paths } => validate(&paths),
        Command::Schema { markdown } => {
            let text = if markdown {
                crate::topology::schema::markdown()
            } else {
                serde_json::to_string_pretty(&crate::topology::schema::json_schema())
                    .unwrap_or_default()
                    + "\n"
            };
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(EXIT_OK)
        }
        Command::Plan {
            file,
            backend,
            json,
        } => plan(&file, backend, json),
        Command::Up {
            file,
            detach,
            backend,
            keeper,
        } => up(&file, detach, backend, keeper),
        Command::Down { lab, all } => down(lab.as_deref(), all),
        Command::Status { json } => status(json),
        Command::Pod(super::PodCommand::Restart { pod, lab }) => pod_restart(&pod, lab.as_deref()),
        Command::Cni(super::CniCommand::Check { pods, lab }) => cni_check(lab.as_deref(), &pods),
        Command::Trace(a) => super::trace::trace(&a, false),
        Command::Explain(a) => super::trace::trace(&a, true),
        Command::Shell {
            target,
            lab,
            command,
        } => shell(&target, lab.as_deref(), &command),
        Command::Doctor { backend } => doctor(backend),
        Command::Gc => gc_cmd(),
        Command::Get {
            what,
            output,
            file,
            lab,
        } => match super::get::get(what, output, file.as_deref(), lab.as_deref()) {
            Ok(text) => {
                print!("{text}");
                Ok(EXIT_OK)
            }
            Err(e) => {
                eprintln!("cnlab get: {e}");
                Ok(EXIT_FAIL)
            }
        },
        Command::Rules { node, lab } => super::services::rules(&node, lab.as_deref()),
        Command::Bench(args) => Ok(super::bench::run(&args)),
        Command::Vm(args) => Ok(super::vm::run(&args)),
        Command::Matrix(args) => super::matrix::run(&args),
        Command::Graph(args) => super::graph::run(&args),
        Command::Capture(args) => super::capture::run(&args),
    };
    r.unwrap_or_else(|code| code)
}

fn print_warnings(file: &str, warnings: &[crate::topology::Problem]) {
    for w in warnings {
        eprintln!("{file}: warning: {w}");
    }
}

fn check(
    paths: &[PathBuf],
    json: bool,
    junit: Option<&Path>,
    backend: BackendArg,
    parallel: usize,
    explain: &super::CheckExplain,
    (jobs, shard): (Option<usize>, Option<runner::Shard>),
) -> Result<i32, i32> {
    let mut files = expand_paths(paths).map_err(|e| {
        eprintln!("cnlab check: {e}");
        EXIT_FAIL
    })?;
    if let Some(sh) = shard {
        files.retain(|f| sh.owns(f));
        if !json {
            eprintln!("cnlab check: shard {sh}: {} file(s)", files.len());
        }
    }
    // Validate everything first: a bad file is reported before any lab is
    // built, and the others still run.
    let loaded: Vec<_> = files
        .iter()
        .map(|f| {
            let l = load_file(f);
            match &l {
                Ok(l) => print_warnings(&f.display().to_string(), &l.warnings),
                Err(report) => eprintln!("{report}"),
            }
            l
        })
        .collect();
    if let Some(dir) = &explain.pcap {
        std::fs::create_dir_all(dir).map_err(|e| {
            eprintln!("cnlab check: --pcap {}: {e}", dir.display());
            EXIT_FAIL
        })?;
    }
    let loaded = match &explain.only {
        Some(name) => only(loaded, name)?,
        None => loaded,
    };
    let opts = UpOptions {
        backend: backend.into(),
        file: None,
        ..Default::default()
    };
    let root = if loaded.iter().any(|l| l.is_ok()) {
        need_root("check").is_ok()
    } else {
        true
    };
    let environment: Mutex<Option<String>> = Mutex::new((!root).then(|| {
        "needs root to create and enter network namespaces; run it with sudo".to_string()
    }));
    let items: Vec<(&PathBuf, Mutex<Option<_>>)> = files
        .iter()
        .zip(loaded)
        // `--only`: a file without that expectation has nothing to run.
        .filter(|(_, l)| {
            explain.only.is_none() || !l.as_ref().is_ok_and(|l| l.resolved.topo.expect.is_empty())
        })
        .map(|(f, l)| (f, Mutex::new(Some(l))))
        .collect();
    let total: usize = items
        .iter()
        .filter_map(|(_, l)| l.lock().ok())
        .filter_map(|l| {
            l.as_ref()
                .and_then(|l| l.as_ref().ok())
                .map(|l| l.resolved.topo.expect.len())
        })
        .sum();
    let live = super::progress::start(total, explain.progress);
    let jobs = jobs.unwrap_or_else(runner::default_jobs);
    // (outcome, the lab kept by --keep, whether a lab was tried: those get a
    // progress line)
    let ran: Vec<(FileOutcome, Option<Lab>, bool)> = runner::run_ordered(
        &items,
        jobs,
        |_, (f, l)| {
            let Some(l) = l.lock().ok().and_then(|mut l| l.take()) else {
                let o = FileOutcome::failed(f, "internal: file taken twice".into(), false);
                return (o, None, false);
            };
            if l.is_err() {
                return (check_loaded(f, l, &opts, parallel), None, false);
            }
            // The environment cannot run a lab: every later file says so too.
            if let Some(why) = environment.lock().ok().and_then(|e| e.clone()) {
                return (FileOutcome::failed(f, why, true), None, false);
            }
            let (o, kept) =
                check_keeping(f, l, &opts, parallel, explain.keep, explain.pcap.as_deref());
            if o.environment {
                if let Ok(mut e) = environment.lock() {
                    e.get_or_insert_with(|| o.error.clone().unwrap_or_default());
                }
            }
            (o, kept, true)
        },
        |_, (o, _, tried)| {
            if json || !tried {
                return;
            }
            let na = o.results.iter().filter(|r| r.is_na()).count();
            let passed = o
                .results
                .iter()
                .filter(|r| r.passed() && !r.is_na())
                .count();
            eprintln!(
                "{}{} … {}/{} hold{} (up {} ms, probes {} ms, down {} ms)",
                live.clear(),
                o.file,
                passed,
                o.results.len() - na,
                if na > 0 {
                    format!(", {na} n/a")
                } else {
                    String::new()
                },
                o.up_time.as_millis(),
                o.check_time.as_millis(),
                o.down_time.as_millis()
            );
        },
    );
    let mut outcomes: Vec<FileOutcome> = Vec::new();
    let mut keep: Vec<Lab> = Vec::new();
    for (o, kept, _) in ran {
        outcomes.push(o);
        keep.extend(kept);
    }
    let views: Vec<FileResults> = outcomes
        .iter()
        .map(|o| FileResults {
            file: &o.file,
            lab_id: &o.lab_id,
            results: &o.results,
            error: o.error.clone(),
            pending: o.pending.clone(),
            not_modelled: o.not_modelled.clone(),
        })
        .collect();
    live.finish();
    // A closed pipe must not panic a command that may own labs.
    let report = if json {
        serde_json::to_string_pretty(&report::json(&views)).unwrap_or_default() + "\n"
    } else {
        report::table_styled(&views, crate::check::style::Style::for_stdout())
    };
    let _ = std::io::stdout().write_all(report.as_bytes());
    if let Some(path) = junit {
        if let Err(e) = std::fs::write(path, report::junit(&views)) {
            eprintln!("cnlab check: writing JUnit to {}: {e}", path.display());
            return Err(EXIT_FAIL);
        }
    }
    if !keep.is_empty() {
        keep_up(&keep, &outcomes);
    }
    if outcomes.iter().any(|o| o.environment) {
        return Err(EXIT_ENV);
    }
    Ok(if outcomes.iter().all(|o| o.passed()) {
        EXIT_OK
    } else {
        EXIT_FAIL
    })
}

/// `check --keep`: the labs that failed stay up while this process runs;
/// says how to look inside, then waits for Ctrl-C (which tears them down).
fn keep_up(labs: &[Lab], outcomes: &[FileOutcome]) {
    let mut msg = String::new();
    for lab in labs {
        msg += &format!(
            "lab {} ({}) is kept up after its failures:\n",
            lab.id(),
            lab.plan().name
        );
        let failed = outcomes
            .iter()
            .filter(|o| o.lab_id == lab.id())
            .flat_map(|o| o.results.iter())
            .filter(|r| !r.passed() && !r.is_na());
        for r in failed {
            let e = &r.expect;
            let proto = match e.proto {
                crate::topology::model::Proto::Tcp => String::new(),
                p => format!(" --proto {}", crate::check::proto_word(p)),
            };
            if e.result == crate::topology::model::Verdict::Pending {
                continue;
            }
            msg += &format!(
                "  {}:\n    cnlab explain --lab {} {} {}{proto}\n    cnlab shell --lab {} {}\n",
                e.name,
                lab.id(),
                e.from,
                e.to,
                lab.id(),
                e.from
            );
        }
    }
    msg += "Ctrl-C tears the kept lab(s) down.\n";
    let _ = std::io::stderr().write_all(msg.as_bytes());
    loop {
        std::thread::park();
    }
}

/// `--only NAME`: every file keeps just that expectation; a name no file
/// has is an error listing the names there are.
fn only(
    mut loaded: Vec<Result<crate::topology::Loaded, crate::topology::Report>>,
    name: &str,
) -> Result<Vec<Result<crate::topology::Loaded, crate::topology::Report>>, i32> {
    let mut names = Vec::new();
    let mut found = false;
    for l in loaded.iter_mut().flatten() {
        let expect = &mut l.resolved.topo.expect;
        names.extend(expect.iter().map(|e| e.name.clone()));
        expect.retain(|e| e.name == name);
        found |= !expect.is_empty();
    }
    if !found {
        eprintln!(
            "cnlab check: no expectation named {name:?}; there are: {}",
            names.join(", ")
        );
        return Err(EXIT_FAIL);
    }
    Ok(loaded)
}

fn validate(paths: &[PathBuf]) -> Result<i32, i32> {
    let files = expand_paths(paths).map_err(|e| {
        eprintln!("cnlab validate: {e}");
        EXIT_FAIL
    })?;
    let mut ok = true;
    for f in &files {
        match load_file(f) {
            Ok(l) => {
                print_warnings(&f.display().to_string(), &l.warnings);
                println!(
                    "{}: ok ({} expectations)",
                    f.display(),
                    l.resolved.topo.expect.len()
                );
            }
            Err(report) => {
                eprintln!("{report}");
                ok = false;
            }
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_FAIL })
}

fn plan(file: &Path, backend: Option<BackendArg>, json: bool) -> Result<i32, i32> {
    let loaded = load_file(file).map_err(|r| {
        eprintln!("{r}");
        EXIT_FAIL
    })?;
    print_warnings(&file.display().to_string(), &loaded.warnings);
    // A plan for named backends needs no kernel; `auto` asks this kernel
    // (which needs root: without it, plan for the portable backends).
    let backends = match backend {
        Some(BackendArg::Native) => Ok(crate::plan::Backends::NATIVE),
        Some(BackendArg::Portable) => Ok(crate::plan::Backends::PORTABLE),
        _ if is_root() => lab::backends(BackendChoice::Auto),
        _ => Ok(crate::plan::Backends::PORTABLE),
    }
    .map_err(|e| {
        eprintln!("cnlab plan: {e}");
        EXIT_ENV
    })?;
    let p = crate::plan::plan(&loaded.resolved, backends).map_err(|e| {
        eprintln!("cnlab plan: {e}");
        EXIT_FAIL
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
    } else {
        print!("{}", crate::plan::render(&p));
    }
    Ok(EXIT_OK)
}

fn up(file: &Path, detach: bool, backend: BackendArg, keeper: bool) -> Result<i32, i32> {
    let loaded = load_file(file).map_err(|r| {
        eprintln!("{r}");
        EXIT_FAIL
    })?;
    print_warnings(&file.display().to_string(), &loaded.warnings);
    need_root("up")?;
    if detach {
        return spawn_keeper(file, backend);
    }
    let t = Instant::now();
    let requests = lab::live::requests();
    let mut lab = Lab::up(
        &loaded.resolved,
        &UpOptions {
            backend: backend.into(),
            file: Some(file.display().to_string()),
            ..Default::default()
        },
    )
    .map_err(|e| {
        eprintln!("cnlab up: {e}");
        if matches!(e, lab::LabError::NotRoot | lab::LabError::Backend(_)) {
            EXIT_ENV
        } else {
            EXIT_FAIL
        }
    })?;
    let plan = lab.plan();
    let mut msg = format!(
        "lab {} ({}) is up in {} ms: {} namespaces, {} veth pairs, {} echo servers\n",
        lab.id(),
        plan.name,
        t.elapsed().as_millis(),
        plan.namespaces.len(),
        plan.veths.len(),
        plan.namespaces
            .iter()
            .map(|n| n.servers.len())
            .sum::<usize>()
    );
    for p in &plan.pending {
        msg += &format!("  pending pod {}: {}\n", p.pod, p.reason);
    }
    if !keeper {
        msg += "  try: cnlab trace FROM TO · cnlab shell node/<name> · Ctrl-C tears it down\n";
    }
    // Whoever reads this may be gone (a closed pipe): the lab stays up.
    let _ = std::io::stdout().write_all(msg.as_bytes());
    let _ = std::io::stdout().flush();
    // The signal thread tears the lab down and exits on SIGINT/SIGTERM; on
    // SIGUSR1 it passes on a request another `cnlab` left for this lab.
    while requests.recv().is_ok() {
        serve_request(&mut lab);
    }
    loop {
        std::thread::park();
    }
}

/// Carries out the request in `/run/cnlab/<id>.request` and answers in
/// `<id>.reply`: `ok …` or `error …`.
fn serve_request(lab: &mut Lab) {
    let id = lab.id().to_string();
    let Ok(req) = std::fs::read_to_string(LabRecord::request_path(&id)) else {
        return;
    };
    let _ = std::fs::remove_file(LabRecord::request_path(&id));
    let reply = match req.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["restart", pod] => {
            let t = Instant::now();
            match lab.restart_pod(pod) {
                Ok(()) => format!("ok {pod} restarted in {} ms", t.elapsed().as_millis()),
                Err(e) => format!("error {e}"),
            }
        }
        _ => format!("error unknown request {:?}", req.trim()),
    };
    let _ = registry::write_file(&LabRecord::reply_path(&id), reply.as_bytes());
}

/// `cnlab pod restart NS/NAME`: asks the lab's keeper to recreate the pod.
pub(super) fn pod_restart(pod: &str, which: Option<&str>) -> Result<i32, i32> {
    need_root("pod restart")?;
    let rec = running::find(which).map_err(|e| {
        eprintln!("cnlab pod restart: {e}");
        EXIT_FAIL
    })?;
    // A name that does not parse is reported as not found, as written.
    let key = PointId::parse_pod(pod).map_or_else(|_| pod.to_string(), |k| k.to_string());
    let _ = std::fs::remove_file(LabRecord::reply_path(&rec.id));
    registry::write_file(
        &LabRecord::request_path(&rec.id),
        format!("restart {key}\n").as_bytes(),
    )
    .map_err(|e| {
        eprintln!("cnlab pod restart: {e}");
        EXIT_ENV
    })?;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(rec.owner_pid as i32),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(|e| {
        eprintln!(
            "cnlab pod restart: signalling the lab's keeper (pid {}): {e}",
            rec.owner_pid
        );
        EXIT_FAIL
    })?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(reply) = std::fs::read_to_string(LabRecord::reply_path(&rec.id)) {
            let _ = std::fs::remove_file(LabRecord::reply_path(&rec.id));
            return match reply.strip_prefix("ok ") {
                Some(msg) => {
                    println!("{msg}");
                    Ok(EXIT_OK)
                }
                None => {
                    eprintln!("cnlab pod restart: {}", reply.trim_start_matches("error "));
                    Err(EXIT_FAIL)
                }
            };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "cnlab pod restart: lab {} did not answer within 60 s",
        rec.id
    );
    Err(EXIT_FAIL)
}

fn spawn_keeper(file: &Path, backend: BackendArg) -> Result<i32, i32> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("cnlab up: {e}");
        EXIT_ENV
    })?;
    std::fs::create_dir_all(registry::RUN_DIR).map_err(|e| {
        eprintln!("cnlab up: {}: {e}", registry::RUN_DIR);
        EXIT_ENV
    })?;
    let log_path = Path::new(registry::RUN_DIR).join(format!("keeper-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).map_err(|e| {
        eprintln!("cnlab up: {}: {e}", log_path.display());
        EXIT_ENV
    })?;
    let backend = format!("{backend:?}").to_lowercase();
    let before: Vec<String> = registry::list().into_iter().map(|r| r.id).collect();
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("up")
        .arg(file)
        .arg("--keeper")
        .arg("--backend")
        .arg(backend);
    cmd.stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|_| EXIT_ENV)?)
        .stderr(log);
    // SAFETY: setsid() is async-signal-safe; the keeper outlives our session.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(|_| ())
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        eprintln!("cnlab up: starting the keeper: {e}");
        EXIT_ENV
    })?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(r) = registry::list()
            .into_iter()
            .find(|r| r.owner_pid == child.id() && !before.contains(&r.id))
        {
            if r.state == "ready" {
                println!(
                    "lab {} ({}) is up, kept by pid {}; stop it with `cnlab down {}`",
                    r.id, r.name, r.owner_pid, r.id
                );
                let _ = std::fs::rename(&log_path, LabRecord::log_path(&r.id));
                return Ok(EXIT_OK);
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            eprintln!("cnlab up: the keeper exited ({status}):");
            eprint!("{}", std::fs::read_to_string(&log_path).unwrap_or_default());
            let _ = std::fs::remove_file(&log_path);
            return Err(EXIT_FAIL);
        }
        if Instant::now() > deadline {
            eprintln!(
                "cnlab up: the lab was not ready after 120 s; see {}",
                log_path.display()
            );
            return Err(EXIT_FAIL);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn down(which: Option<&str>, all: bool) -> Result<i32, i32> {
    need_root("down")?;
    // Labs whose keeper died are still registered: down removes them too.
    let labs = if all {
        registry::list()
    } else {
        vec![running::find_registered(which).map_err(|e| {
            eprintln!("cnlab down: {e}");
            EXIT_FAIL
        })?]
    };
    if labs.is_empty() {
        println!("no running lab");
    }
    for r in labs {
        let t = Instant::now();
        if !r.owner_alive() {
            lab::remove_lab_objects(&r.id, &r.namespaces);
            println!(
                "lab {} ({}) is down in {} ms (its keeper, pid {}, was gone: removed what it left)",
                r.id,
                r.name,
                t.elapsed().as_millis(),
                r.owner_pid
            );
            continue;
        }
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(r.owner_pid as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while LabRecord::path(&r.id).exists() && r.owner_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if LabRecord::path(&r.id).exists() {
            // The owner died without cleaning up (or did not answer): remove it ourselves.
            lab::remove_lab_objects(&r.id, &r.namespaces);
        }
        println!(
            "lab {} ({}) is down in {} ms",
            r.id,
            r.name,
            t.elapsed().as_millis()
        );
    }
    Ok(EXIT_OK)
}

fn status(json: bool) -> Result<i32, i32> {
    let labs = registry::list();
    if json {
        let v: Vec<_> = labs
            .iter()
            .map(|r| {
                let pending = registry::load_plan(&r.id).map(|p| p.pending).unwrap_or_default();
                serde_json::json!({"id": r.id, "name": r.name, "file": r.file, "owner_pid": r.owner_pid,
                    "alive": r.owner_alive(), "state": r.state, "namespaces": r.namespaces.len(), "pending": pending})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(EXIT_OK);
    }
    if labs.is_empty() {
        println!("no labs");
        return Ok(EXIT_OK);
    }
    for r in &labs {
        let alive = if r.owner_alive() {
            "running"
        } else {
            "dead owner: run `cnlab gc`"
        };
        println!(
            "{}  {}  {}  pid {}  {} namespaces  {}",
            r.id,
            r.name,
            r.state,
            r.owner_pid,
            r.namespaces.len(),
            alive
        );
        if let Some(f) = &r.file {
            println!("    file: {f}");
        }
        if let Ok(p) = registry::load_plan(&r.id) {
            for pod in &p.pending {
                println!(
                    "    pending pod {}{}: {}",
                    pod.pod,
                    pod.node
                        .as_ref()
                        .map(|n| format!(" on {n}"))
                        .unwrap_or_default(),
                    pod.reason
                );
            }
        }
    }
    Ok(EXIT_OK)
}

fn shell(target: &str, which: Option<&str>, command: &[String]) -> Result<i32, i32> {
    need_root("shell")?;
    let rec = running::find(which).map_err(|e| {
        eprintln!("cnlab shell: {e}");
        EXIT_FAIL
    })?;
    let plan = registry::load_plan(&rec.id).map_err(|e| {
        eprintln!("cnlab shell: reading the plan of lab {}: {e}", rec.id);
        EXIT_FAIL
    })?;
    let candidates: Vec<usize> = plan
        .namespaces
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.key == target
                || n.key.rsplit('/').next() == Some(target)
                || n.key.strip_prefix("pod/") == Some(target)
        })
        .map(|(i, _)| i)
        .collect();
    let idx = match candidates.as_slice() {
        [i] => *i,
        [] => {
            let keys: Vec<_> = plan.namespaces.iter().map(|n| n.key.as_str()).collect();
            eprintln!(
                "cnlab shell: no namespace {target} in lab {}; there are: {}",
                rec.id,
                keys.join(", ")
            );
            return Err(EXIT_FAIL);
        }
        many => {
            let keys: Vec<_> = many
                .iter()
                .map(|i| plan.namespaces[*i].key.as_str())
                .collect();
            eprintln!("cnlab shell: {target} is ambiguous: {}", keys.join(", "));
            return Err(EXIT_FAIL);
        }
    };
    let ns_name = &rec.namespaces[idx];
    let ns = crate::kernel::NetNs::open(ns_name).map_err(|e| {
        eprintln!("cnlab shell: {e}");
        EXIT_FAIL
    })?;
    let (prog, args): (String, Vec<String>) = match command.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (
            std::env::var("SHELL").unwrap_or_else(|_| "/bin/sh".into()),
            vec![],
        ),
    };
    if command.is_empty() {
        eprintln!(
            "entering {} ({ns_name}); exit to leave",
            plan.namespaces[idx].key
        );
    }
    let mut cmd = std::process::Command::new(&prog);
    cmd.args(&args).env("CNLAB_NS", &plan.namespaces[idx].key);
    let status = ns.spawn(&mut cmd).and_then(|mut c| c.wait()).map_err(|e| {
        eprintln!("cnlab shell: running {prog}: {e}");
        EXIT_FAIL
    })?;
    Ok(status.code().unwrap_or(EXIT_FAIL))
}

fn doctor(backend: BackendArg) -> Result<i32, i32> {
    need_root("doctor")?;
    let c = caps::probe().map_err(|e| {
        eprintln!("cnlab doctor: {e}");
        EXIT_ENV
    })?;
    match caps::choose(&c, backend.into()) {
        Ok(b) => {
            print!("{}", caps::render(&c, &b));
            Ok(EXIT_OK)
        }
        Err(e) => {
            print!(
                "{}",
                caps::render(
                    &c,
                    &caps::choose(&c, BackendChoice::Auto)
                        .unwrap_or(crate::plan::Backends::PORTABLE)
                )
            );
            eprintln!("cnlab doctor: {e}");
            Err(EXIT_ENV)
        }
    }
}

fn gc_cmd() -> Result<i32, i32> {
    need_root("gc")?;
    let r = gc::collect();
    if r.labs.is_empty() && r.namespaces == 0 {
        println!("nothing to collect");
    } else if r.labs.is_empty() {
        println!(
            "removed {} scratch namespace(s) of processes that are gone",
            r.namespaces
        );
    } else {
        println!(
            "removed {} lab(s) ({} namespaces): {}",
            r.labs.len(),
            r.namespaces,
            r.labs.join(", ")
        );
    }
    if !r.live.is_empty() {
        println!(
            "left {} running lab(s) alone: {}",
            r.live.len(),
            r.live.join(", ")
        );
    }
    Ok(EXIT_OK)
}
