//! Probes: one socket in the client namespace, a deadline, and a verdict
//! from what the kernel answered.
//!
//! - `connected`: TCP handshake (UDP: a reply) and a well-formed echo reply;
//! - `refused`: ECONNREFUSED (a RST, or ICMP port-unreachable — Linux reports
//!   both as ECONNREFUSED to a connecting TCP or a connected UDP socket;
//!   with IP_RECVERR the ICMP error is also queued on the socket's error
//!   queue, which tells the two apart: `refused_by`);
//! - `timeout`: anything else, with the reason in `detail`.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::echo::{EchoReply, REQUEST_PREFIX};
use super::icmp;
use crate::kernel::NetNs;
use crate::topology::model::{Proto, RefusedBy, Verdict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    /// Unique per probe; sent to the server and echoed back.
    pub id: String,
    pub proto: Proto,
    pub dst: Ipv4Addr,
    /// Destination port (ignored for ICMP).
    pub port: u16,
    /// TCP/UDP: local port to bind (so taps can pick the probe's packets
    /// out); ICMP: the echo identifier. None: the kernel (or a counter) picks.
    pub src_port: Option<u16>,
    pub deadline: Duration,
    /// TCP: send an HTTP GET and read the status line instead of the echo
    /// exchange (kube-proxy's health check node port).
    pub http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub verdict: Verdict,
    /// The client socket's own address (getsockname). ICMP: the address the
    /// echo reply was sent to, port 0.
    pub local: Option<SocketAddrV4>,
    /// The peer address the echo server reported.
    pub seen_peer: Option<SocketAddrV4>,
    pub served_by: Option<String>,
    /// `refused` only: a TCP RST or an ICMP port-unreachable.
    pub refused_by: Option<RefusedBy>,
    /// `http` probes: the response's status code.
    pub http_status: Option<u16>,
    pub detail: String,
    pub elapsed: Duration,
}

impl ProbeOutcome {
    pub(crate) fn timeout(detail: impl Into<String>) -> Self {
        ProbeOutcome {
            verdict: Verdict::Timeout,
            local: None,
            seen_peer: None,
            served_by: None,
            refused_by: None,
            http_status: None,
            detail: detail.into(),
            elapsed: Duration::ZERO,
        }
    }
    pub(crate) fn refused(by: RefusedBy, detail: impl Into<String>) -> Self {
        ProbeOutcome {
            verdict: Verdict::Refused,
            refused_by: Some(by),
            ..Self::timeout(detail)
        }
    }

    /// A refusal as the socket's error queue tells it: an ICMP
    /// port-unreachable queued there (IP_RECVERR), or else a RST.
    fn refused_on(fd: std::os::fd::RawFd) -> Self {
        match super::sys::take_icmp_error(fd) {
            Some(e) => Self::refused(
                RefusedBy::Icmp,
                format!(
                    "ICMP destination unreachable (type {} code {}) from {}",
                    e.icmp_type, e.code, e.from
                ),
            ),
            None => Self::refused(RefusedBy::Rst, "connection refused by a TCP RST"),
        }
    }
}

/// Runs one probe from inside `ns` and blocks until it has a verdict (at most
/// about `spec.deadline`; a TCP probe that connected gets the deadline again
/// for its exchange). Never panics: kernel errors become `timeout`.
pub fn probe(ns: &NetNs, spec: &ProbeSpec) -> ProbeOutcome {
    let start = Instant::now();
    let mut out = match ns.run(|| probe_here(spec, start)) {
        Ok(o) => o,
        Err(e) => ProbeOutcome::timeout(format!("probe could not run: {e}")),
    };
    out.elapsed = start.elapsed();
    out
}

/// Runs the probe on the calling thread, in whatever namespace it is in.
pub fn probe_here(spec: &ProbeSpec, start: Instant) -> ProbeOutcome {
    let deadline = start + spec.deadline;
    let mut out = match spec.proto {
        Proto::Tcp => probe_tcp(spec, deadline),
        Proto::Udp => probe_udp(spec, deadline),
        Proto::Icmp => icmp::probe_icmp(spec, deadline),
        Proto::All => {
            ProbeOutcome::timeout("a probe needs one protocol (tcp, udp or icmp), not all")
        }
    };
    out.elapsed = start.elapsed();
    out
}

/// Time left until `deadline`, at least 1 ms (a zero timeout means "forever"
/// to SO_RCVTIMEO).
fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Words for the errors a probe socket meets.
pub(crate) fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EHOSTUNREACH) => "no route to host".into(),
        Some(libc::ENETUNREACH) => "network unreachable".into(),
        Some(libc::ECONNREFUSED) => "connection refused".into(),
        Some(libc::ECONNRESET) => "connection reset".into(),
        Some(libc::EACCES) | Some(libc::EPERM) => format!("not permitted ({e})"),
        _ => e.to_string(),
    }
}

