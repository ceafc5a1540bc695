//! The mock cloud's ENI verbs on a live lab (issue 3): a hot-plugged ENI
//! carries real packets, its security group applies, detaching cuts it off,
//! errors are named like the ECS API, and nothing outlives the lab.

use cnlab_suites::topology;
use std::net::Ipv4Addr;
use std::time::Duration;

use cnlab::cloud::{CloudApi, MockCloud, PrivateIps};
use cnlab::kernel::netlink::Netlink;
use cnlab::kernel::{netns, NetNs};
use cnlab::lab::{Lab, UpOptions};
use cnlab::plan::{AddrPlan, NeighPlan, RoutePlan, RulePlan, Scope, ServerPlan};
use cnlab::probe::{probe, EchoServers, ProbeOutcome, ProbeSpec};
use cnlab::topology::model::{Proto, Verdict};

const NODE: &str = "cn-hangzhou.10.0.4.20";
const OTHER_NODE: &str = "cn-hangzhou.10.0.4.21";
const VSW: &str = "vsw-bp1a7d4x2k";
const NODE_SG: &str = "sg-bp1node0001";
/// A port nothing in f5 listens on; the test's own echo server takes it.
const NEW_PORT: u16 = 9090;
/// Policy table the test's "agent" uses for the new ENI.
const ENI_TABLE: u32 = 1001;

fn tcp(lab: &Lab, from: &NetNs, dst: Ipv4Addr, port: u16) -> ProbeOutcome {
    probe(
        from,
        &ProbeSpec {
            id: format!("cloud-api-{dst}-{port}-{}", lab.next_probe_port()),
            proto: Proto::Tcp,
            dst,
            port,
            src_port: Some(lab.next_probe_port()),
            deadline: Duration::from_millis(1500),
            http: false,
        },
    )
}

/// `ip/32` as the plan types take it (suites has no `ipnet` of its own).
fn host<T: std::str::FromStr>(ip: Ipv4Addr) -> T
where
    T::Err: std::fmt::Debug,
{
    format!("{ip}/32").parse().unwrap()
}

/// What Terway does with a fresh secondary ENI: its addresses on the link,
/// a policy table whose default leaves through it, a rule per address, and
/// the gateway pinned.
fn configure_node_side(
    node: &NetNs,
    ifname: &str,
    ips: &[Ipv4Addr],
    gw: Ipv4Addr,
    gw_mac: [u8; 6],
) {
    let ifname = ifname.to_string();
    let ips = ips.to_vec();
    node.run(move || {
        let mut nl = Netlink::open()?;
        for ip in &ips {
            nl.add_addr(&AddrPlan {
                dev: ifname.clone(),
                addr: host(*ip),
                scope: Scope::Global,
                noprefixroute: false,
            })?;
            nl.add_rule(&RulePlan {
                priority: 1000,
                from: Some(host(*ip)),
                table: ENI_TABLE,
                ..Default::default()
            })?;
        }
        nl.add_neigh(&NeighPlan {
            dev: ifname.clone(),
            ip: gw,
            mac: gw_mac,
        })?;
        nl.add_route(
            &RoutePlan::via("0.0.0.0/0".parse().unwrap(), gw, &ifname, true).in_table(ENI_TABLE),
        )
    })
    .unwrap()
    .unwrap();
}

fn expect_err<T: std::fmt::Debug>(r: Result<T, cnlab::cloud::CloudError>, code: &str) {
    match r {
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
        Err(e) => assert!(e.to_string().starts_with(code), "expected {code}, got: {e}"),
    }
}

