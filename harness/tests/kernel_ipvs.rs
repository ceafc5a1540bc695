//! `kernel::ipvs` against the running kernel (root only), in a scratch
//! namespace (IPVS tables are per namespace; the root one is never touched).
//!
//! On a kernel with IP_VS (a Debian 6.1/6.12 kernel in `cnlab vm`, a GitHub
//! runner) the services and real servers `build` programs are read back
//! exactly, persistence included. On a kernel without it (this project's
//! development machine) the socket refuses with an error naming IP_VS, and
//! `--backend native` is refused naming it too: both outcomes are what a
//! user sees, so each is asserted on the kernel where it applies.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU32, Ordering};

use cnlab::kernel::caps::{self, BackendChoice};
use cnlab::kernel::ipvs::{Ipvs, IpvsError};
use cnlab::kernel::{build, netns, NetNs};
use cnlab::plan::types::*;
use cnlab::topology::model::{Cni, ProxyMode};

static N: AtomicU32 = AtomicU32::new(0);

struct Guard(String);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = netns::delete(&self.0);
    }
}

fn scratch() -> (Guard, NetNs) {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "kernel tests need root: run them with sudo"
    );
    let name = format!(
        "cnl-t{}-ipvs{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let ns = NetNs::create(&name).unwrap();
    (Guard(name), ns)
}

fn services() -> Vec<IpvsService> {
    let dest = |a: [u8; 4], port| IpvsDest {
        addr: Ipv4Addr::from(a),
        port,
        weight: 1,
        forward: IpvsForward::Masq,
    };
    vec![
        IpvsService {
            addr: Ipv4Addr::new(192, 168, 0, 10),
            port: 80,
            proto: IpvsProto::Tcp,
            scheduler: IPVS_SCHEDULER_RR.into(),
            persistence_timeout: None,
            dests: vec![dest([10, 0, 4, 30], 8080), dest([10, 0, 4, 31], 8080)],
        },
        IpvsService {
            addr: Ipv4Addr::new(192, 168, 0, 10),
            port: 53,
            proto: IpvsProto::Udp,
            scheduler: IPVS_SCHEDULER_RR.into(),
            persistence_timeout: Some(10800),
            dests: vec![dest([10, 0, 4, 30], 53)],
        },
        // No real servers: IPVS answers ICMP port-unreachable (K2/K4).
        IpvsService {
            addr: Ipv4Addr::new(10, 0, 4, 20),
            port: 30080,
            proto: IpvsProto::Tcp,
            scheduler: IPVS_SCHEDULER_RR.into(),
            persistence_timeout: None,
            dests: vec![],
        },
    ]
}

#[test]
fn build_programs_ipvs_and_reads_it_back_or_names_the_missing_ip_vs() {
    let c = caps::probe().unwrap();
    let (_g, ns) = scratch();
    let mut node = NsPlan::new("node/n1", "n1", NsKind::Node);
    node.ipvs = services();
    let mut plan = LabPlan::empty(
        "ipvs",
        Cni::Flannel,
        ProxyMode::Ipvs,
        "1.24",
        Backends::NATIVE,
    );
    plan.namespaces.push(node);
    let built = build::build(&plan, std::slice::from_ref(&ns));
    if c.ipvs {
        built.unwrap();
        let listed = ns.run(|| Ipvs::open()?.list()).unwrap().unwrap();
        let got: Vec<IpvsService> = listed.iter().map(|s| s.service.clone()).collect();
        let mut want = services();
        want.sort_by_key(|s| (s.proto, s.addr, s.port));
        assert_eq!(got, want);
        let table = cnlab::kernel::ipvs::render(&listed);
        println!("{table}");
        assert!(
            table.contains("UDP  192.168.0.10:53 rr persistent 10800"),
            "{table}"
        );
        assert!(table.contains("  -> 10.0.4.31:8080"), "{table}");
    } else {
        let err = built.unwrap_err().to_string();
        assert!(err.contains("IP_VS"), "{err}");
        let open = ns.run(Ipvs::open).unwrap();
        assert!(matches!(open, Err(IpvsError::NoIpvs)), "{:?}", open.err());
        let native = caps::choose(&c, BackendChoice::Native).unwrap_err();
        assert!(native.contains("IP_VS"), "{native}");
        println!("this kernel has no IP_VS: {err}");
    }
}
