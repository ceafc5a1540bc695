//! The `cnlab` binary end to end: a lab killed with SIGKILL is collected by
//! `cnlab gc`, the root namespace is left exactly as it was, bad input and a
//! missing root are reported before anything is created.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CNLAB: &str = env!("CARGO_BIN_EXE_cnlab");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Everything of the root network namespace a lab could have touched.
fn root_snapshot() -> String {
    let mut s = String::new();
    for args in [
        &["-j", "link", "show"][..],
        &["-j", "addr", "show"],
        &["-j", "route", "show", "table", "all"],
        &["-j", "rule", "show"],
    ] {
        let out = Command::new("ip").args(args).output().expect("ip");
        s.push_str(&String::from_utf8_lossy(&out.stdout));
        s.push('\n');
    }
    let nft = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .expect("nft");
    s.push_str(&String::from_utf8_lossy(&nft.stdout));
    s
}

fn lab_namespaces(id: &str) -> Vec<String> {
    cnlab::kernel::netns::list(&format!("cnl-{id}-"))
}

fn assert_root() {
    assert!(
        cnlab::lab::is_root(),
        "these tests build labs: run them as root (sudo -E cargo test)"
    );
}

/// `cnlab up` of the quickstart example, once its lab is ready.
fn up_quickstart() -> (std::process::Child, cnlab::lab::registry::LabRecord) {
    let file = repo().join("topologies/examples/quickstart.yaml");
    let mut child = Command::new(CNLAB)
        .arg("up")
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let record = wait_ready(&mut child);
    (child, record)
}

fn wait_ready(child: &mut std::process::Child) -> cnlab::lab::registry::LabRecord {
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(r) = cnlab::lab::registry::list()
            .into_iter()
            .find(|r| r.owner_pid == pid && r.state == "ready")
        {
            return r;
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            use std::io::Read;
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).ok();
            }
            panic!("cnlab up exited early ({st}): {err}");
        }
        assert!(Instant::now() < deadline, "lab not ready after 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn killed_lab_is_collected_and_root_namespace_untouched() {
    assert_root();
    let before = root_snapshot();
    let (mut child, record) = up_quickstart();
    assert!(!lab_namespaces(&record.id).is_empty());
    // SIGKILL: no destructor, no signal handler runs.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !lab_namespaces(&record.id).is_empty(),
        "namespaces survive a SIGKILL until gc"
    );

    let out = Command::new(CNLAB).arg("gc").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&record.id),
        "gc names the lab it removed"
    );
    assert!(
        lab_namespaces(&record.id).is_empty(),
        "gc left namespaces of {}",
        record.id
    );
    for p in [
        cnlab::lab::registry::LabRecord::path(&record.id),
        cnlab::lab::registry::LabRecord::plan_path(&record.id),
    ] {
        assert!(!p.exists(), "gc left {}", p.display());
    }
    assert_eq!(
        before,
        root_snapshot(),
        "the root network namespace changed"
    );
}

#[test]
fn sigterm_tears_the_lab_down() {
    assert_root();
    let (mut child, record) = up_quickstart();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    assert!(!st.success());
    assert!(
        lab_namespaces(&record.id).is_empty(),
        "SIGTERM left namespaces"
    );
    assert!(
        !cnlab::lab::registry::LabRecord::path(&record.id).exists(),
        "SIGTERM left the lab record"
    );
}

#[test]
fn broken_yaml_reports_every_problem_and_creates_nothing() {
    assert_root();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: broken\ncluster: {kubernetes: \"1.x\", cni: flannel, pod_cidr: 172.16.0.0/16}\nvpc:\n  cidr: 10.0.0.0/8\n  vswitches:\n    - {id: vsw-a, cidr: 10.0.4.0/24}\nnodes:\n  - {name: n1, vswitch: vsw-x}\n  - {name: n2, vswitch: vsw-a, ip: 10.9.9.9}\n",
    )
    .unwrap();
    let before = cnlab::kernel::netns::list("cnl-");
    let out = Command::new(CNLAB).arg("check").arg(&bad).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cluster.kubernetes"),
        "names the bad version: {err}"
    );
    assert!(
        err.contains("nodes[0].vswitch") && err.contains("line 8"),
        "names the unknown vswitch with its line: {err}"
    );
    assert!(
        err.contains("nodes[1].ip") && err.contains("line 9"),
        "names the address outside its vswitch: {err}"
    );
    // Other tests may be building labs meanwhile: a namespace of theirs
    // belongs to a registered lab. One of a broken file's would belong to none.
    let strays: Vec<String> = cnlab::kernel::netns::list("cnl-")
        .into_iter()
        .filter(|n| !before.contains(n))
        .filter(|n| {
            cnlab::lab::gc::lab_id_of(n)
                .is_some_and(|id| !cnlab::lab::registry::LabRecord::path(id).exists())
        })
        .collect();
    assert!(
        strays.is_empty(),
        "namespaces created for a broken file: {strays:?}"
    );
    assert!(
        cnlab::lab::registry::list()
            .iter()
            .all(|r| r.file.as_deref() != bad.to_str()),
        "a lab was registered for a broken file"
    );
}

#[test]
fn without_root_it_says_to_use_sudo() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // The checkout may sit under a directory nobody cannot enter (/root):
    // give the unprivileged child its own copies.
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("cnlab");
    // Copied by a child: a copy written here leaves its write descriptor
    // open in any child another test thread forks meanwhile (until that
    // child's exec), and executing the copy then fails with ETXTBSY
    // ("Text file busy", seen under load).
    let cp = Command::new("cp").arg(CNLAB).arg(&exe).status().unwrap();
    assert!(cp.success(), "cp {CNLAB}: {cp}");
    let file = dir.path().join("quickstart.yaml");
    std::fs::copy(repo().join("topologies/examples/quickstart.yaml"), &file).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.arg("check").arg(&file);
    // Drop to nobody for the child only.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setgid(nix::unistd::Gid::from_raw(65534)).map_err(std::io::Error::from)?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534)).map_err(std::io::Error::from)
        });
    }
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("sudo"), "{err}");
}
