//! Small things users noticed (issue 12, item 8), each run as a user runs
//! it: exit codes, `trace` failing on a dead probe, `down` after the keeper
//! died, colour and live progress only on a terminal, `get svc` as kubectl
//! prints it, and no README path that does not exist.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn cnlab(args: &[&str]) -> Output {
    Command::new(CNLAB)
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run cnlab")
}

#[test]
fn usage_errors_exit_64_and_help_documents_every_exit_code() {
    for args in [
        &["no-such-command"][..],
        &["check"],
        &["trace", "pod/a/b", "ip/10.0.0.1:80", "--proto", "sctp"],
        &["get", "no-such-resource"],
    ] {
        let out = cnlab(args);
        assert_eq!(
            out.status.code(),
            Some(64),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(text(&out.stderr).contains("error:"), "clap's own message");
    }
    let help = cnlab(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    let h = text(&help.stdout);
    for line in [
        "0   everything held",
        "1   an expectation failed",
        "2   the environment cannot run a lab",
        "64  usage error",
    ] {
        assert!(h.contains(line), "--help lacks {line:?}:\n{h}");
    }
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains("64 a usage error"),
        "README documents the usage exit code"
    );
}

/// `cnlab up --detach` of `file`: (lab id, keeper pid).
fn up_detached(file: &str) -> (String, u32) {
    let out = cnlab(&["up", "--detach", file]);
    let o = text(&out.stdout);
    assert!(out.status.success(), "{o}{}", text(&out.stderr));
    // "lab <id> (<name>) is up, kept by pid <pid>; …"
    let id = o.split_whitespace().nth(1).unwrap().to_string();
    let pid = o
        .split("kept by pid ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no keeper pid in {o:?}"));
    (id, pid)
}

#[test]
fn trace_exits_1_unless_connected_and_down_cleans_up_after_a_dead_keeper() {
    assert!(cnlab::lab::is_root(), "builds a lab: run as root");
    let (id, keeper) = up_detached("topologies/examples/quickstart.yaml");
    let trace = |to: &str| cnlab(&["trace", "--lab", &id, "pod/default/client", to]);
    let ok = trace("pod/default/web:80");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stdout));
    assert!(text(&ok.stdout).contains(": connected"));
    let refused = trace("pod/default/web:8080");
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused.stdout));
    assert!(text(&refused.stdout).contains(": refused"));
    let dropped = cnlab(&[
        "trace",
        "--lab",
        &id,
        "pod/default/client",
        "ip/10.200.0.1:80",
        "--timeout-ms",
        "300",
    ]);
    assert_eq!(dropped.status.code(), Some(1), "{}", text(&dropped.stdout));
    assert!(text(&dropped.stdout).contains(": timeout"));

    // The keeper dies without tearing anything down.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{keeper}")).exists() {
        assert!(Instant::now() < deadline, "keeper {keeper} did not die");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!cnlab::kernel::netns::list(&format!("cnl-{id}-")).is_empty());
    let down = cnlab(&["down", &id]);
    let o = text(&down.stdout);
    assert_eq!(down.status.code(), Some(0), "{o}{}", text(&down.stderr));
    assert!(o.contains("was gone"), "{o}");
    assert!(
        cnlab::kernel::netns::list(&format!("cnl-{id}-")).is_empty(),
        "down left namespaces of {id}"
    );
    assert!(!cnlab::lab::registry::LabRecord::path(&id).exists());
}

/// Runs `cmd` under a pseudo-terminal (util-linux `script`), returning what
/// the terminal showed (stdout and stderr together).
fn on_a_terminal(cmd: &str, no_color: bool) -> String {
    let mut c = Command::new("script");
    c.args(["-qefc", cmd, "/dev/null"])
        .current_dir(repo())
        .stdin(Stdio::null())
        .env_remove("NO_COLOR");
    if no_color {
        c.env("NO_COLOR", "1");
    }
    let out = c
        .output()
        .expect("script (util-linux) runs a command on a pty");
    text(&out.stdout)
}

#[test]
fn colour_and_live_progress_only_on_a_terminal() {
    assert!(cnlab::lab::is_root(), "builds labs: run as root");
    let check = format!("{CNLAB} check topologies/examples/quickstart.yaml");
    let tty = on_a_terminal(&check, false);
    assert!(
        tty.contains("\x1b[32mok\x1b[0m"),
        "green ok on a terminal:\n{tty}"
    );
    // The live status line: one per finished expectation, erased as it goes.
    assert!(
        tty.contains("\r\x1b[K[1/2] topologies/examples/quickstart.yaml: "),
        "live progress on a terminal:\n{tty:?}"
    );
    let plain = on_a_terminal(&check, true);
    assert!(
        !plain.contains("\x1b[32m"),
        "NO_COLOR turns colour off:\n{plain}"
    );
    let piped = cnlab(&["check", "topologies/examples/quickstart.yaml"]);
    let (o, e) = (text(&piped.stdout), text(&piped.stderr));
    assert_eq!(piped.status.code(), Some(0), "{o}{e}");
    assert!(
        !o.contains('\x1b') && !e.contains('\x1b'),
        "no escapes into a pipe:\n{o}{e}"
    );
    assert!(
        !e.contains("[1/2]"),
        "no progress into a pipe unless asked:\n{e}"
    );
    // --progress: a plain line per expectation, for CI logs.
    let lines = cnlab(&["check", "--progress", "topologies/examples/quickstart.yaml"]);
    let e = text(&lines.stderr);
    for n in ["[1/2] ", "[2/2] "] {
        assert!(
            e.lines().any(|l| l.starts_with(n) && (l.contains(" ok ("))),
            "{n}: {e}"
        );
    }
}