#[test]
fn hot_plugged_eni_carries_traffic_and_its_security_group() {
    let r = topology("scenarios/f5-ecs-outside-cluster.yaml");
    let lab = Lab::up(&r, &UpOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let prefix = format!("cnl-{}-", lab.id());
    let mut cloud = MockCloud::with_topology(&lab, &r.topo);
    let node_ns = lab.netns_by_key(&format!("node/{NODE}")).unwrap();
    let other_ns = lab.netns_by_key(&format!("node/{OTHER_NODE}")).unwrap();
    let ecs_ns = lab.netns_by_key("external/mysql-ecs").unwrap();
    let sgs = vec![NODE_SG.to_string()];
    let planned = cloud.describe_network_interfaces().len();

    // Errors named like the ECS API.
    expect_err(
        cloud.create_network_interface("vsw-nope", &sgs, None),
        "InvalidVSwitchId.NotFound",
    );
    expect_err(
        cloud.create_network_interface(VSW, &["sg-nope".into()], None),
        "InvalidSecurityGroupId.NotFound",
    );
    expect_err(
        cloud.create_network_interface(VSW, &sgs, Some(Ipv4Addr::new(10, 0, 4, 21))),
        "InvalidIpAddress.AlreadyUsed",
    );
    expect_err(
        cloud.create_network_interface(VSW, &sgs, Some(Ipv4Addr::new(10, 0, 3, 9))),
        "InvalidIpAddress.NotInVSwitch",
    );
    expect_err(
        cloud.attach_network_interface("eni-0000000000", NODE),
        "InvalidEniId.NotFound",
    );

    // Create: a free address of the vSwitch, not attached anywhere.
    let eni = cloud.create_network_interface(VSW, &sgs, None).unwrap();
    let rec = cloud
        .describe_network_interfaces()
        .into_iter()
        .find(|e| e.id == eni)
        .unwrap();
    let ip = rec.ips[0];
    assert_eq!(ip.octets()[..3], [10, 0, 4], "{ip} is in {VSW}");
    assert!(![Ipv4Addr::new(10, 0, 4, 20), Ipv4Addr::new(10, 0, 4, 21)].contains(&ip));
    assert_eq!(rec.instance, "");
    assert_eq!(cloud.describe_network_interfaces().len(), planned + 1);
    assert!(netns::list(&prefix).iter().any(|n| n.ends_with(&eni)));
    expect_err(
        cloud.attach_network_interface(&eni, "no-such-node"),
        "InvalidInstanceId.NotFound",
    );

    // Attach: a new link in the node, up and without an address.
    let ifname = cloud.attach_network_interface(&eni, NODE).unwrap();
    assert_eq!(ifname, "eth1");
    expect_err(
        cloud.attach_network_interface(&eni, OTHER_NODE),
        "InvalidOperation.InvalidEniState",
    );
    expect_err(
        cloud.delete_network_interface(&eni),
        "InvalidOperation.InvalidEniState",
    );
    let secondary = cloud
        .assign_private_ip_addresses(&eni, PrivateIps::Count(1))
        .unwrap();
    assert_eq!(secondary.len(), 1);
    let ip2 = secondary[0];
    assert_ne!(ip2, ip);
    expect_err(
        cloud.assign_private_ip_addresses(&eni, PrivateIps::Explicit(vec![ip2])),
        "InvalidIpAddress.AlreadyUsed",
    );
    let rec = cloud
        .describe_network_interfaces()
        .into_iter()
        .find(|e| e.id == eni)
        .unwrap();
    assert_eq!(
        (rec.instance.as_str(), rec.ips.clone()),
        (NODE, vec![ip, ip2])
    );

    let (gw, gw_mac) = cloud.eni_gateway(&eni).unwrap();
    configure_node_side(node_ns, &ifname, &[ip, ip2], gw, gw_mac);
    let server = |port| ServerPlan {
        identity: format!("node/{NODE}"),
        port,
        tcp: true,
        udp: false,
        bind: None,
        http: None,
    };
    let _servers = EchoServers::start(&[(node_ns, server(NEW_PORT))]).unwrap();

    // Through the new ENI, from outside the cluster, to both addresses.
    for dst in [ip, ip2] {
        let out = tcp(&lab, ecs_ns, dst, NEW_PORT);
        assert_eq!(out.verdict, Verdict::Connected, "ECS to {dst}: {out:?}");
        assert_eq!(
            out.served_by.as_deref(),
            Some(format!("node/{NODE}").as_str())
        );
        assert_eq!(
            out.seen_peer.map(|p| *p.ip()),
            Some(Ipv4Addr::new(10, 0, 3, 72)),
            "{out:?}"
        );
    }
    // The ENI's security group: SSH from the database vSwitch is dropped,
    // from the node vSwitch (the other node) admitted — so a server is there.
    let ssh = tcp(&lab, ecs_ns, ip, 22);
    assert_eq!(ssh.verdict, Verdict::Timeout, "{ssh:?}");
    let ssh = tcp(&lab, other_ns, ip, 22);
    assert_eq!(ssh.verdict, Verdict::Connected, "{ssh:?}");

    // The ENI limit: f5's nodes take the default 3 ENIs (primary included).
    let eni2 = cloud.create_network_interface(VSW, &sgs, None).unwrap();
    let eni3 = cloud.create_network_interface(VSW, &sgs, None).unwrap();
    assert_eq!(cloud.attach_network_interface(&eni2, NODE).unwrap(), "eth2");
    expect_err(
        cloud.attach_network_interface(&eni3, NODE),
        "InvalidOperation.EniCountExceeded",
    );
    cloud.detach_network_interface(&eni2, NODE).unwrap();
    cloud.delete_network_interface(&eni2).unwrap();
    assert!(!netns::list(&prefix).iter().any(|n| n.ends_with(&eni2)));

    // Unassign the secondary: it stops answering, the primary does not.
    expect_err(
        cloud.unassign_private_ip_addresses(&eni, &[ip]),
        "InvalidOperation.PrimaryIp",
    );
    cloud.unassign_private_ip_addresses(&eni, &[ip2]).unwrap();
    let gone = tcp(&lab, ecs_ns, ip2, NEW_PORT);
    assert_eq!(gone.verdict, Verdict::Timeout, "{gone:?}");
    let still = tcp(&lab, ecs_ns, ip, NEW_PORT);
    assert_eq!(still.verdict, Verdict::Connected, "{still:?}");

    // Detach: the node's link is gone and the address no longer answers.
    expect_err(
        cloud.detach_network_interface(&eni, OTHER_NODE),
        "InvalidOperation.InvalidEniState",
    );
    cloud.detach_network_interface(&eni, NODE).unwrap();
    let links: Vec<String> = node_ns
        .run(|| Netlink::open().and_then(|mut nl| nl.links()))
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert!(!links.contains(&ifname), "{links:?}");
    let detached = tcp(&lab, ecs_ns, ip, NEW_PORT);
    assert_eq!(detached.verdict, Verdict::Timeout, "{detached:?}");
    assert_eq!(cloud.attachment(&eni).unwrap(), None);

    // eni and eni3 stay: lab teardown must remove their namespaces too.
    assert!(netns::list(&prefix).iter().any(|n| n.ends_with(&eni3)));
    drop(_servers);
    drop(cloud);
    lab.down();
    assert_eq!(netns::list(&prefix), Vec::<String>::new());
}
