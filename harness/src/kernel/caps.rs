//! `cnlab doctor`: which kernel features this machine has, probed by asking
//! the kernel in a scratch namespace, and which backend the lab then uses.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU32, Ordering};

use super::netlink::Netlink;
use super::tc::TcAttach;
use super::{netns, nft, KernelError, NetNs};
use crate::plan::types::{Backends, LinkKind, LinkPlan, MacvlanMode, RulePlan, VethEnd};

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capabilities {
    pub vlan: bool,
    pub ipvlan: bool,
    pub dummy: bool,
    pub macvlan: bool,
    pub vxlan: bool,
    pub bridge: bool,
    pub veth: bool,
    pub ipvs: bool,
    pub nft: bool,
    pub nft_nat: bool,
    pub conntrack: bool,
    /// tc eBPF programs as cls_bpf filters on clsact (netlink).
    pub cls_bpf: bool,
    /// tc eBPF programs as TCX attachments (Linux >= 6.6).
    #[serde(default)]
    pub tcx: bool,
    pub policy_routing: bool,
    /// The netem qdisc (CONFIG_NET_SCH_NETEM).
    #[serde(default)]
    pub netem: bool,
    /// nftables netdev egress hooks (the netem stand-in for loss and
    /// duplication) and the tbf qdisc (for rate).
    #[serde(default)]
    pub netdev_egress: bool,
    /// br_netfilter loaded (`/sys/module/br_netfilter`): probed, never loaded.
    #[serde(default)]
    pub br_netfilter: bool,
    /// `(feature, what the kernel answered)` for every probe.
    pub details: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendChoice {
    /// Native where the kernel has it, the portable stand-in elsewhere.
    Auto,
    /// Every feature native; missing ones are an error.
    Native,
    /// Every feature through its stand-in.
    Portable,
}

impl BackendChoice {
    /// `CNLAB_BACKEND` (auto, native, portable): how a test suite run in
    /// `cnlab vm` picks the backend its labs use. Unset is `Auto`.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("CNLAB_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("auto") => Ok(BackendChoice::Auto),
            Ok("native") => Ok(BackendChoice::Native),
            Ok("portable") => Ok(BackendChoice::Portable),
            Ok(other) => Err(format!(
                "CNLAB_BACKEND={other}: expected auto, native or portable"
            )),
        }
    }
}

static PROBES: AtomicU32 = AtomicU32::new(0);

/// Deletes the scratch namespace however the probe ends.
struct Scratch(String);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