#[test]
fn get_svc_is_aligned_with_kubectl_ports_and_yaml_is_the_kubernetes_api() {
    let out = cnlab(&[
        "get",
        "svc",
        "--file",
        "topologies/scenarios/f6-service-types.yaml",
    ]);
    let t = text(&out.stdout);
    assert!(out.status.success(), "{t}{}", text(&out.stderr));
    let lines: Vec<&str> = t.lines().collect();
    let col = |l: &str, word: &str| l.find(word).unwrap_or_else(|| panic!("{word} in {l}"));
    let ports_at = col(lines[0], "PORT(S)");
    let np = lines.iter().find(|l| l.contains("NodePort")).unwrap();
    assert_eq!(col(np, "80:3"), ports_at, "PORT(S) column aligned:\n{t}");
    assert!(np.contains("/TCP"), "kubectl's protocol spelling:\n{t}");
    let cip = lines.iter().find(|l| l.contains("ClusterIP")).unwrap();
    assert_eq!(col(cip, "80/TCP"), ports_at, "{t}");
    for l in &lines[1..] {
        assert_eq!(col(l, "172.21."), col(lines[0], "CLUSTER-IP"), "{t}");
    }
    let y = text(
        &cnlab(&[
            "get",
            "svc",
            "-o",
            "yaml",
            "--file",
            "topologies/scenarios/f6-service-types.yaml",
        ])
        .stdout,
    );
    for want in [
        "kind: Service",
        "nodePort:",
        "clusterIP:",
        "targetPort: http",
        "protocol: TCP",
    ] {
        assert!(y.contains(want), "{want} in:\n{y}");
    }
    for internal in [
        "type_",
        "node_port",
        "lb_hostname",
        "cluster_ip",
        "target_ports",
    ] {
        assert!(!y.contains(internal), "internal field {internal} in:\n{y}");
    }
    let ep = text(
        &cnlab(&[
            "get",
            "endpoints",
            "-o",
            "yaml",
            "--file",
            "topologies/scenarios/f6-service-types.yaml",
        ])
        .stdout,
    );
    assert!(
        ep.contains("kind: EndpointSlice") && ep.contains("nodeName: node-2"),
        "{ep}"
    );
    assert!(!ep.contains("host_network"), "{ep}");
}

/// Every repository path the README names exists (globs match something).
/// In the "Layout" tree an indented entry is relative to the unindented
/// directory above it.
#[test]
fn readme_names_no_path_that_does_not_exist() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let tops: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "target")
        .chain(["examples".to_string()])
        .collect();
    let mut missing = Vec::new();
    let mut checked = 0;
    let (mut layout, mut parent) = (false, String::new());
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || "._-/*".contains(c);
    for (n, line) in readme.lines().enumerate() {
        if line.starts_with("## ") {
            layout = line == "## Layout";
        }
        let indented = line.starts_with(' ');
        let mut rest = line;
        let mut first_token = true;
        while !rest.is_empty() {
            let start = rest.find(is_path_char).unwrap_or(rest.len());
            let before = rest[..start].chars().last();
            let tail = &rest[start..];
            let end = tail.find(|c: char| !is_path_char(c)).unwrap_or(tail.len());
            let token = tail[..end].trim_end_matches(['.', ',']);
            rest = &tail[end..];
            // Absolute paths (/run/cnlab, ~/.cache) are the host's, not the repository's.
            if token.is_empty() || before == Some('/') || before == Some('~') {
                continue;
            }
            let in_tree = layout && first_token && token.ends_with('/');
            first_token = false;
            let rel = if in_tree && indented {
                format!("{parent}{token}")
            } else if in_tree {
                parent = token.to_string();
                token.to_string()
            } else {
                match token.split_once('/') {
                    Some((first, _)) if tops.iter().any(|t| t == first) => token.to_string(),
                    _ => continue,
                }
            };
            checked += 1;
            if !exists_glob(&root, &rel) {
                missing.push(format!("line {}: {token} ({rel})", n + 1));
            }
        }
    }
    assert!(checked > 20, "found only {checked} paths in the README");
    assert!(
        missing.is_empty(),
        "README names paths that do not exist:\n{}",
        missing.join("\n")
    );
}

/// `rel` exists under `root`; a `*` in the last component matches any text.
fn exists_glob(root: &Path, rel: &str) -> bool {
    let rel = rel.trim_end_matches('/');
    match rel.rsplit_once('/') {
        Some((dir, last)) if last.contains('*') => {
            let (pre, post) = last.split_once('*').unwrap();
            std::fs::read_dir(root.join(dir)).is_ok_and(|d| {
                d.filter_map(|e| e.ok()).any(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(pre) && n.ends_with(post.trim_end_matches('*'))
                })
            })
        }
        _ => root.join(rel).exists(),
    }
}
