//! Captures to hops: the observation points one probe's first packet crossed,
//! in order, each way.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::decode::{
    ICMP_ECHO_REPLY, ICMP_ECHO_REQUEST, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN,
};
use super::tap::Capture;
use crate::topology::model::Proto;

/// One packet's crossings belong together only within this window after the
/// first: a retransmission (TCP retries a SYN after 1 s at the earliest) is
/// a new journey, not more hops.
const JOURNEY_WINDOW: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub point: String,
    pub vlan: Option<u16>,
    /// Addresses as first seen at this point.
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub encap: Option<String>,
}

impl Hop {
    /// A node's own stack added at a journey's end (`node/<n>` as client or
    /// server): no tap saw it, it has no addresses.
    pub fn is_stack_end(&self) -> bool {
        self.src.is_unspecified() && self.dst.is_unspecified()
    }

    /// The hop as `path:` entries write it, under the name `shown`:
    /// `trunk/n1@vlan=1027`, `eth0/n1 (vxlan)`. Tables, trace, explanations
    /// and JSON all use this one notation.
    pub fn label(&self, shown: &str) -> String {
        let mut s = shown.to_string();
        if let Some(v) = self.vlan {
            s.push_str(&format!("@vlan={v}"));
        }
        if let Some(e) = &self.encap {
            s.push_str(&format!(" ({e})"));
        }
        s
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Way {
    Request,
    Reply,
}

/// Is `c` the packet of the probe (client port or ICMP identifier
/// `client_port`) that opens the given direction?
fn opens(c: &Capture, proto: Proto, client_port: u16, way: Way) -> bool {
    let wanted = match proto {
        Proto::Tcp => c.proto == PROTO_TCP,
        Proto::Udp => c.proto == PROTO_UDP,
        Proto::Icmp => c.proto == PROTO_ICMP,
        Proto::All => true,
    };
    if !wanted {
        return false;
    }
    match (c.proto, way) {
        // Only the handshake: retransmissions and data segments would
        // muddle the order.
        (PROTO_TCP, Way::Request) => {
            c.sport == client_port
                && c.tcp_flags
                    .is_some_and(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN)
        }
        (PROTO_TCP, Way::Reply) => {
            c.dport == client_port
                && c.tcp_flags
                    .is_some_and(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK)
        }
        (PROTO_UDP, Way::Request) => c.sport == client_port,
        (PROTO_UDP, Way::Reply) => c.dport == client_port,
        (PROTO_ICMP, Way::Request) => {
            c.icmp_type == Some(ICMP_ECHO_REQUEST) && c.icmp_id == Some(client_port)
        }
        (PROTO_ICMP, Way::Reply) => {
            c.icmp_type == Some(ICMP_ECHO_REPLY) && c.icmp_id == Some(client_port)
        }
        _ => false,
    }
}

/// The hops of the first packet one way: its captures in time order (same
/// IPv4 id, within `JOURNEY_WINDOW`), consecutive captures at one point
/// collapsed.
fn journey(captures: &[Capture], proto: Proto, client_port: u16, way: Way) -> Vec<Hop> {
    let mut seen: Vec<&Capture> = captures
        .iter()
        .filter(|c| opens(c, proto, client_port, way))
        .collect();
    seen.sort_by_key(|c| c.ts_ns);
    let Some(first) = seen.first().copied() else {
        return Vec::new();
    };
    let window_end = first.ts_ns + JOURNEY_WINDOW.as_nanos();
    collapse(
        seen.into_iter()
            .filter(|c| c.ip_id == first.ip_id && c.ts_ns <= window_end),
        |c| c.encap.clone(),
    )
}

/// Captures in time order to hops, consecutive captures at one point
/// collapsed (in and out of a router, the vxlan device and its underlay):
/// one hop, with any tag or tunnel (`note`) seen there.
fn collapse<'c>(
    seen: impl Iterator<Item = &'c Capture>,
    note: impl Fn(&Capture) -> Option<String>,
) -> Vec<Hop> {
    let mut hops: Vec<Hop> = Vec::new();
    for c in seen {
        match hops.last_mut() {
            Some(last) if last.point == c.point => {
                last.vlan = last.vlan.or(c.vlan);
                if last.encap.is_none() {
                    last.encap = note(c);
                }
            }
            _ => hops.push(Hop {
                point: c.point.clone(),
                vlan: c.vlan,
                src: c.src,
                dst: c.dst,
                encap: note(c),
            }),
        }
    }
    hops
}

/// (request hops, reply hops) of the probe whose client port (ICMP: echo
/// identifier) is `client_port`. TCP: the SYN and the SYN-ACK; UDP/ICMP: the
/// first datagram each way.
pub fn hops(captures: &[Capture], proto: Proto, client_port: u16) -> (Vec<Hop>, Vec<Hop>) {
    (
        journey(captures, proto, client_port, Way::Request),
        journey(captures, proto, client_port, Way::Reply),
    )
}

/// ARP operation code of a request.
const ARP_REQUEST: u16 = 1;

/// Where the ARP requests of `sender` went, for a probe whose first packet
/// never left (the kernel holds a packet until its next hop answers ARP):
/// the first request's crossings, each hop labelled `arp who-has <target>`.
pub fn arp_hops(captures: &[Capture], sender: Ipv4Addr) -> Vec<Hop> {
    let mut seen: Vec<&Capture> = captures
        .iter()
        .filter(|c| c.arp == Some(ARP_REQUEST) && c.src == sender)
        .collect();
    seen.sort_by_key(|c| c.ts_ns);
    let Some(first) = seen.first().copied() else {
        return Vec::new();
    };
    let window_end = first.ts_ns + JOURNEY_WINDOW.as_nanos();
    collapse(seen.into_iter().filter(|c| c.ts_ns <= window_end), |c| {
        Some(format!("arp who-has {}", c.dst))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(ts: u128, point: &str, sport: u16, dport: u16, flags: u8, ip_id: u16) -> Capture {
        Capture {
            ts_ns: ts,
            ns: "ns".into(),
            ifname: "eth0".into(),
            outgoing: false,
            point: point.into(),
            vlan: None,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            proto: PROTO_TCP,
            sport,
            dport,
            icmp_id: None,
            encap: None,
            tcp_flags: Some(flags),
            icmp_type: None,
            ip_id,
            arp: None,
            frame: vec![],
        }
    }

    const SYN: u8 = TCP_SYN;
    const SYNACK: u8 = TCP_SYN | TCP_ACK;
    const ACK: u8 = TCP_ACK;

    fn points(h: &[Hop]) -> Vec<&str> {
        h.iter().map(|h| h.point.as_str()).collect()
    }

    #[test]
    fn orders_collapses_and_splits_directions() {
        let caps = vec![
            cap(30, "b", 4000, 80, SYN, 7),
            cap(10, "a", 4000, 80, SYN, 7),
            cap(20, "r", 4000, 80, SYN, 7),
            cap(21, "r", 4000, 80, SYN, 7),
            cap(40, "b", 80, 4000, SYNACK, 0),
            cap(50, "r", 80, 4000, SYNACK, 0),
            cap(60, "a", 80, 4000, SYNACK, 0),
            cap(70, "a", 4000, 80, ACK, 8),
            cap(5, "x", 4001, 80, SYN, 1),
        ];
        let (req, rep) = hops(&caps, Proto::Tcp, 4000);
        assert_eq!(points(&req), ["a", "r", "b"]);
        assert_eq!(points(&rep), ["b", "r", "a"]);
    }

    #[test]
    fn a_point_seen_again_later_is_a_new_hop() {
        let caps = vec![
            cap(1, "node", 4000, 80, SYN, 1),
            cap(2, "vpc", 4000, 80, SYN, 1),
            cap(3, "node", 4000, 80, SYN, 1),
        ];
        assert_eq!(
            points(&hops(&caps, Proto::Tcp, 4000).0),
            ["node", "vpc", "node"]
        );
    }

    #[test]
    fn retransmitted_syn_is_not_more_hops() {
        let second = 1_000_000_000;
        let caps = vec![
            cap(1, "a", 4000, 80, SYN, 100),
            cap(2, "r", 4000, 80, SYN, 100),
            cap(second, "a", 4000, 80, SYN, 101),
            cap(second + 1, "r", 4000, 80, SYN, 101),
            cap(second + 2, "b", 4000, 80, SYN, 101),
        ];
        assert_eq!(points(&hops(&caps, Proto::Tcp, 4000).0), ["a", "r"]);
    }

    #[test]
    fn one_vlan_notation() {
        let mut h = Hop {
            point: "trunk/n1".into(),
            vlan: Some(1027),
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            encap: None,
        };
        assert_eq!(h.label("trunk/n1"), "trunk/n1@vlan=1027");
        h.vlan = None;
        h.encap = Some("vxlan".into());
        assert_eq!(h.label("eth0/n1"), "eth0/n1 (vxlan)");
    }

    #[test]
    fn merges_vlan_and_encap_seen_at_one_point() {
        let mut c1 = cap(1, "node", 4000, 80, SYN, 1);
        let mut c2 = cap(2, "node", 4000, 80, SYN, 1);
        c1.src = Ipv4Addr::new(10, 0, 0, 9);
        c2.vlan = Some(5);
        c2.encap = Some("vxlan x".into());
        let (req, _) = hops(&[c1, c2], Proto::Tcp, 4000);
        assert_eq!(req.len(), 1);
        assert_eq!(
            (req[0].src, req[0].vlan, req[0].encap.as_deref()),
            (Ipv4Addr::new(10, 0, 0, 9), Some(5), Some("vxlan x"))
        );
    }

    #[test]
    fn unanswered_arp_is_followed_from_its_sender() {
        let who_has = |ts: u128, point: &str, sender: u8, vlan: Option<u16>| {
            let mut c = cap(ts, point, 0, 0, 0, 0);
            (c.arp, c.proto, c.tcp_flags, c.vlan) = (Some(ARP_REQUEST), 0, None, vlan);
            c.src = Ipv4Addr::new(10, 0, 4, sender);
            c.dst = Ipv4Addr::new(10, 0, 4, 1);
            c
        };
        let caps = vec![
            who_has(1, "pod", 70, None),
            who_has(2, "trunk", 70, Some(300)),
            who_has(3, "hv", 70, Some(300)),
            who_has(4, "other", 9, None),
            who_has(1_000_000_000, "pod", 70, None),
        ];
        assert_eq!(hops(&caps, Proto::Tcp, 0), (vec![], vec![]));
        let h = arp_hops(&caps, Ipv4Addr::new(10, 0, 4, 70));
        assert_eq!(points(&h), ["pod", "trunk", "hv"]);
        assert_eq!(h[1].label("trunk"), "trunk@vlan=300 (arp who-has 10.0.4.1)");
    }

    #[test]
    fn icmp_uses_echo_identifier() {
        let mut req = cap(1, "a", 0, 0, 0, 3);
        (req.proto, req.tcp_flags, req.icmp_type, req.icmp_id) =
            (PROTO_ICMP, None, Some(ICMP_ECHO_REQUEST), Some(99));
        let mut rep = req.clone();
        (rep.ts_ns, rep.point, rep.icmp_type) = (2, "b".into(), Some(ICMP_ECHO_REPLY));
        let (a, b) = hops(&[req, rep], Proto::Icmp, 99);
        assert_eq!((points(&a), points(&b)), (vec!["a"], vec!["b"]));
        assert_eq!(hops(&[], Proto::Icmp, 99), (vec![], vec![]));
    }
}
