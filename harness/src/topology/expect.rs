//! The small languages inside `expect:` entries: who probes (`from`), what is
//! probed (`to`), which source address the server must see (`source`), and
//! observation point ids (`served_by`, `path`, `avoids`).

use std::fmt;
use std::net::Ipv4Addr;

use super::point::{name, ns_name, PointId};

/// How a Service is addressed by an expectation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceVia {
    /// `service/<ns>/<name>:<port>`
    ClusterIp,
    /// `…@external-ip`: the first of `spec.externalIPs`.
    ExternalIp,
    /// `…@lb`: the Service's load balancer address.
    Lb,
}

/// The `to:` of an expectation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    Pod {
        ns: String,
        name: String,
        port: Option<u16>,
    },
    Service {
        ns: String,
        name: String,
        port: Option<u16>,
        via: ServiceVia,
    },
    /// The Service's nodePort on that node's primary address.
    NodePort {
        node: String,
        ns: String,
        name: String,
    },
    Ip {
        addr: Ipv4Addr,
        port: Option<u16>,
    },
}

impl Target {
    /// The destination port, when the target names one.
    pub fn port(&self) -> Option<u16> {
        match self {
            Target::Pod { port, .. } | Target::Service { port, .. } | Target::Ip { port, .. } => {
                *port
            }
            Target::NodePort { .. } => None,
        }
    }
}

/// The `from:` of an expectation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Origin {
    Pod { ns: String, name: String },
    Node(String),
    External(String),
}

/// The `source:` of an expectation: the address the server must have seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SourceExpect {
    /// Exactly the client socket's own address (no NAT).
    Client,
    /// That node's primary address (SNAT by the node).
    Node(String),
    Ip(Ipv4Addr),
}

const TARGET_FORMS: &str = "pod/<ns>/<name>:<port>, service/<ns>/<name>:<port>[@external-ip|@lb], \
     nodeport/<node>/<ns>/<name> or ip/<addr>:<port>";
const ORIGIN_FORMS: &str = "pod/<ns>/<name>, node/<name> or external/<name>";
const SOURCE_FORMS: &str = "client, node/<name> or ip/<addr>";

fn port(text: &str, whole: &str) -> Result<u16, String> {
    match text.parse::<u16>() {
        Ok(p) if p >= 1 => Ok(p),
        _ => Err(format!(
            "{whole:?}: port {text:?} is not a number in 1..=65535"
        )),
    }
}

/// Splits a trailing `:<port>` off.
fn with_port(text: &str, whole: &str) -> Result<(String, Option<u16>), String> {
    match text.rsplit_once(':') {
        Some((head, p)) => Ok((head.to_string(), Some(port(p, whole)?))),
        None => Ok((text.to_string(), None)),
    }
}

fn ipv4(text: &str, whole: &str) -> Result<Ipv4Addr, String> {
    text.parse()
        .map_err(|_| format!("{whole:?}: {text:?} is not an IPv4 address"))
}

/// Parses an expectation's `to:`. The port is optional here; whether the
/// expectation's protocol needs one is the validator's business.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let (kind, rest) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a target (expected {TARGET_FORMS})"))?;
    match kind {
        "pod" => {
            let (head, port) = with_port(rest, s)?;
            let (ns, name) = ns_name(&head, s)?;
            Ok(Target::Pod { ns, name, port })
        }
        "service" => {
            let (head, via) = match rest.split_once('@') {
                None => (rest, ServiceVia::ClusterIp),
                Some((h, "external-ip")) => (h, ServiceVia::ExternalIp),
                Some((h, "lb")) => (h, ServiceVia::Lb),
                Some((_, other)) => {
                    return Err(format!(
                        "{s:?}: unknown service address @{other} (expected @external-ip or @lb)"
                    ))
                }
            };
            let (head, port) = with_port(head, s)?;
            let (ns, name) = ns_name(&head, s)?;
            Ok(Target::Service {
                ns,
                name,
                port,
                via,
            })
        }
        "nodeport" => {
            let mut parts = rest.split('/');
            match (parts.next(), parts.next(), parts.next(), parts.next()) {
                (Some(node), Some(ns), Some(svc), None) => Ok(Target::NodePort {
                    node: name(node, "node", s)?,
                    ns: name(ns, "namespace", s)?,
                    name: name(svc, "service name", s)?,
                }),
                _ => Err(format!("{s:?}: expected nodeport/<node>/<ns>/<service>")),
            }
        }
        "ip" => {
            let (head, port) = with_port(rest, s)?;
            Ok(Target::Ip {
                addr: ipv4(&head, s)?,
                port,
            })
        }
        other => Err(format!(
            "{s:?}: unknown target kind {other:?} (expected {TARGET_FORMS})"
        )),
    }
}