fn new_socket(spec: &ProbeSpec, ty: Type, proto: Protocol) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV4, ty, Some(proto))?;
    if let Some(p) = spec.src_port {
        s.set_reuse_address(true)?;
        s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)).into())?;
    }
    Ok(s)
}

fn local_of(s: &Socket) -> Option<SocketAddrV4> {
    s.local_addr().ok().and_then(|a| a.as_socket_ipv4())
}

fn request_line(spec: &ProbeSpec) -> String {
    format!("{REQUEST_PREFIX}{}\n", spec.id)
}

/// Checks an echo reply line against the probe; the outcome when it is good.
fn judge_reply(
    spec: &ProbeSpec,
    line: &[u8],
    local: Option<SocketAddrV4>,
) -> Result<ProbeOutcome, String> {
    let text = std::str::from_utf8(line).map_err(|_| "reply is not text".to_string())?;
    let reply: EchoReply = serde_json::from_str(text.trim_end())
        .map_err(|e| format!("reply is not an echo reply ({e})"))?;
    if reply.probe != spec.id {
        return Err(format!(
            "reply is for probe {:?}, not this one",
            reply.probe
        ));
    }
    let seen_peer: Option<SocketAddrV4> = reply.peer.parse().ok();
    if seen_peer.is_none() {
        return Err(format!("reply names no valid peer ({:?})", reply.peer));
    }
    let detail = format!("served by {} which saw {}", reply.served_by, reply.peer);
    Ok(ProbeOutcome {
        verdict: Verdict::Connected,
        local,
        seen_peer,
        served_by: Some(reply.served_by),
        refused_by: None,
        http_status: None,
        detail,
        elapsed: Duration::ZERO,
    })
}

fn probe_tcp(spec: &ProbeSpec, deadline: Instant) -> ProbeOutcome {
    let dst = SockAddr::from(SocketAddrV4::new(spec.dst, spec.port));
    let sock = match new_socket(spec, Type::STREAM, Protocol::TCP) {
        Ok(s) => s,
        Err(e) => {
            return ProbeOutcome::timeout(format!(
                "could not open the probe socket: {}",
                describe(&e)
            ))
        }
    };
    // Queue ICMP errors on the socket so a refusal says whether it was a
    // RST or ICMP port-unreachable.
    if let Err(e) = super::sys::enable_recverr(sock.as_raw_fd()) {
        return ProbeOutcome::timeout(format!("could not enable IP_RECVERR: {e}"));
    }
    if let Err(e) = sock.connect_timeout(&dst, remaining(deadline)) {
        return match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ProbeOutcome::refused_on(sock.as_raw_fd()),
            _ if e.kind() == io::ErrorKind::TimedOut => ProbeOutcome::timeout(format!(
                "no answer to the handshake within {} ms",
                ms(spec.deadline)
            )),
            _ => ProbeOutcome::timeout(describe(&e)),
        };
    }
    let local = local_of(&sock);
    // The exchange gets its own budget from the moment the handshake
    // completed. Connect and reply used to share one deadline, so a SYN
    // retransmitted on a loaded machine (the initial RTO is 1 s) left the
    // echo reply ~0.2 s and a working connection was reported as
    // "connected but the reply did not come". A dataplane that really loses
    // the data after the handshake still ends in a timeout, just later.
    let deadline = Instant::now() + spec.deadline;
    if spec.http {
        return match exchange_http(spec, &sock, deadline) {
            Ok((status, text)) => ProbeOutcome {
                verdict: Verdict::Connected,
                local,
                http_status: Some(status),
                detail: text,
                ..ProbeOutcome::timeout("")
            },
            Err(why) => ProbeOutcome {
                local,
                ..ProbeOutcome::timeout(format!("connected but {why}"))
            },
        };
    }
    match exchange_tcp(spec, &sock, deadline) {
        Ok(line) => judge_reply(spec, &line, local).unwrap_or_else(|why| ProbeOutcome {
            local,
            ..ProbeOutcome::timeout(format!("connected but {why}"))
        }),
        Err(why) => ProbeOutcome {
            local,
            ..ProbeOutcome::timeout(format!("connected but {why}"))
        },
    }
}