/// Probes every feature in a scratch namespace `cnl-doctor-<pid>-<n>`,
/// which is always deleted again.
pub fn probe() -> Result<Capabilities, KernelError> {
    let name = format!(
        "cnl-doctor-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let ns = NetNs::create(&name)?;
    let _scratch = Scratch(name);
    let mut c = Capabilities::default();
    ns.run(|| probe_netlink(&mut c, &ns))??;
    probe_nft(&mut c, &ns);
    probe_cls_bpf(&mut c, &ns);
    probe_impairments(&mut c, &ns);
    probe_br_netfilter(&mut c);
    Ok(c)
}

/// Only asks: loading br_netfilter on a host would send the host's own
/// bridged traffic through its iptables (`cnlab vm` loads it in the guest).
fn probe_br_netfilter(c: &mut Capabilities) {
    c.br_netfilter = std::path::Path::new("/sys/module/br_netfilter").exists();
    let d = if c.br_netfilter {
        "ok: loaded"
    } else {
        "not loaded (cnlab does not load it on a host: it would change the host's own bridges)"
    };
    note(c, "br_netfilter", d);
}

fn note(c: &mut Capabilities, feature: &str, detail: impl Into<String>) {
    c.details.push((feature.to_string(), detail.into()));
}

/// Link kinds, policy routing and IPVS, answered by the kernel over netlink.
fn probe_netlink(c: &mut Capabilities, ns: &NetNs) -> Result<(), KernelError> {
    let mut nl = Netlink::open()?;
    let try_link =
        |nl: &mut Netlink, c: &mut Capabilities, feature: &str, name: &str, kind: LinkKind| {
            let res = nl.add_link(
                &LinkPlan {
                    name: name.into(),
                    kind,
                    mac: None,
                },
                &Backends::NATIVE,
            );
            answer(c, feature, res, nl.last_errno())
        };
    c.bridge = try_link(&mut nl, c, "bridge", "cnlp-br", LinkKind::Bridge);
    let v0 = VethEnd {
        ns: 0,
        name: "cnlp-v0".into(),
        mac: None,
    };
    let v1 = VethEnd {
        ns: 0,
        name: "cnlp-v1".into(),
        mac: None,
    };
    let res = nl.add_veth_to(&v0, &v1, ns);
    c.veth = answer(c, "veth", res, nl.last_errno());
    // macvlan and ipvlan cannot share a parent (both claim its rx handler).
    let (p0, p1) = if c.veth {
        ("cnlp-v0", "cnlp-v1")
    } else {
        ("cnlp-br", "cnlp-br")
    };
    c.dummy = try_link(&mut nl, c, "dummy", "cnlp-dummy", LinkKind::Dummy);
    c.macvlan = try_link(
        &mut nl,
        c,
        "macvlan",
        "cnlp-mv",
        LinkKind::Macvlan {
            parent: p0.into(),
            mode: MacvlanMode::Bridge,
        },
    );
    c.ipvlan = try_link(
        &mut nl,
        c,
        "ipvlan",
        "cnlp-ipv",
        LinkKind::Ipvlan { parent: p1.into() },
    );
    c.vlan = try_link(
        &mut nl,
        c,
        "802.1Q VLAN",
        "cnlp-vlan",
        LinkKind::Vlan {
            parent: p0.into(),
            id: 7,
        },
    );
    c.vxlan = try_link(
        &mut nl,
        c,
        "vxlan",
        "cnlp-vx",
        LinkKind::Vxlan {
            vni: 42,
            local: [127, 0, 0, 1].into(),
            port: 4789,
            dev: None,
            learning: false,
        },
    );
    let rule = RulePlan {
        priority: 1000,
        from: "10.99.0.0/16".parse().ok(),
        table: 100,
        ..Default::default()
    };
    let res = nl.add_rule(&rule);
    c.policy_routing = answer(c, "policy routing", res, nl.last_errno());
    c.ipvs = probe_ipvs(c);
    Ok(())
}

/// Records a probe's answer. Only "not supported" means the feature is
/// missing for sure; other errors are recorded as missing too, with text.
fn answer(
    c: &mut Capabilities,
    feature: &str,
    res: Result<(), KernelError>,
    errno: Option<i32>,
) -> bool {
    match res {
        Ok(()) => {
            note(c, feature, "ok");
            true
        }
        Err(e) if matches!(errno, Some(libc::EOPNOTSUPP)) => {
            note(c, feature, format!("not supported by this kernel ({e})"));
            false
        }
        Err(e) => {
            note(c, feature, format!("probe failed: {e}"));
            false
        }
    }
}

/// IP_VS: the generic-netlink family "IPVS" resolves in the scratch
/// namespace (the lookup itself asks the kernel to load a modular ip_vs);
/// if not, `modprobe ip_vs` as kube-proxy does at start, and ask again.
fn probe_ipvs(c: &mut Capabilities) -> bool {
    let ask = || super::ipvs::family_id("IPVS");
    let answer = match ask() {
        Ok(None) => {
            let loaded = std::process::Command::new("modprobe")
                .args(["-q", "ip_vs"])
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            ask().map(|id| (id, loaded))
        }
        other => other.map(|id| (id, false)),
    };
    match answer {
        Ok((Some(_), loaded)) => {
            let how = if loaded { ", after modprobe ip_vs" } else { "" };
            note(c, "IPVS", format!("ok (generic netlink family IPVS{how})"));
            true
        }
        Ok((None, _)) => {
            note(
                c,
                "IPVS",
                "not supported by this kernel: no IP_VS (no generic netlink family IPVS, modprobe ip_vs failed)",
            );
            false
        }
        Err(e) => {
            note(c, "IPVS", format!("probe failed: {e}"));
            false
        }
    }
}

/// nft itself, NAT chains and conntrack matches, each its own transaction.
fn probe_nft(c: &mut Capabilities, ns: &NetNs) {
    let try_nft = |c: &mut Capabilities, feature: &str, script: &str| match nft::apply(ns, script) {
        Ok(()) => {
            note(c, feature, "ok");
            true
        }
        Err(e) => {
            note(c, feature, e.0);
            false
        }
    };
    c.nft = try_nft(
        c,
        "nftables",
        "table inet cnlprobe {\n  chain input {\n    type filter hook input priority 0;\n  }\n}\n",
    );
    c.nft_nat = try_nft(
        c,
        "nftables NAT",
        "table ip cnlprobe_nat {\n  chain post {\n    type nat hook postrouting priority srcnat;\n    masquerade\n  }\n}\n",
    );
    c.conntrack = try_nft(
        c,
        "conntrack",
        "table inet cnlprobe_ct {\n  chain forward_ct {\n    type filter hook forward priority 0;\n    ct state established,related accept\n  }\n}\n",
    );
}

/// netem on a veth of the scratch namespace; else its stand-in: an
/// nftables netdev egress chain that drops and duplicates, and tbf.
fn probe_impairments(c: &mut Capabilities, ns: &NetNs) {
    let tc = |args: &[&str], what: &str| super::netns::run_in(ns, "tc", args, None, what);
    let dev = if c.veth { "cnlp-v0" } else { "lo" };
    match tc(
        &["qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"],
        "adding netem",
    ) {
        Ok(_) => {
            c.netem = true;
            note(c, "netem", "ok");
        }
        // tc's answer for a qdisc the kernel was built without.
        Err(e) if e.0.contains("kind is unknown") => {
            note(c, "netem", format!("not supported by this kernel ({e})"))
        }
        Err(e) => note(c, "netem", e.0),
    }
    let script = format!(
        "table netdev cnlprobe_eg {{\n  chain egress {{\n    type filter hook egress device \"{dev}\" priority 0;\n    numgen random mod 100 < 1 meta mark set meta mark | 0x10000000 dup to \"{dev}\"\n  }}\n}}\n"
    );
    let nft = nft::apply(ns, &script);
    let tbf = if c.veth {
        tc(
            &[
                "qdisc", "replace", "dev", "cnlp-v1", "root", "tbf", "rate", "1mbit", "burst",
                "32kbit", "latency", "400ms",
            ],
            "adding tbf",
        )
        .map(|_| ())
    } else {
        Err(KernelError::new("no veth to try tbf on"))
    };
    match (nft, tbf) {
        (Ok(()), Ok(())) => {
            c.netdev_egress = true;
            note(c, "netem stand-in", "ok");
        }
        (Err(e), _) | (_, Err(e)) => note(
            c,
            "netem stand-in",
            format!("not supported by this kernel ({e})"),
        ),
    }
}

/// tc eBPF the way the lab uses it: load the project's own object and hook a
/// program to `lo` of the scratch namespace, once as a cls_bpf filter
/// (netlink) and once as a TCX attachment.
fn probe_cls_bpf(c: &mut Capabilities, ns: &NetNs) {
    use super::tc::probe_attach;
    for mode in [TcAttach::Netlink, TcAttach::Tcx] {
        let (feature, ok) = match probe_attach(ns, mode) {
            Ok(()) => (mode.name(), format!("ok ({})", mode.describe())),
            Err(e) => (mode.name(), e.0),
        };
        let works = ok.starts_with("ok");
        note(c, if feature == "tcx" { "tcx" } else { "cls_bpf" }, ok);
        match mode {
            TcAttach::Netlink => c.cls_bpf = works,
            TcAttach::Tcx => c.tcx = works,
        }
    }
}

/// How tc programs are hooked: `requested` if the kernel has it, else
/// cls_bpf filters (no RCU wait per attach, every kernel), else TCX.
pub fn choose_tc_attach(c: &Capabilities, requested: Option<TcAttach>) -> Result<TcAttach, String> {
    let has = |m: TcAttach| match m {
        TcAttach::Netlink => c.cls_bpf,
        TcAttach::Tcx => c.tcx,
    };
    match requested {
        Some(m) if has(m) => Ok(m),
        Some(m) => Err(format!(
            "tc attach {} ({}) is not available on this kernel",
            m.name(),
            m.describe()
        )),
        None => [TcAttach::Netlink, TcAttach::Tcx]
            .into_iter()
            .find(|m| has(*m))
            .ok_or_else(|| {
                "this kernel can hook tc eBPF programs neither as cls_bpf filters nor as TCX".into()
            }),
    }
}

/// Features every lab needs whatever the backend.
fn required(c: &Capabilities) -> Vec<&'static str> {
    let mut v = Vec::new();
    for (ok, name) in [
        (c.veth, "veth"),
        (c.bridge, "bridge"),
        (c.nft, "nftables"),
        (c.nft_nat, "nftables NAT"),
        (c.conntrack, "conntrack"),
        (c.policy_routing, "policy routing"),
    ] {
        if !ok {
            v.push(name);
        }
    }
    v
}

