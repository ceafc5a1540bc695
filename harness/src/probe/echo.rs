//! Echo servers: one TCP listener and/or UDP socket per `ServerPlan`, created
//! inside the plan's namespace and served by one small tokio runtime, so
//! thousands of servers cost tasks, not threads.
//!
//! Wire protocol: the client sends `CNLAB <probe-id>\n`; the server answers
//! one JSON line (`EchoReply`) and closes. UDP: one datagram each way.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{sys, ProbeError};
use crate::kernel::NetNs;
use crate::plan::proxy::healthcheck::proxier_reply;
use crate::plan::{HttpServe, ServerPlan};

/// First word of a probe request line.
pub const REQUEST_PREFIX: &str = "CNLAB ";
/// Longest request line a server reads.
const MAX_REQUEST: usize = 512;
/// How long a server waits for the request line of an accepted connection.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What an echo server answers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EchoReply {
    pub probe: String,
    pub served_by: String,
    /// `ip:port` the server saw the request come from.
    pub peer: String,
    /// `ip:port` the request was accepted on.
    pub local: String,
}

impl EchoReply {
    pub fn to_line(&self) -> String {
        // Serialising four strings cannot fail; fall back to an empty object anyway.
        let mut s = serde_json::to_string(self).unwrap_or_else(|_| "{}".into());
        s.push('\n');
        s
    }
}

/// The probe id in a request (`CNLAB <id>`, newline optional), if well formed.
pub fn parse_request(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    let line = text.split('\n').next()?.trim_end_matches('\r');
    let id = line.strip_prefix(REQUEST_PREFIX)?;
    let ok = !id.is_empty() && id.len() <= 256 && id.chars().all(|c| !c.is_control());
    ok.then(|| id.to_string())
}

/// Running echo servers. Dropping it closes every socket.
pub struct EchoServers {
    rt: Option<tokio::runtime::Runtime>,
    count: usize,
}

/// Sockets of one server, made inside its namespace.
struct Sockets {
    tcp: Option<std::net::TcpListener>,
    udp: Option<std::net::UdpSocket>,
}

impl EchoServers {
    /// Starts every server; fails (and stops the ones started) on the first
    /// socket that cannot be set up.
    pub fn start(servers: &[(&NetNs, ServerPlan)]) -> Result<EchoServers, ProbeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cnlab-echo")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| ProbeError::Runtime {
                what: "starting the echo server runtime",
                source,
            })?;
        let mut me = EchoServers {
            rt: Some(rt),
            count: 0,
        };
        // One trip into each namespace for all of its servers.
        let mut by_ns: BTreeMap<&str, (&NetNs, Vec<&ServerPlan>)> = BTreeMap::new();
        for (ns, plan) in servers {
            by_ns
                .entry(ns.name())
                .or_insert_with(|| (ns, Vec::new()))
                .1
                .push(plan);
        }
        for (ns, plans) in by_ns.values() {
            me.add_many(ns, plans)?;
        }
        Ok(me)
    }

    /// Starts one more server.
    pub fn add(&mut self, ns: &NetNs, s: &ServerPlan) -> Result<(), ProbeError> {
        self.add_many(ns, &[s])
    }

    /// Number of servers running.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn add_many(&mut self, ns: &NetNs, plans: &[&ServerPlan]) -> Result<(), ProbeError> {
        let made: Vec<Sockets> = ns.run(|| {
            plans
                .iter()
                .map(|p| make_sockets(ns.name(), p))
                .collect::<Result<Vec<_>, _>>()
        })??;
        let Some(rt) = self.rt.as_ref() else {
            return Ok(());
        };
        let _entered = rt.enter();
        for (plan, socks) in plans.iter().zip(made) {
            let identity: Arc<str> = Arc::from(plan.identity.as_str());
            let err = |proto, source| ProbeError::Server {
                ns: ns.name().to_string(),
                identity: plan.identity.clone(),
                port: plan.port,
                proto,
                what: "registering with the runtime",
                source,
            };
            if let Some(l) = socks.tcp {
                let l = tokio::net::TcpListener::from_std(l).map_err(|e| err("tcp", e))?;
                match &plan.http {
                    Some(serve) => {
                        rt.spawn(serve_http(l, Arc::new(serve.clone())));
                    }
                    None => {
                        rt.spawn(serve_tcp(l, identity.clone()));
                    }
                }
            }
            if let Some(u) = socks.udp {
                let u = tokio::net::UdpSocket::from_std(u).map_err(|e| err("udp", e))?;
                rt.spawn(serve_udp(u, identity, plan.port));
            }
            self.count += 1;
        }
        Ok(())
    }
}

impl Drop for EchoServers {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            // Blocking on shutdown inside an async context panics; there,
            // let the sockets close in the background.
            if tokio::runtime::Handle::try_current().is_ok() {
                rt.shutdown_background();
            } else {
                rt.shutdown_timeout(Duration::from_secs(2));
            }
        }
    }
}

