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
//!
//! kube-proxy's own health server (pkg/proxy/healthcheck/proxier_health.go,
//! `--healthz-bind-address` 0.0.0.0:10256) runs on every node in every
//! mode: `/healthz` and (from 1.28) `/livez`, JSON with the time of the
//! request. Its answer is made when a request arrives
//! ([`proxier_reply`]), so the timestamps are live.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use std::time::{Duration, SystemTime};

use super::version::ProxyVersion;
use crate::clock::Utc;
use crate::plan::cloud::NodeCtx;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

/// kube-proxy's `--healthz-bind-address` default port.
pub const PROXIER_HEALTH_PORT: u16 = 10256;

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
                http: Some(HttpServe::Fixed(reply(
                    &s.ns,
                    &s.name,
                    local_ready(s, &node.name),
                ))),
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

/// kube-proxy's own health server on `node` (0.0.0.0:10256, every mode).
pub fn proxier_server(v: ProxyVersion, node: &NodeCtx) -> ServerPlan {
    ServerPlan {
        identity: format!("node/{} (kube-proxy healthz)", node.name),
        port: PROXIER_HEALTH_PORT,
        tcp: true,
        udp: false,
        bind: None,
        http: Some(HttpServe::ProxierHealth(ProxierHealth {
            // The lab's nodes are never being deleted nor tainted by the
            // cluster autoscaler.
            node_eligible: true,
            livez: v.proxier_livez(),
        })),
    }
}

/// What kube-proxy's health server answers to `GET path` at `now`,
/// `uptime` after it started (the monotonic part of Go's time string). The
/// lab's kube-proxy has synced everything before any probe, so it is
/// healthy and, as upstream does when healthy, `lastUpdated` is the
/// current time.
pub fn proxier_reply(
    h: &ProxierHealth,
    path: &str,
    now: SystemTime,
    uptime: Duration,
) -> HttpReply {
    let utc = Utc::of(now);
    let t = utc.go_string(uptime);
    let date = format!("Date: {}", utc.http_date());
    let json = |body: String| HttpReply {
        status: 200,
        reason: "OK".into(),
        headers: vec![
            "Content-Type: application/json".into(),
            "X-Content-Type-Options: nosniff".into(),
            date.clone(),
        ],
        body,
    };
    // Go's ServeMux matches the path without the query.
    match (path.split('?').next().unwrap_or(""), h.livez) {
        ("/healthz", true) => json(format!(
            "{{\"lastUpdated\": \"{t}\",\"currentTime\": \"{t}\", \"nodeEligible\": {}}}",
            h.node_eligible
        )),
        ("/healthz", false) | ("/livez", true) => json(format!(
            "{{\"lastUpdated\": \"{t}\",\"currentTime\": \"{t}\"}}"
        )),
        _ => HttpReply {
            status: 404,
            reason: "Not Found".into(),
            headers: vec![
                "Content-Type: text/plain; charset=utf-8".into(),
                "X-Content-Type-Options: nosniff".into(),
                date,
            ],
            body: "404 page not found\n".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxier_health_as_upstream() {
        let at = std::time::UNIX_EPOCH + Duration::new(1_796_133_909, 5);
        let up = Duration::from_millis(1500);
        let new = ProxierHealth {
            node_eligible: true,
            livez: true,
        };
        let h = proxier_reply(&new, "/healthz", at, up);
        assert_eq!(h.status, 200);
        assert_eq!(
            h.body,
            "{\"lastUpdated\": \"2026-12-01 14:05:09.000000005 +0000 UTC m=+1.500000000\",\"currentTime\": \"2026-12-01 14:05:09.000000005 +0000 UTC m=+1.500000000\", \"nodeEligible\": true}"
        );
        assert!(h
            .headers
            .contains(&"Date: Tue, 01 Dec 2026 14:05:09 GMT".to_string()));
        let l = proxier_reply(&new, "/livez", at, up);
        assert!(l.status == 200 && !l.body.contains("nodeEligible"), "{l:?}");
        assert_eq!(proxier_reply(&new, "/metrics", at, up).status, 404);
        // Before 1.28: no /livez, no nodeEligible.
        let old = ProxierHealth {
            node_eligible: true,
            livez: false,
        };
        assert!(!proxier_reply(&old, "/healthz", at, up)
            .body
            .contains("nodeEligible"));
        assert_eq!(proxier_reply(&old, "/livez", at, up).status, 404);
    }

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