/// Parses an expectation's `from:`.
pub fn parse_origin(s: &str) -> Result<Origin, String> {
    let (kind, rest) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?} is not a client (expected {ORIGIN_FORMS})"))?;
    match kind {
        "pod" => {
            let (ns, name) = ns_name(rest, s)?;
            Ok(Origin::Pod { ns, name })
        }
        "node" => Ok(Origin::Node(name(rest, "node", s)?)),
        "external" => Ok(Origin::External(name(rest, "external", s)?)),
        other => Err(format!(
            "{s:?}: unknown client kind {other:?} (expected {ORIGIN_FORMS})"
        )),
    }
}

/// Parses an expectation's `source:`.
pub fn parse_source(s: &str) -> Result<SourceExpect, String> {
    if s == "client" {
        return Ok(SourceExpect::Client);
    }
    match s.split_once('/') {
        Some(("node", rest)) => Ok(SourceExpect::Node(name(rest, "node", s)?)),
        Some(("ip", rest)) => Ok(SourceExpect::Ip(ipv4(rest, s)?)),
        _ => Err(format!("{s:?} is not a source (expected {SOURCE_FORMS})")),
    }
}

fn opt_port(port: &Option<u16>) -> String {
    port.map(|p| format!(":{p}")).unwrap_or_default()
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Pod { ns, name, port } => write!(f, "pod/{ns}/{name}{}", opt_port(port)),
            Target::Service {
                ns,
                name,
                port,
                via,
            } => {
                let via = match via {
                    ServiceVia::ClusterIp => "",
                    ServiceVia::ExternalIp => "@external-ip",
                    ServiceVia::Lb => "@lb",
                };
                write!(f, "service/{ns}/{name}{}{via}", opt_port(port))
            }
            Target::NodePort { node, ns, name } => write!(f, "nodeport/{node}/{ns}/{name}"),
            Target::Ip { addr, port } => write!(f, "ip/{addr}{}", opt_port(port)),
        }
    }
}

impl From<&Origin> for PointId {
    fn from(o: &Origin) -> PointId {
        match o {
            Origin::Pod { ns, name } => PointId::pod(ns, name),
            Origin::Node(n) => PointId::node(n),
            Origin::External(n) => PointId::external(n),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Pod { ns, name } => write!(f, "pod/{ns}/{name}"),
            Origin::Node(n) => write!(f, "node/{n}"),
            Origin::External(n) => write!(f, "external/{n}"),
        }
    }
}

impl fmt::Display for SourceExpect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceExpect::Client => write!(f, "client"),
            SourceExpect::Node(n) => write!(f, "node/{n}"),
            SourceExpect::Ip(a) => write!(f, "ip/{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for s in [
            "pod/trunking/nginx-b:80",
            "pod/default/a",
            "service/trunking/nginx-b:80",
            "service/trunking/nginx-b:80@external-ip",
            "service/trunking/nginx-b:80@lb",
            "nodeport/cn-hongkong.10.0.4.20/trunking/nginx-b",
            "ip/10.0.3.72:443",
            "ip/10.0.3.72",
        ] {
            let t = parse_target(s).unwrap();
            assert_eq!(t.to_string(), s);
        }
        assert_eq!(
            parse_target("service/a/b:80@lb").unwrap(),
            Target::Service {
                ns: "a".into(),
                name: "b".into(),
                port: Some(80),
                via: ServiceVia::Lb
            }
        );
    }

    #[test]
    fn bad_targets_say_why() {
        let cases = [
            ("pod/x", "<namespace>/<name>"),
            ("pod/a/b:0", "1..=65535"),
            ("pod/a/b:99999", "1..=65535"),
            ("service/a/b:80@ext", "@external-ip or @lb"),
            ("nodeport/n/a", "nodeport/<node>/<ns>/<service>"),
            ("ip/10.0.0.300:80", "not an IPv4 address"),
            ("host/x:1", "unknown target kind"),
            ("nothing", "is not a target"),
            ("pod//b:1", "namespace is empty"),
        ];
        for (s, frag) in cases {
            let e = parse_target(s).unwrap_err();
            assert!(e.contains(frag), "{s}: {e}");
        }
    }

    #[test]
    fn origins_and_sources() {
        assert_eq!(parse_origin("node/n1").unwrap(), Origin::Node("n1".into()));
        assert_eq!(
            parse_origin("external/x").unwrap().to_string(),
            "external/x"
        );
        assert_eq!(parse_origin("pod/a/b").unwrap().to_string(), "pod/a/b");
        assert!(parse_origin("pod/a/b:80")
            .unwrap_err()
            .contains("contains ':'"));
        assert!(parse_origin("service/a/b")
            .unwrap_err()
            .contains("unknown client kind"));
        assert_eq!(parse_source("client").unwrap(), SourceExpect::Client);
        assert_eq!(
            parse_source("node/n1").unwrap(),
            SourceExpect::Node("n1".into())
        );
        assert_eq!(
            parse_source("ip/10.0.4.20").unwrap(),
            SourceExpect::Ip(Ipv4Addr::new(10, 0, 4, 20))
        );
        assert!(parse_source("node n1")
            .unwrap_err()
            .contains("not a source"));
    }
}