/// Picks the backends. `Native` fails naming a native feature the kernel
/// lacks; `Portable` and `Auto` fail when a stand-in is missing too.
pub fn choose(c: &Capabilities, choice: BackendChoice) -> Result<Backends, String> {
    let missing = required(c);
    if !missing.is_empty() {
        return Err(format!(
            "this kernel lacks {}, which every lab needs",
            missing.join(", ")
        ));
    }
    let native = [
        (c.vlan, "802.1Q VLAN"),
        (c.ipvlan, "ipvlan"),
        (c.dummy, "dummy"),
        (c.ipvs, "IPVS (kernel IP_VS)"),
    ];
    // Stand-ins: cls_bpf for VLANs, macvlan for ipvlan; bridge and nft NAT
    // (for dummy and IPVS) are required above.
    let portable = [
        (c.cls_bpf || c.tcx, "cls_bpf (VLAN stand-in)"),
        (c.macvlan, "macvlan (ipvlan stand-in)"),
        (true, ""),
        (true, ""),
    ];
    let pick = |use_native: [bool; 4]| -> Result<Backends, String> {
        let mut lacking = Vec::new();
        for i in 0..4 {
            let (ok, name) = if use_native[i] {
                native[i]
            } else {
                portable[i]
            };
            if !ok {
                lacking.push(name);
            }
        }
        if !lacking.is_empty() {
            return Err(lacking.join(", "));
        }
        Ok(Backends {
            vlan_devices: use_native[0],
            ipvlan: use_native[1],
            dummy: use_native[2],
            ipvs: use_native[3],
            // Impairments are no backend of their own: netem where the
            // kernel has it (the plan rejects what the stand-in cannot do).
            netem: c.netem,
            br_netfilter: c.br_netfilter,
        })
    };
    match choice {
        BackendChoice::Native => pick([true; 4])
            .map_err(|m| format!("--backend native needs {m}, which this kernel lacks")),
        BackendChoice::Portable => pick([false; 4])
            .map(|b| Backends { netem: false, ..b })
            .map_err(|m| format!("--backend portable needs {m}, which this kernel lacks")),
        BackendChoice::Auto => pick([c.vlan, c.ipvlan, c.dummy, c.ipvs]).map_err(|m| {
            format!("this kernel lacks both the native feature and its stand-in: {m}")
        }),
    }
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// The doctor's word on a way of hooking tc programs: whether trunk ENIs
/// use it (`CNLAB_TC_ATTACH` or the automatic choice).
fn tc_row(c: &Capabilities, mode: TcAttach, vlan_devices: bool) -> &'static str {
    let chosen = TcAttach::from_env()
        .ok()
        .and_then(|req| choose_tc_attach(c, req).ok());
    let has = match mode {
        TcAttach::Netlink => c.cls_bpf,
        TcAttach::Tcx => c.tcx,
    };
    // 802.1Q sub-interfaces carry the VLANs: no program is attached at all.
    if vlan_devices {
        return if has {
            "available; not used (802.1Q sub-interfaces carry the VLANs)"
        } else {
            "unavailable; not needed (802.1Q sub-interfaces carry the VLANs)"
        };
    }
    match (chosen == Some(mode), mode) {
        (true, TcAttach::Netlink) => {
            "trunk VLAN programs attach here: cls_bpf filters on clsact (netlink)"
        }
        (true, TcAttach::Tcx) => "trunk VLAN programs attach here: TCX (CNLAB_TC_ATTACH=tcx)",
        (false, TcAttach::Tcx) if c.tcx => "available (CNLAB_TC_ATTACH=tcx); not used",
        (false, TcAttach::Netlink) if c.cls_bpf => "available (CNLAB_TC_ATTACH=netlink); not used",
        (false, TcAttach::Tcx) => "unavailable (Linux < 6.6): cls_bpf filters instead",
        (false, TcAttach::Netlink) => "unavailable",
    }
}

