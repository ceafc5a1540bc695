//! Frames to flows: Ethernet (802.1Q tags included), IPv4, TCP/UDP/ICMP, and
//! the inner flow of VXLAN-encapsulated frames.

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};
use std::net::Ipv4Addr;

/// UDP ports VXLAN is carried on: IANA's and the Linux/Flannel default.
pub const VXLAN_PORTS: [u16; 2] = [4789, 8472];

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits (`Decoded::tcp_flags`).
pub const TCP_SYN: u8 = 0x02;
pub const TCP_ACK: u8 = 0x10;

/// ICMP types with an echo identifier.
pub const ICMP_ECHO_REPLY: u8 = 0;
pub const ICMP_ECHO_REQUEST: u8 = 8;

/// The IPv4 flow one frame carries (the inner one for VXLAN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// VLAN id of the (outermost) 802.1Q tag inside the frame.
    pub vlan: Option<u16>,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// IPv4 identification: the same packet keeps it across routers and NAT.
    pub ip_id: u16,
    pub sport: u16,
    pub dport: u16,
    pub tcp_flags: Option<u8>,
    pub icmp_type: Option<u8>,
    /// Echo request/reply identifier.
    pub icmp_id: Option<u16>,
    /// `vxlan <outer src>→<outer dst>:<port> vni <n>` when the flow was
    /// found inside a VXLAN packet.
    pub encap: Option<String>,
    /// An ARP frame (`decode_arp`): its operation (1 request, 2 reply);
    /// `src`/`dst` are then the sender's and the target's addresses.
    pub arp: Option<u16>,
}

/// Decodes an Ethernet frame; None for anything that carries no IPv4
/// (ARP, IPv6, LLDP, a frame cut too short to show its addresses).
pub fn decode_frame(frame: &[u8]) -> Option<Decoded> {
    decode(frame, true)
}

fn decode(frame: &[u8], look_inside: bool) -> Option<Decoded> {
    // Lax: frames may be cut short or carry checksums left to offload.
    let pkt = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let vlan = pkt.vlan_ids().first().map(|v| v.value());
    let Some(LaxNetSlice::Ipv4(ip)) = &pkt.net else {
        return None;
    };
    let h = ip.header();
    let mut d = Decoded {
        // The transport's protocol: after IPv4 extension headers (AH) the
        // header's own field names the extension, not what follows.
        // (Found by the decode fuzz target: fuzz/corpus/decode/crash-ah-then-icmp.)
        proto: ip.payload_ip_number().0,
        ip_id: h.identification(),
        ..Decoded::between(vlan, h.source_addr(), h.destination_addr())
    };
    match &pkt.transport {
        Some(TransportSlice::Tcp(t)) => {
            d.sport = t.source_port();
            d.dport = t.destination_port();
            d.tcp_flags = t.header_slice().get(13).copied();
        }
        Some(TransportSlice::Udp(u)) => {
            d.sport = u.source_port();
            d.dport = u.destination_port();
            if look_inside && VXLAN_PORTS.contains(&d.dport) {
                if let Some(inner) = vxlan_inner(u.payload(), &d) {
                    return Some(inner);
                }
            }
        }
        Some(TransportSlice::Icmpv4(i)) => {
            let kind = i.type_u8();
            d.icmp_type = Some(kind);
            if kind == ICMP_ECHO_REQUEST || kind == ICMP_ECHO_REPLY {
                let b = i.bytes5to8();
                d.icmp_id = Some(u16::from_be_bytes([b[0], b[1]]));
            }
        }
        _ => {}
    }
    Some(d)
}

/// An IPv4 ARP frame (802.1Q tags included) as a flow from the sender's
/// address to the target's. A probe whose first packet never leaves (its
/// next hop does not answer ARP) is followed by its ARP requests.
pub fn decode_arp(frame: &[u8]) -> Option<Decoded> {
    let pkt = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let Some(LaxNetSlice::Arp(arp)) = &pkt.net else {
        return None;
    };
    let v4 = |b: &[u8]| <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from);
    Some(Decoded {
        arp: Some(arp.operation().0),
        ..Decoded::between(
            pkt.vlan_ids().first().map(|v| v.value()),
            v4(arp.sender_protocol_addr())?,
            v4(arp.target_protocol_addr())?,
        )
    })
}