/// Creates the plan's sockets on the calling thread (which is inside `ns`).
fn make_sockets(ns: &str, plan: &ServerPlan) -> Result<Sockets, ProbeError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let any = SocketAddr::from((plan.bind.unwrap_or(Ipv4Addr::UNSPECIFIED), plan.port));
    let err = |proto, what, source| ProbeError::Server {
        ns: ns.to_string(),
        identity: plan.identity.clone(),
        port: plan.port,
        proto,
        what,
        source,
    };
    let mut out = Sockets {
        tcp: None,
        udp: None,
    };
    if plan.tcp {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| err("tcp", "socket", e))?;
        s.set_reuse_address(true)
            .map_err(|e| err("tcp", "SO_REUSEADDR", e))?;
        s.bind(&any.into()).map_err(|e| err("tcp", "bind", e))?;
        s.listen(1024).map_err(|e| err("tcp", "listen", e))?;
        s.set_nonblocking(true)
            .map_err(|e| err("tcp", "non-blocking", e))?;
        out.tcp = Some(s.into());
    }
    if plan.udp {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| err("udp", "socket", e))?;
        s.set_reuse_address(true)
            .map_err(|e| err("udp", "SO_REUSEADDR", e))?;
        sys::enable_pktinfo(s.as_raw_fd()).map_err(|e| err("udp", "IP_PKTINFO", e))?;
        s.bind(&any.into()).map_err(|e| err("udp", "bind", e))?;
        s.set_nonblocking(true)
            .map_err(|e| err("udp", "non-blocking", e))?;
        out.udp = Some(s.into());
    }
    Ok(out)
}

async fn serve_tcp(listener: tokio::net::TcpListener, identity: Arc<str>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(answer_tcp(stream, peer, identity.clone()));
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::debug!(identity = %identity, "accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn answer_tcp(mut stream: tokio::net::TcpStream, peer: SocketAddr, identity: Arc<str>) {
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut buf = Vec::with_capacity(64);
    let read = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 256];
        while !buf.contains(&b'\n') && buf.len() < MAX_REQUEST {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    if read.is_ok() {
        if let Some(probe) = parse_request(&buf) {
            let reply = EchoReply {
                probe,
                served_by: identity.to_string(),
                peer: peer.to_string(),
                local: local.to_string(),
            };
            let _ = stream.write_all(reply.to_line().as_bytes()).await;
        }
    }
    let _ = stream.shutdown().await;
}

/// Reads one request (up to the blank line ending its headers), answers
/// it, closes. A fixed reply is the same bytes each time; kube-proxy's own
/// health server's is made now, from the request's path and the time.
async fn serve_http(listener: tokio::net::TcpListener, serve: Arc<HttpServe>) {
    let started = std::time::Instant::now();
    loop {
        match listener.accept().await {
            Ok((mut stream, _)) => {
                let serve = serve.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(256);
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, async {
                        let mut chunk = [0u8; 512];
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                            match stream.read(&mut chunk).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                    })
                    .await;
                    let reply = match serve.as_ref() {
                        HttpServe::Fixed(r) => r.to_bytes(),
                        HttpServe::ProxierHealth(h) => {
                            // `GET /path HTTP/1.1`
                            let head = String::from_utf8_lossy(&buf);
                            let path = head.split_whitespace().nth(1).unwrap_or("/");
                            proxier_reply(h, path, std::time::SystemTime::now(), started.elapsed())
                                .to_bytes()
                        }
                    };
                    let _ = stream.write_all(&reply).await;
                    let _ = stream.shutdown().await;
                });
            }
            Err(e) => {
                tracing::debug!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

async fn serve_udp(sock: tokio::net::UdpSocket, identity: Arc<str>, port: u16) {
    let fd = sock.as_raw_fd();
    let mut buf = vec![0u8; 2048];
    loop {
        let got = sock
            .async_io(Interest::READABLE, || sys::recv_with_pktinfo(fd, &mut buf))
            .await;
        let dgram = match got {
            Ok(d) => d,
            // A queued ICMP error from an earlier reply, or similar: keep serving.
            Err(e) => {
                if e.kind() != io::ErrorKind::ConnectionRefused {
                    tracing::debug!(identity = %identity, "udp recv: {e}");
                }
                continue;
            }
        };
        let Some(probe) = parse_request(&buf[..dgram.len]) else {
            continue;
        };
        let local = SocketAddrV4::new(dgram.dst.unwrap_or(Ipv4Addr::UNSPECIFIED), port);
        let reply = EchoReply {
            probe,
            served_by: identity.to_string(),
            peer: dgram.peer.to_string(),
            local: local.to_string(),
        }
        .to_line();
        // Answer from the address the request was sent to (a VIP bound on
        // this host, say), not whatever the route to the peer would pick.
        let sent = sock
            .async_io(Interest::WRITABLE, || {
                sys::send_from(fd, reply.as_bytes(), dgram.peer, dgram.dst)
            })
            .await;
        if let Err(e) = sent {
            tracing::debug!(identity = %identity, "udp reply to {}: {e}", dgram.peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests() {
        assert_eq!(parse_request(b"CNLAB p-1\n"), Some("p-1".into()));
        assert_eq!(parse_request(b"CNLAB p-1"), Some("p-1".into()));
        assert_eq!(parse_request(b"CNLAB p 2\r\nrest"), Some("p 2".into()));
        assert_eq!(parse_request(b"CNLAB \n"), None);
        assert_eq!(parse_request(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(parse_request(&[0xff, 0xfe]), None);
    }

    #[test]
    fn reply_is_one_json_line() {
        let r = EchoReply {
            probe: "p".into(),
            served_by: "pod/a/b".into(),
            peer: "1.2.3.4:5".into(),
            local: "5.6.7.8:80".into(),
        };
        let line = r.to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
        let back: EchoReply = serde_json::from_str(line.trim_end()).unwrap();
        assert_eq!(back, r);
    }
}