/// Sends the request line and reads the reply line before `deadline`.
fn exchange_tcp(spec: &ProbeSpec, sock: &Socket, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut sock = sock;
    sock.set_write_timeout(Some(remaining(deadline)))
        .map_err(|e| format!("setting a send timeout failed: {e}"))?;
    sock.write_all(request_line(spec).as_bytes())
        .map_err(|e| format!("sending the request failed: {}", describe(&e)))?;
    let mut line = Vec::with_capacity(160);
    let mut chunk = [0u8; 512];
    loop {
        if Instant::now() >= deadline {
            return Err(format!(
                "the reply did not come within {} ms of connecting",
                ms(spec.deadline)
            ));
        }
        sock.set_read_timeout(Some(remaining(deadline)))
            .map_err(|e| format!("setting a receive timeout failed: {e}"))?;
        match sock.read(&mut chunk) {
            Ok(0) if line.is_empty() => return Err("the server closed without a reply".into()),
            Ok(0) => return Err("the reply ended without a newline".into()),
            Ok(n) => {
                line.extend_from_slice(&chunk[..n]);
                if let Some(end) = line.iter().position(|b| *b == b'\n') {
                    line.truncate(end);
                    return Ok(line);
                }
                if line.len() > 4096 {
                    return Err("the reply is not a line".into());
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the reply did not come within {} ms of connecting",
                    ms(spec.deadline)
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading the reply failed: {}", describe(&e))),
        }
    }
}

/// `GET /healthz` (kube-proxy's service health handler answers any path),
/// then the whole response until the server closes: its status code and
/// the response as text.
fn exchange_http(
    spec: &ProbeSpec,
    sock: &Socket,
    deadline: Instant,
) -> Result<(u16, String), String> {
    let mut sock = sock;
    let req = format!(
        "GET /healthz HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: cnlab\r\nConnection: close\r\n\r\n",
        spec.dst, spec.port
    );
    sock.set_write_timeout(Some(remaining(deadline)))
        .map_err(|e| format!("setting a send timeout failed: {e}"))?;
    sock.write_all(req.as_bytes())
        .map_err(|e| format!("sending the request failed: {}", describe(&e)))?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        sock.set_read_timeout(Some(remaining(deadline)))
            .map_err(|e| format!("setting a receive timeout failed: {e}"))?;
        match sock.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) if got.len() < 65536 => got.extend_from_slice(&chunk[..n]),
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if got.is_empty() => return Err(format!("no HTTP response: {}", describe(&e))),
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text
        .lines()
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            format!(
                "the reply is not an HTTP response ({:?})",
                text.lines().next().unwrap_or("")
            )
        })?;
    Ok((status, text))
}

fn probe_udp(spec: &ProbeSpec, deadline: Instant) -> ProbeOutcome {
    let dst = SockAddr::from(SocketAddrV4::new(spec.dst, spec.port));
    let sock = match new_socket(spec, Type::DGRAM, Protocol::UDP) {
        Ok(s) => s,
        Err(e) => {
            return ProbeOutcome::timeout(format!(
                "could not open the probe socket: {}",
                describe(&e)
            ))
        }
    };
    // A connected UDP socket gets ICMP errors (port unreachable →
    // ECONNREFUSED) and only datagrams from `dst`. Without IP_RECVERR Linux
    // keeps quiet about net/host unreachable for UDP; with it, recv reports
    // them and the probe can say why nothing will come.
    if let Err(e) = super::sys::enable_recverr(sock.as_raw_fd()) {
        return ProbeOutcome::timeout(format!("could not enable IP_RECVERR: {e}"));
    }
    if let Err(e) = sock.connect(&dst) {
        return ProbeOutcome::timeout(describe(&e));
    }
    let local = local_of(&sock);
    let with_local = |o: ProbeOutcome| ProbeOutcome { local, ..o };
    if let Err(e) = sock.send(request_line(spec).as_bytes()) {
        return with_local(match e.raw_os_error() {
            Some(libc::ECONNREFUSED) => ProbeOutcome::refused_on(sock.as_raw_fd()),
            _ => ProbeOutcome::timeout(format!("sending the request failed: {}", describe(&e))),
        });
    }
    let mut last_problem = None;
    let mut buf = [0u8; 2048];
    loop {
        if Instant::now() >= deadline {
            let why = last_problem.map(|p| format!(" ({p})")).unwrap_or_default();
            return with_local(ProbeOutcome::timeout(format!(
                "no answer within {} ms{why}",
                ms(spec.deadline)
            )));
        }
        if let Err(e) = sock.set_read_timeout(Some(remaining(deadline))) {
            return with_local(ProbeOutcome::timeout(format!(
                "setting a receive timeout failed: {e}"
            )));
        }
        match (&sock).read(&mut buf) {
            Ok(n) => {
                let line = buf[..n].split(|b| *b == b'\n').next().unwrap_or(&[]);
                match judge_reply(spec, line, local) {
                    Ok(o) => return o,
                    // A stale reply for an earlier probe from the same port,
                    // or garbage: keep waiting for ours.
                    Err(why) => last_problem = Some(why),
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => {
                return with_local(ProbeOutcome::refused_on(sock.as_raw_fd()))
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let from = super::sys::take_icmp_error_origin(sock.as_raw_fd())
                    .map(|a| format!(" (ICMP from {a})"))
                    .unwrap_or_default();
                return with_local(ProbeOutcome::timeout(format!("{}{from}", describe(&e))));
            }
        }
    }
}
