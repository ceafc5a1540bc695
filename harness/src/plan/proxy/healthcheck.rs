//! kube-proxy's service health server (pkg/proxy/healthcheck/
//! service_health.go): for every LoadBalancer Service with
//! `externalTrafficPolicy: Local`, an HTTP server on its
//! `healthCheckNodePort` on each node, answering any request with 200 when
//! the node has ready endpoints of the Service and 503 when it has none,
//! a JSON body naming the Service and the count, and the headers
//! `Content-Type: application/json` and `X-Content-Type-Options: nosniff`.
//! It listens on every address (0.0.0.0) unless `--nodeport-addresses`
//! restricts it: the nftables mode's default (`primary`) is the node IP.
//!
//! In the lab it is an HTTP server with a fixed reply (the plan is
//! static); `serviceProxyHealthy` is true since the lab's kube-proxy has
//! programmed everything before any probe runs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::plan::cloud::NodeCtx;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

/// Who answers on a node's health check ports.
pub fn identity(node: &str) -> String {
    format!("node/{node} (kube-proxy health check)")
}

/// The health servers kube-proxy in `mode` runs on `node`.
pub fn servers(mode: ProxyMode, services: &[ServicePlan], node: &NodeCtx) -> Vec<ServerPlan> {
    let bind = match mode {
        ProxyMode::Nftables => Some(node.ip),
        _ => None,
    };
    services
        .iter()
        .filter_map(|s| {
            let port = s.health_check_node_port?;
            Some(ServerPlan {
                identity: identity(&node.name),
                port,
                tcp: true,
                udp: false,
                bind,
                http: Some(reply(&s.ns, &s.name, local_ready(s, &node.name))),
            })
        })
        .collect()
}

/// Ready endpoints of `s` on `node`, each address once
/// (`EndpointsMap.LocalReadyEndpoints`).
fn local_ready(s: &ServicePlan, node: &str) -> usize {
    s.endpoints
        .iter()
        .filter(|e| e.ready && e.node == node)
        .map(|e| e.ip)
        .collect::<BTreeSet<Ipv4Addr>>()
        .len()
}

/// `hcHandler.ServeHTTP`'s answer.
pub fn reply(ns: &str, name: &str, count: usize) -> HttpReply {
    let (status, reason) = if count != 0 {
        (200, "OK")
    } else {
        (503, "Service Unavailable")
    };
    HttpReply {
        status,
        reason: reason.into(),
        headers: vec![
            "Content-Type: application/json".into(),
            "X-Content-Type-Options: nosniff".into(),
        ],
        body: format!(
            "{{\n\t\"service\": {{\n\t\t\"namespace\": \"{ns}\",\n\t\t\"name\": \"{name}\"\n\t}},\n\t\"localEndpoints\": {count},\n\t\"serviceProxyHealthy\": true\n}}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_as_upstream() {
        let ok = reply("ns1", "svc1", 2);
        assert_eq!((ok.status, ok.reason.as_str()), (200, "OK"));
        assert!(ok.body.contains("\"localEndpoints\": 2"));
        let none = reply("ns1", "svc1", 0);
        assert_eq!(none.status, 503);
        let wire = String::from_utf8(none.to_bytes()).unwrap();
        assert!(
            wire.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{wire}"
        );
        assert!(wire.contains("X-Content-Type-Options: nosniff\r\n"));
        assert!(wire.ends_with("\"serviceProxyHealthy\": true\n}"), "{wire}");
    }
}