impl Decoded {
    /// `src` to `dst`, nothing known about what it carries yet.
    fn between(vlan: Option<u16>, src: Ipv4Addr, dst: Ipv4Addr) -> Decoded {
        Decoded {
            vlan,
            src,
            dst,
            proto: 0,
            ip_id: 0,
            sport: 0,
            dport: 0,
            tcp_flags: None,
            icmp_type: None,
            icmp_id: None,
            encap: None,
            arp: None,
        }
    }
}

/// The inner flow of a VXLAN payload (8-byte header, then an Ethernet frame).
fn vxlan_inner(payload: &[u8], outer: &Decoded) -> Option<Decoded> {
    let header = payload.get(..8)?;
    // Flags: the I bit says the VNI is valid.
    if header[0] & 0x08 == 0 {
        return None;
    }
    let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
    let mut inner = decode(&payload[8..], false)?;
    inner.encap = Some(format!(
        "vxlan {}→{}:{} vni {vni}",
        outer.src, outer.dst, outer.dport
    ));
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, VlanId};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    fn udp_frame(
        vlan: Option<u16>,
        src: [u8; 4],
        dst: [u8; 4],
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2(MAC_A, MAC_B);
        let mut out = Vec::new();
        match vlan {
            Some(v) => eth
                .single_vlan(VlanId::try_new(v).unwrap())
                .ipv4(src, dst, 64)
                .udp(sport, dport)
                .write(&mut out, payload),
            None => eth
                .ipv4(src, dst, 64)
                .udp(sport, dport)
                .write(&mut out, payload),
        }
        .unwrap();
        out
    }

    #[test]
    fn decodes_tcp_syn() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 1000)
            .syn()
            .write(&mut out, &[])
            .unwrap();
        let d = decode_frame(&out).unwrap();
        assert_eq!(
            (d.src, d.dst, d.proto, d.sport, d.dport),
            (
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                PROTO_TCP,
                40000,
                80
            )
        );
        assert_eq!(d.tcp_flags, Some(TCP_SYN));
        assert_eq!((d.vlan, d.encap), (None, None));
    }

    #[test]
    fn decodes_vlan_tag_in_frame() {
        let d = decode_frame(&udp_frame(
            Some(5),
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1,
            2,
            b"x",
        ))
        .unwrap();
        assert_eq!(d.vlan, Some(5));
        assert_eq!((d.sport, d.dport), (1, 2));
    }

    #[test]
    fn decodes_icmp_echo_id() {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(777, 1)
            .write(&mut out, b"hi")
            .unwrap();
        let d = decode_frame(&out).unwrap();
        assert_eq!(
            (d.proto, d.icmp_type, d.icmp_id),
            (PROTO_ICMP, Some(ICMP_ECHO_REQUEST), Some(777))
        );
    }

    #[test]
    fn reports_inner_flow_of_vxlan() {
        let inner = udp_frame(None, [10, 244, 1, 2], [10, 244, 2, 3], 5555, 53, b"q");
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
        vx.extend_from_slice(&inner);
        let outer = udp_frame(None, [192, 168, 0, 1], [192, 168, 0, 2], 33333, 8472, &vx);
        let d = decode_frame(&outer).unwrap();
        assert_eq!(
            (d.src, d.dst, d.sport, d.dport),
            (
                Ipv4Addr::new(10, 244, 1, 2),
                Ipv4Addr::new(10, 244, 2, 3),
                5555,
                53
            )
        );
        assert_eq!(
            d.encap.as_deref(),
            Some("vxlan 192.168.0.1→192.168.0.2:8472 vni 42")
        );
    }

    #[test]
    fn ignores_non_ipv4() {
        assert_eq!(decode_frame(&[0u8; 10]), None);
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0u8; 28]);
        assert_eq!(decode_frame(&arp), None);
        // Who has 10.0.4.1? Tell 10.0.4.70 (on VLAN 300).
        let mut tagged = vec![0xff; 6];
        tagged.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x81, 0x00, 0x01, 0x2c, 0x08, 0x06]);
        tagged.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1]);
        tagged.extend_from_slice(&[10, 0, 4, 70, 0, 0, 0, 0, 0, 0, 10, 0, 4, 1]);
        let d = decode_arp(&tagged).unwrap();
        assert_eq!(
            (d.vlan, d.arp, d.src, d.dst),
            (
                Some(300),
                Some(1),
                Ipv4Addr::new(10, 0, 4, 70),
                Ipv4Addr::new(10, 0, 4, 1)
            )
        );
        assert_eq!(decode_frame(&tagged), None);
        assert_eq!(decode_arp(&[0u8; 10]), None);
    }
}