/// The doctor's table: feature, whether the kernel has it, what the lab uses.
pub fn render(c: &Capabilities, b: &Backends) -> String {
    let need = |ok: bool, name: &'static str| if ok { name } else { "MISSING (required)" };
    let optional = |ok: bool, name: &'static str| if ok { name } else { "unavailable" };
    let vlan_attach = TcAttach::from_env()
        .ok()
        .and_then(|req| choose_tc_attach(c, req).ok());
    let rows: Vec<(&str, bool, &str)> = vec![
        (
            "802.1Q VLAN",
            c.vlan,
            match (b.vlan_devices, vlan_attach) {
                (true, _) => "802.1Q sub-interfaces",
                (false, Some(TcAttach::Tcx)) => "eBPF tc push/pop (TCX links)",
                (false, _) => "eBPF tc push/pop (cls_bpf filters)",
            },
        ),
        (
            "ipvlan",
            c.ipvlan,
            if b.ipvlan {
                "ipvlan (L2)"
            } else {
                "macvlan (bridge mode)"
            },
        ),
        (
            "dummy",
            c.dummy,
            if b.dummy {
                "dummy"
            } else {
                "bridge without ports"
            },
        ),
        (
            "IPVS",
            c.ipvs,
            if b.ipvs {
                "IPVS (kernel IP_VS, generic netlink)"
            } else {
                "nftables EMULATION of IPVS"
            },
        ),
        ("veth", c.veth, need(c.veth, "veth")),
        ("bridge", c.bridge, need(c.bridge, "bridge")),
        ("macvlan", c.macvlan, optional(c.macvlan, "macvlan")),
        ("vxlan", c.vxlan, optional(c.vxlan, "vxlan (flannel)")),
        ("nftables", c.nft, need(c.nft, "nftables")),
        ("nftables NAT", c.nft_nat, need(c.nft_nat, "nftables")),
        ("conntrack", c.conntrack, need(c.conntrack, "conntrack")),
        (
            "cls_bpf",
            c.cls_bpf,
            tc_row(c, TcAttach::Netlink, b.vlan_devices),
        ),
        ("TCX", c.tcx, tc_row(c, TcAttach::Tcx, b.vlan_devices)),
        (
            "netem",
            c.netem,
            match (b.netem, c.netdev_egress) {
                (true, _) => "netem qdiscs (impairments)",
                (false, true) => "STAND-IN: loss/duplicate by nftables netdev egress rules, rate by tbf; delay, jitter, reorder cannot run",
                (false, false) => "unavailable: impairments cannot run",
            },
        ),
        (
            "policy routing",
            c.policy_routing,
            need(c.policy_routing, "ip rules"),
        ),
        (
            "br_netfilter",
            c.br_netfilter,
            if b.br_netfilter {
                "nodes: bridge-nf-call-iptables=1 (as kubeadm requires)"
            } else {
                "not loaded: bridged pod-to-pod traffic skips the node's netfilter"
            },
        ),
    ];
    let width = rows
        .iter()
        .map(|r| r.0.len())
        .max()
        .unwrap_or(0)
        .max("feature".len())
        + 3;
    let mut out = format!("{:<width$}{:<9}{}\n", "feature", "kernel", "backend");
    for (name, ok, backend) in &rows {
        let _ = writeln!(out, "{name:<width$}{:<9}{backend}", yes(*ok));
    }
    let failures: Vec<&(String, String)> = c
        .details
        .iter()
        .filter(|(_, d)| !d.starts_with("ok"))
        .collect();
    if !failures.is_empty() {
        out.push_str("\nprobe answers:\n");
        for (f, d) in failures {
            let _ = writeln!(out, "  {f}: {d}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn this_machine() -> Capabilities {
        Capabilities {
            macvlan: true,
            vxlan: true,
            bridge: true,
            veth: true,
            nft: true,
            nft_nat: true,
            conntrack: true,
            cls_bpf: true,
            policy_routing: true,
            ..Default::default()
        }
    }

    #[test]
    fn auto_picks_stand_ins_for_missing_features() {
        assert_eq!(
            choose(&this_machine(), BackendChoice::Auto).unwrap(),
            Backends::PORTABLE
        );
        let mut c = this_machine();
        c.ipvlan = true;
        c.ipvs = true;
        let b = choose(&c, BackendChoice::Auto).unwrap();
        assert_eq!(
            b,
            Backends {
                vlan_devices: false,
                ipvlan: true,
                dummy: false,
                ipvs: true,
                netem: false,
                br_netfilter: false,
            }
        );
    }

    #[test]
    fn native_names_what_is_missing() {
        let err = choose(&this_machine(), BackendChoice::Native).unwrap_err();
        assert!(err.contains("802.1Q VLAN, ipvlan, dummy, IPVS"), "{err}");
        let full = Capabilities {
            vlan: true,
            ipvlan: true,
            dummy: true,
            ipvs: true,
            netem: true,
            ..this_machine()
        };
        assert_eq!(
            choose(&full, BackendChoice::Native).unwrap(),
            Backends::NATIVE
        );
        assert_eq!(
            choose(&full, BackendChoice::Portable).unwrap(),
            Backends::PORTABLE
        );
    }

    #[test]
    fn portable_needs_its_stand_ins_and_everything_needs_the_basics() {
        let c = Capabilities {
            cls_bpf: false,
            tcx: false,
            ..this_machine()
        };
        assert!(choose(&c, BackendChoice::Portable)
            .unwrap_err()
            .contains("cls_bpf"));
        assert!(choose(&c, BackendChoice::Auto).is_err());
        let c = Capabilities {
            conntrack: false,
            ..this_machine()
        };
        assert!(choose(&c, BackendChoice::Auto)
            .unwrap_err()
            .contains("conntrack"));
    }

    #[test]
    fn tc_attach_prefers_cls_bpf_filters_and_honours_a_request() {
        let mut c = this_machine();
        c.tcx = true;
        assert_eq!(choose_tc_attach(&c, None).unwrap(), TcAttach::Netlink);
        assert_eq!(
            choose_tc_attach(&c, Some(TcAttach::Tcx)).unwrap(),
            TcAttach::Tcx
        );
        c.cls_bpf = false;
        assert_eq!(choose_tc_attach(&c, None).unwrap(), TcAttach::Tcx);
        // Debian 12's 6.1: no TCX.
        let old = this_machine();
        assert_eq!(choose_tc_attach(&old, None).unwrap(), TcAttach::Netlink);
        let err = choose_tc_attach(&old, Some(TcAttach::Tcx)).unwrap_err();
        assert!(err.contains("tcx"), "{err}");
        assert!(render(&old, &Backends::PORTABLE).contains("unavailable (Linux < 6.6)"));
    }

    #[test]
    fn table_is_aligned() {
        let t = render(&this_machine(), &Backends::PORTABLE);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("feature"));
        assert!(lines[1].starts_with("802.1Q VLAN"));
        assert!(lines[1].contains("eBPF tc push/pop (cls_bpf filters)"));
        let col = lines[0].find("kernel").unwrap();
        for l in &lines[1..15] {
            assert!(
                &l[col..col + 3] == "no " || &l[col..col + 3] == "yes",
                "{l}"
            );
        }
    }

    /// With 802.1Q sub-interfaces no program is attached: the tc rows must
    /// not claim the VLAN programs attach there.
    #[test]
    fn native_vlans_attach_no_program() {
        let c = Capabilities {
            vlan: true,
            ipvlan: true,
            dummy: true,
            ipvs: true,
            ..this_machine()
        };
        let t = render(&c, &Backends::NATIVE);
        assert!(t.contains("802.1Q sub-interfaces"), "{t}");
        assert!(!t.contains("programs attach here"), "{t}");
        let row = t.lines().find(|l| l.starts_with("cls_bpf")).unwrap();
        assert!(row.contains("not used"), "{row}");
    }
}
