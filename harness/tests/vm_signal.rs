//! `cnlab vm` ended by a signal: its run share (in the cache's `runs/`) is
//! removed and qemu is gone, as when the command ends by itself. Boots a
//! stock kernel from /boot (scripts/setup installs Debian's).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Run shares of the `cnlab vm` process `pid` (`runs/<pid>-<stamp>`).
fn shares_of(pid: u32) -> Vec<PathBuf> {
    let runs = cnlab::vm::cache_dir().join("runs");
    let prefix = format!("{pid}-");
    std::fs::read_dir(&runs)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Processes whose command line names `dir` (qemu is given the share).
fn users_of(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains(&needle)
                .then(|| format!("{} {cmd}", e.file_name().to_string_lossy()))
        })
        .collect()
}

#[test]
fn sigterm_removes_the_run_share_and_qemu() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cnlab"))
        .args(["vm", "--", "sh", "-c", "echo up; sleep 300"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawning cnlab vm");
    let pid = child.id();
    let mut first = String::new();
    let _ = BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut first);
    if first.trim() != "up" {
        let st = child.wait().expect("waiting for cnlab vm");
        panic!("cnlab vm did not start the command (first line {first:?}, {st})");
    }
    let shares = shares_of(pid);
    assert_eq!(
        shares.len(),
        1,
        "one run share while the command runs: {shares:?}"
    );
    let share = shares[0].clone();
    assert!(
        !users_of(&share).is_empty(),
        "qemu runs with {}",
        share.display()
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let st = child.wait().expect("waiting for cnlab vm");
    assert_eq!(
        st.code(),
        Some(128 + 15),
        "cnlab vm exits 128+SIGTERM: {st}"
    );
    assert!(!share.exists(), "{} left behind", share.display());
    // PDEATHSIG and the signal thread both kill qemu; give the kernel a moment.
    let mut left = users_of(&share);
    for _ in 0..50 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        left = users_of(&share);
    }
    assert!(left.is_empty(), "still running: {left:?}");
}
