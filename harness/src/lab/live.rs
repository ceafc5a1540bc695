//! Labs alive in this process, so that SIGINT/SIGTERM can tear them down
//! before the process exits (a `Drop` never runs on a signal).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

static LIVE: Mutex<Vec<(String, Vec<String>)>> = Mutex::new(Vec::new());

/// Scratch directories this process removes on a signal too (a `cnlab vm`
/// run's share).
static SCRATCH: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// `dir` is removed if a signal ends the process.
pub fn register_scratch(dir: &Path) {
    if let Ok(mut v) = SCRATCH.lock() {
        v.push(dir.to_path_buf());
    }
}

pub fn unregister_scratch(dir: &Path) {
    if let Ok(mut v) = SCRATCH.lock() {
        v.retain(|d| d != dir);
    }
}

fn remove_scratch() {
    let dirs = match SCRATCH.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return,
    };
    // A child writing into one (qemu) is not killed nor reaped here: the
    // main thread waits for it and would take its end for its own failure
    // (exit 125 before ours); PR_SET_PDEATHSIG kills it when we exit.
    for dir in dirs {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

pub fn register(id: &str, namespaces: &[String]) {
    if let Ok(mut v) = LIVE.lock() {
        v.push((id.to_string(), namespaces.to_vec()));
    }
}

pub fn unregister(id: &str) {
    if let Ok(mut v) = LIVE.lock() {
        v.retain(|(i, _)| i != id);
    }
}

/// Tears down every lab still registered; returns their ids.
pub fn teardown_all() -> Vec<String> {
    let labs = match LIVE.lock() {
        Ok(mut v) => std::mem::take(&mut *v),
        Err(_) => return Vec::new(),
    };
    labs.into_iter()
        .map(|(id, names)| {
            super::remove_lab_objects(&id, &names);
            id
        })
        .collect()
}

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (and so in every
/// thread it starts later) and handles them on a dedicated thread: tear down
/// every live lab, remove every scratch directory, then exit with 128 +
/// signal (the process's `Drop`s never run). Call first thing in `main`.
pub fn install_signal_teardown() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGUSR1,
    ] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || loop {
        let Ok(sig) = set.wait() else { return };
        if sig == Signal::SIGUSR1 {
            // A request for the lab this process keeps (`cnlab pod restart`).
            if let Ok(tx) = REQUESTS.lock() {
                if let Some(tx) = tx.as_ref() {
                    let _ = tx.send(());
                }
            }
            continue;
        }
        let ids = teardown_all();
        if !ids.is_empty() {
            eprintln!("cnlab: {sig:?}: tore down lab(s) {}", ids.join(", "));
        }
        remove_scratch();
        std::process::exit(128 + sig as i32);
    });
}

static REQUESTS: Mutex<Option<std::sync::mpsc::Sender<()>>> = Mutex::new(None);

/// The keeper of a lab (`cnlab up`) hears here when another process left a
/// request for it (see `registry::LabRecord::request_path`) and sent SIGUSR1.
pub fn requests() -> std::sync::mpsc::Receiver<()> {
    let (tx, rx) = std::sync::mpsc::channel();
    if let Ok(mut slot) = REQUESTS.lock() {
        *slot = Some(tx);
    }
    rx
}
