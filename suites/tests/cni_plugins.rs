//! `cni: plugins`: the lab as a CNI runtime for the reference plugins
//! (Debian's containernetworking-plugins in /usr/lib/cni). Connectivity of
//! each plugin is in the shipped topologies (`topologies/examples/cni-*.yaml`,
//! run by scenarios.rs); here: a broken chain's own error on the report and
//! nothing left behind, and DEL for every ADD with host-local's leases gone.

use std::path::{Path, PathBuf};

use cnlab::check::file::check_loaded;
use cnlab::lab::{cni, Lab, UpOptions};
use cnlab::topology::load_str;

const REFERENCE: &str = "/usr/lib/cni";

fn assert_ready() {
    assert!(
        cnlab::lab::is_root(),
        "these tests build labs: run them as root (sudo -E cargo test)"
    );
    assert!(
        Path::new(REFERENCE).join("bridge").is_file(),
        "{REFERENCE}/bridge missing: install containernetworking-plugins (scripts/setup)"
    );
}

/// Two nodes, a pod on each; `plugins` is the YAML of the conflist's plugin list.
fn topology(name: &str, bin_dir: &Path, plugins: &str) -> String {
    format!(
        r#"
name: {name}
cluster:
  cni: plugins
  cni_plugins:
    bin_dir: {bin}
    conflist:
      cniVersion: 1.0.0
      name: podnet
      plugins: {plugins}
vpc:
  cidr: 10.0.0.0/8
  vswitches: [{{id: vsw-a, cidr: 10.0.4.0/24}}]
  security_groups:
    - id: sg-node
      rules: [{{direction: ingress, action: accept, cidr: 10.0.0.0/8}}]
nodes:
  - {{name: node-1, vswitch: vsw-a, security_groups: [sg-node]}}
  - {{name: node-2, vswitch: vsw-a, security_groups: [sg-node]}}
kubernetes:
  - {{apiVersion: v1, kind: Pod, metadata: {{name: a}}, spec: {{nodeName: node-1, containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}}}
  - {{apiVersion: v1, kind: Pod, metadata: {{name: b}}, spec: {{nodeName: node-1, containers: [{{name: c}}]}}}}
expect:
  - {{name: same node, from: pod/default/b, to: pod/default/a:80, result: connected, source: client}}
"#,
        bin = bin_dir.display()
    )
}

const BRIDGE: &str = r#"[{type: bridge, bridge: cni0, isGateway: true, ipam: {type: host-local, ranges: [[{subnet: 172.20.1.0/24}]]}}]"#;

fn leftovers(lab_id: &str) -> Vec<String> {
    let mut out = cnlab::kernel::netns::list(&format!("cnl-{lab_id}-"));
    if cni::state_dir(lab_id).exists() {
        out.push(cni::state_dir(lab_id).display().to_string());
    }
    out
}

fn check_text(name: &str, bin: &Path, plugins: &str) -> cnlab::check::file::FileOutcome {
    let text = topology(name, bin, plugins);
    check_loaded(
        Path::new(name),
        load_str(&text, name),
        &UpOptions::default(),
        1,
    )
}

#[test]
fn a_bad_ipam_subnet_is_host_locals_own_error_on_the_report() {
    assert_ready();
    let o = check_text(
        "cni-bad-subnet",
        Path::new(REFERENCE),
        r#"[{type: bridge, bridge: cni0, isGateway: true, ipam: {type: host-local, ranges: [[{subnet: 172.20.1.0/33}]]}}]"#,
    );
    assert!(
        o.error.is_none(),
        "the rest of the lab comes up: {:?}",
        o.error
    );
    assert!(!o.passed(), "a failed CNI ADD fails the file (exit 1)");
    let a = o
        .pending
        .iter()
        .find(|p| p.starts_with("default/a:"))
        .expect("pod a pending");
    assert!(
        a.contains("CNI ADD failed")
            && a.contains("type=\"bridge\"")
            && a.contains("172.20.1.0/33"),
        "{a}"
    );
    assert!(
        leftovers(&o.lab_id).is_empty(),
        "left behind: {:?}",
        leftovers(&o.lab_id)
    );
}

#[test]
fn a_missing_plugin_binary_is_reported_as_libcni_does() {
    assert_ready();
    let o = check_text(
        "cni-missing-binary",
        Path::new(REFERENCE),
        r#"[{type: no-such-plugin}]"#,
    );
    assert!(!o.passed());
    let a = o
        .pending
        .iter()
        .find(|p| p.starts_with("default/a:"))
        .expect("pod a pending");
    assert!(
        a.contains("failed to find plugin \"no-such-plugin\" in path [/usr/lib/cni]"),
        "{a}"
    );
    // The expectation names a pending pod: it fails, with the reason.
    assert!(o.results.iter().all(|r| !r.passed()));
    assert!(
        leftovers(&o.lab_id).is_empty(),
        "left behind: {:?}",
        leftovers(&o.lab_id)
    );
}

/// A bin_dir whose plugins log each call, then run the reference plugin:
/// the log proves which commands ran, for which container, and what
/// host-local's lease directory held after its DEL.
fn logging_bin_dir(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls.log");
    for p in ["bridge", "host-local", "portmap"] {
        let script = format!(
            "#!/bin/sh\nin=$(cat)\nout=$(printf '%s' \"$in\" | {REFERENCE}/{p}); rc=$?\nleases=''\n\
             if [ {p} = host-local ] && [ \"$CNI_COMMAND\" = DEL ]; then d=$(printf '%s' \"$in\" | sed -n 's/.*\"dataDir\":\"\\([^\"]*\\)\".*/\\1/p'); leases=$(ls \"$d\"/podnet 2>/dev/null | grep -v -e lock -e last_reserved | tr '\\n' ' '); fi\n\
             echo \"{p} $CNI_COMMAND $CNI_CONTAINERID rc=$rc leases=[$leases]\" >> {log}\nprintf '%s' \"$out\"\nexit $rc\n",
            log = log.display()
        );
        let path = bin.join(p);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin
}

#[test]
fn del_runs_for_every_add_and_host_local_releases_its_leases() {
    assert_ready();
    let tmp = tempfile::tempdir().unwrap();
    let bin = logging_bin_dir(tmp.path());
    let text = topology("cni-del-every-add", &bin, BRIDGE);
    let r = load_str(&text, "cni-del-every-add").unwrap().resolved;
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let id = lab.id().to_string();
    let leases = cni::node_dir(&id, "node-1").join("host-local/podnet");
    let held: Vec<_> = std::fs::read_dir(&leases)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        held.iter()
            .any(|f| f.to_string_lossy().starts_with("172.20.1.")),
        "leases {held:?}"
    );
    lab.down();
    let log = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    let adds: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("bridge ADD"))
        .copied()
        .collect();
    assert_eq!(adds.len(), 2, "{log}");
    for add in adds {
        let cid = add.split_whitespace().nth(2).unwrap();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("bridge DEL {cid} rc=0"))),
            "no bridge DEL for {cid}:\n{log}"
        );
    }
    let last_ipam_del = lines
        .iter()
        .rev()
        .find(|l| l.starts_with("host-local DEL"))
        .expect("host-local DEL");
    assert!(
        last_ipam_del.ends_with("leases=[]"),
        "host-local still holds leases after the last DEL: {last_ipam_del}"
    );
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
}
