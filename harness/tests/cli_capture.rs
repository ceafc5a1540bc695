//! `cnlab capture LAB POINT…` on a lab kept by `cnlab up --detach`: while a
//! probe runs, the live pcapng it writes is read back by tshark, and the
//! probe's SYN is on the interface named after the observation point.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Stops the detached lab however the test ends.
struct Down(String);
impl Drop for Down {
    fn drop(&mut self) {
        let _ = Command::new(CNLAB).args(["down", &self.0]).status();
    }
}

#[test]
fn a_live_capture_is_read_by_tshark_with_one_interface_per_point() {
    assert!(
        cnlab::lab::is_root(),
        "this test builds a lab: run it as root (scripts/test does)"
    );
    let up = Command::new(CNLAB)
        .current_dir(repo())
        .args(["up", "--detach", "topologies/examples/quickstart.yaml"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(
        up.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // "lab <id> (quickstart) is up, kept by pid …"
    let id = stdout
        .split_whitespace()
        .nth(1)
        .expect("lab id in `cnlab up --detach` output")
        .to_string();
    let _down = Down(id.clone());

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("live.pcapng");
    let mut cap = Command::new(CNLAB)
        .args([
            "capture",
            &id,
            "pod/default/web",
            "pod/default/client",
            "-w",
        ])
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The taps are open once it says so.
    let mut err = BufReader::new(cap.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("Ctrl-C stops"), "{line}");

    let trace = Command::new(CNLAB)
        .args([
            "trace",
            "--lab",
            &id,
            "pod/default/client",
            "pod/default/web:80",
        ])
        .output()
        .unwrap();
    let trace_out = String::from_utf8_lossy(&trace.stdout);
    assert!(trace_out.contains("connected"), "{trace_out}");

    // Ctrl-C.
    let pid = nix::unistd::Pid::from_raw(cap.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let status = cap.wait().unwrap();
    assert!(
        matches!(status.code(), Some(0) | Some(130)),
        "capture ended with {status}"
    );

    let tshark = Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-Y",
            "tcp.flags.syn == 1 && tcp.flags.ack == 0 && tcp.dstport == 80",
            "-T",
            "fields",
            "-e",
            "frame.interface_name",
            "-e",
            "ip.dst",
        ])
        .output()
        .expect("tshark (scripts/setup installs it)");
    let fields = String::from_utf8_lossy(&tshark.stdout);
    assert!(
        tshark.status.success(),
        "{fields}{}",
        String::from_utf8_lossy(&tshark.stderr)
    );
    let names: Vec<&str> = fields
        .lines()
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert!(names.contains(&"pod/default/client"), "{fields}");
    assert!(names.contains(&"pod/default/web"), "{fields}");
}
