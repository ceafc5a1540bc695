//! ICMP echo probes on a raw socket.
//!
//! A raw ICMP socket gets a copy of every ICMP packet of its namespace, so
//! the probe picks its own out by echo identifier and sequence number — also
//! inside the original datagram an ICMP error quotes. The socket is not
//! connected: that would hide errors sent by a router on the way.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use super::client::{describe, ProbeOutcome, ProbeSpec};
use crate::topology::model::{RefusedBy, Verdict};

const ECHO_REPLY: u8 = 0;
const DEST_UNREACH: u8 = 3;
const ECHO_REQUEST: u8 = 8;
const TIME_EXCEEDED: u8 = 11;
const CODE_PROTO_UNREACH: u8 = 2;
const CODE_PORT_UNREACH: u8 = 3;

static NEXT_SEQ: AtomicU16 = AtomicU16::new(1);

/// Identifier for a probe that did not ask for one: distinct per process
/// and per probe, so parallel probes do not take each other's replies.
fn fresh_ident(seq: u16) -> u16 {
    (std::process::id() as u16)
        .wrapping_mul(7919)
        .wrapping_add(seq)
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

pub(crate) fn echo_request(ident: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![ECHO_REQUEST, 0, 0, 0];
    p.extend_from_slice(&ident.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(payload);
    let c = checksum(&p);
    p[2..4].copy_from_slice(&c.to_be_bytes());
    p
}

/// An IPv4 packet's (src, dst, protocol, payload), if it is one.
fn ipv4(packet: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, &[u8])> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    if packet.first()? >> 4 != 4 || ihl < 20 || packet.len() < ihl {
        return None;
    }
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    Some((addr(12), addr(16), packet[9], &packet[ihl..]))
}

fn echo_fields(icmp: &[u8]) -> Option<(u8, u16, u16)> {
    (icmp.len() >= 8).then(|| {
        (
            icmp[0],
            u16::from_be_bytes([icmp[4], icmp[5]]),
            u16::from_be_bytes([icmp[6], icmp[7]]),
        )
    })
}

/// What one received packet means for the probe (None: not ours).
fn judge(packet: &[u8], dst: Ipv4Addr, ident: u16, seq: u16) -> Option<ProbeOutcome> {
    let (src, to, proto, icmp) = ipv4(packet)?;
    if proto != 1 || icmp.len() < 8 {
        return None;
    }
    let (kind, code) = (icmp[0], icmp[1]);
    match kind {
        ECHO_REPLY => {
            let (_, id, sq) = echo_fields(icmp)?;
            // A reply from another address than the one probed is not an answer.
            (id == ident && sq == seq && src == dst).then(|| ProbeOutcome {
                verdict: Verdict::Connected,
                local: Some(SocketAddrV4::new(to, 0)),
                detail: format!("echo reply from {src}"),
                ..ProbeOutcome::timeout("")
            })
        }
        DEST_UNREACH | TIME_EXCEEDED => {
            // The error quotes our request: its IP header and first 8 bytes.
            let (_, quoted_dst, quoted_proto, quoted) = ipv4(&icmp[8..])?;
            let (qkind, id, sq) = echo_fields(quoted)?;
            if quoted_proto != 1
                || qkind != ECHO_REQUEST
                || id != ident
                || sq != seq
                || quoted_dst != dst
            {
                return None;
            }
            Some(match (kind, code) {
                (DEST_UNREACH, CODE_PORT_UNREACH) => ProbeOutcome::refused(
                    RefusedBy::Icmp,
                    format!("ICMP port unreachable from {src}"),
                ),
                (DEST_UNREACH, CODE_PROTO_UNREACH) => ProbeOutcome::refused(
                    RefusedBy::Icmp,
                    format!("ICMP protocol unreachable from {src}"),
                ),
                (DEST_UNREACH, c) => ProbeOutcome::timeout(format!(
                    "ICMP destination unreachable (code {c}) from {src}"
                )),
                _ => ProbeOutcome::timeout(format!("ICMP time exceeded from {src}")),
            })
        }
        _ => None,
    }
}

pub(crate) fn probe_icmp(spec: &ProbeSpec, deadline: Instant) -> ProbeOutcome {
    let seq = NEXT_SEQ.fetch_add(1, Ordering::Relaxed);
    let ident = spec.src_port.unwrap_or_else(|| fresh_ident(seq));
    let sock = match Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)) {
        Ok(s) => s,
        Err(e) => {
            return ProbeOutcome::timeout(format!(
                "could not open a raw ICMP socket: {}",
                describe(&e)
            ))
        }
    };
    let request = echo_request(ident, seq, format!("CNLAB {}", spec.id).as_bytes());
    if let Err(e) = sock.send_to(&request, &SockAddr::from(SocketAddrV4::new(spec.dst, 0))) {
        return ProbeOutcome::timeout(describe(&e));
    }
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return ProbeOutcome::timeout(format!(
                "no echo reply within {} ms",
                spec.deadline.as_millis()
            ));
        }
        if let Err(e) = sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))) {
            return ProbeOutcome::timeout(format!("setting a receive timeout failed: {e}"));
        }
        match (&sock).read(&mut buf) {
            Ok(n) => {
                if let Some(out) = judge(&buf[..n], spec.dst, ident, seq) {
                    return out;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return ProbeOutcome::timeout(describe(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn request_checksum_verifies() {
        let r = echo_request(0x1234, 7, b"CNLAB x");
        assert_eq!(checksum(&r), 0);
        assert_eq!(echo_fields(&r), Some((ECHO_REQUEST, 0x1234, 7)));
    }

    #[test]
    fn judges_replies_and_errors() {
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        let mut reply = echo_request(9, 3, b"x");
        reply[0] = ECHO_REPLY;
        let pkt = ip([10, 0, 0, 2], [10, 0, 0, 1], &reply);
        let out = judge(&pkt, dst, 9, 3).unwrap();
        assert_eq!(out.verdict, Verdict::Connected);
        assert_eq!(
            out.local,
            Some(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 0))
        );
        assert!(
            judge(&pkt, dst, 10, 3).is_none(),
            "another identifier is not ours"
        );
        assert!(
            judge(&ip([10, 0, 0, 9], [10, 0, 0, 1], &reply), dst, 9, 3).is_none(),
            "wrong source"
        );

        let quoted = ip([10, 0, 0, 1], [10, 0, 0, 2], &echo_request(9, 3, b""));
        let mut err = vec![DEST_UNREACH, CODE_PORT_UNREACH, 0, 0, 0, 0, 0, 0];
        err.extend_from_slice(&quoted);
        let out = judge(&ip([10, 0, 0, 254], [10, 0, 0, 1], &err), dst, 9, 3).unwrap();
        assert_eq!(out.verdict, Verdict::Refused);
        err[1] = 1; // host unreachable
        let out = judge(&ip([10, 0, 0, 254], [10, 0, 0, 1], &err), dst, 9, 3).unwrap();
        assert_eq!(out.verdict, Verdict::Timeout);
        assert!(out.detail.contains("10.0.0.254"), "{}", out.detail);
    }
}
