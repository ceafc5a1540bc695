//! The success result (SPEC.md "Section 5: Result Types", 1.0.0 and the
//! 0.4.0 form whose `ips` carry `version`) and the error object.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    pub name: String,
    pub mac: String,
    /// The namespace path for interfaces inside the container; empty on the host.
    pub sandbox: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// 0.4.0 only: `"4"` or `"6"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dns {
    pub nameservers: Vec<String>,
    pub domain: Option<String>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl CniResult {
    pub fn parse(v: &Value) -> Result<CniResult, String> {
        let r: CniResult = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        if r.cni_version.is_empty() {
            return Err("result has no cniVersion".into());
        }
        for (i, ip) in r.ips.iter().enumerate() {
            if let Some(n) = ip.interface.filter(|n| *n >= r.interfaces.len()) {
                return Err(format!(
                    "ips[{i}].interface {n} names no entry of interfaces ({} listed)",
                    r.interfaces.len()
                ));
            }
        }
        Ok(r)
    }

    /// The pod's address: the first IPv4 address on an interface inside the
    /// sandbox named `ifname` (or with no interface given).
    pub fn pod_ipv4(&self, ifname: &str) -> Option<(Ipv4Addr, u8)> {
        self.ips.iter().find_map(|ip| {
            let on_pod = match ip.interface {
                Some(i) => {
                    let itf = &self.interfaces[i];
                    !itf.sandbox.is_empty() && itf.name == ifname
                }
                None => true,
            };
            match ip.address {
                IpNet::V4(n) if on_pod => Some((n.addr(), n.prefix_len())),
                _ => None,
            }
        })
    }

    /// One line per fact, for `cnlab get pods`.
    pub fn summary(&self) -> String {
        let ifs: Vec<String> = self
            .interfaces
            .iter()
            .map(|i| {
                if i.sandbox.is_empty() {
                    format!("{}(host)", i.name)
                } else {
                    i.name.clone()
                }
            })
            .collect();
        let ips: Vec<String> = self
            .ips
            .iter()
            .map(|i| match i.gateway {
                Some(g) => format!("{} gw {g}", i.address),
                None => i.address.to_string(),
            })
            .collect();
        let routes: Vec<String> = self
            .routes
            .iter()
            .map(|r| match r.gw {
                Some(g) => format!("{} via {g}", r.dst),
                None => r.dst.to_string(),
            })
            .collect();
        format!(
            "cniVersion {}; interfaces {}; ips {}; routes {}; dns {}",
            self.cni_version,
            none_if_empty(ifs),
            none_if_empty(ips),
            none_if_empty(routes),
            none_if_empty(self.dns.nameservers.clone())
        )
    }
}

fn none_if_empty(v: Vec<String>) -> String {
    if v.is_empty() {
        "-".into()
    } else {
        v.join(", ")
    }
}

/// The error object a failing plugin prints on stdout.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ErrorObject {
    pub code: u64,
    pub msg: String,
    pub details: String,
}

impl ErrorObject {
    pub fn parse(stdout: &[u8]) -> Option<ErrorObject> {
        let e: ErrorObject = serde_json::from_slice(stdout).ok()?;
        (e.code != 0 || !e.msg.is_empty()).then_some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_1_0_0_result() {
        let r = CniResult::parse(&json!({
            "cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                           {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02"},
                           {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p"}],
            "ips": [{"address": "10.244.1.5/24", "gateway": "10.244.1.1", "interface": 2}],
            "routes": [{"dst": "10.244.0.0/16"}, {"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            "dns": {"nameservers": ["10.96.0.10"]}
        }))
        .unwrap();
        assert_eq!(
            r.pod_ipv4("eth0"),
            Some(("10.244.1.5".parse().unwrap(), 24))
        );
        assert!(
            r.summary().contains("cni0(host), veth1(host), eth0"),
            "{}",
            r.summary()
        );
    }

    #[test]
    fn reads_a_0_4_0_result_and_skips_host_side_addresses() {
        let r = CniResult::parse(&json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "veth9", "mac": "aa:bb:cc:dd:ee:02"},
                           {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/p"}],
            "ips": [{"version": "4", "address": "10.1.1.1/32", "interface": 0},
                    {"version": "4", "address": "10.1.1.7/32", "gateway": "10.1.1.1", "interface": 1}]
        }))
        .unwrap();
        assert_eq!(r.pod_ipv4("eth0"), Some(("10.1.1.7".parse().unwrap(), 32)));
    }

    #[test]
    fn bad_results_are_named() {
        assert!(CniResult::parse(&json!({"ips": []})).is_err());
        let e = CniResult::parse(
            &json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.1/24", "interface": 3}]}),
        )
        .unwrap_err();
        assert!(e.contains("interface 3"), "{e}");
    }

    #[test]
    fn error_object() {
        let e = ErrorObject::parse(br#"{"code": 7, "msg": "bad subnet", "details": ""}"#).unwrap();
        assert_eq!((e.code, e.msg.as_str()), (7, "bad subnet"));
        assert!(ErrorObject::parse(b"{}").is_none());
    }
}
