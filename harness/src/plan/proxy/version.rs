//! The one place that knows how kube-proxy's choices change with the
//! Kubernetes version. Rules, not a table: any 1.x the topology names works.
//!
//! - `externalTrafficPolicy: Local` on a node with no local endpoint: before
//!   1.24 the virtual server has no real servers; from 1.24 it gets every
//!   endpoint of the cluster (kubernetes PR 97081, commit 61085a7).
//! - `internalTrafficPolicy` is honoured from 1.22 (beta, on by default);
//!   before, ClusterIP traffic always goes to every endpoint.
//!
//! The table of every gate, with its KEP or PR, is docs/kube-proxy.md.

use crate::plan::types::{ServicePlan, ServiceType, TrafficPolicy};
use crate::topology::validate::KubeVersion;

/// `1.<minor>.0`.
const fn v1(minor: u32) -> KubeVersion {
    KubeVersion {
        major: 1,
        minor,
        patch: 0,
    }
}

/// First version whose Local services fall back to all endpoints.
pub const LOCAL_FALLBACK_SINCE: KubeVersion = v1(24);
/// First version that honours `internalTrafficPolicy`.
pub const INTERNAL_POLICY_SINCE: KubeVersion = v1(22);

/// `proxy: nftables` exists from 1.29 (KEP-3866: alpha 1.29 behind the
/// NFTablesProxyMode gate, beta and on by default 1.31, GA 1.33).
pub const NFTABLES_SINCE: KubeVersion = v1(29);
/// The nftables mode is on without a feature gate from 1.31 (KEP-3866 beta).
pub const NFTABLES_DEFAULT_ON_SINCE: KubeVersion = v1(31);
/// kube-proxy warns that IPVS mode is deprecated from 1.35 (KEP-5495,
/// kubernetes PR 134539).
pub const IPVS_DEPRECATED_SINCE: KubeVersion = v1(35);
/// The text kube-proxy logs (and records as an `IPVSDeprecation` event).
pub const IPVS_DEPRECATION: &str =
    "The ipvs proxier is now deprecated and may be removed in a future release. Please use 'nftables' instead.";
/// Terminating endpoints serve when a node has no ready one (KEP-1669
/// ProxyTerminatingEndpoints: alpha and off 1.22, beta and on by default
/// 1.26, GA 1.28).
pub const TERMINATING_FALLBACK_SINCE: KubeVersion = v1(26);
/// `status.loadBalancer.ingress[].ipMode: Proxy` stops kube-proxy from
/// short-circuiting the LB IP (KEP-1860 LoadBalancerIPMode: beta and on by
/// default 1.30, GA 1.32; alpha and off in 1.29).
pub const LB_IP_MODE_SINCE: KubeVersion = v1(30);

/// kube-proxy of one Kubernetes version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyVersion(pub KubeVersion);

impl ProxyVersion {
    pub fn parse(s: &str) -> Result<ProxyVersion, String> {
        KubeVersion::parse(s)
            .map(ProxyVersion)
            .map_err(|e| format!("cluster.kubernetes: {e}"))
    }

    /// Local with no local endpoint programs every endpoint (≥ 1.24).
    pub fn local_falls_back_to_cluster(self) -> bool {
        self.0 >= LOCAL_FALLBACK_SINCE
    }

    pub fn honours_internal_policy(self) -> bool {
        self.0 >= INTERNAL_POLICY_SINCE
    }

    /// iptables mode answers NodePorts on 127.0.0.1 (route_localnet=1) in
    /// every version modelled; 1.25 only added the flag that turns it off
    /// (`--iptables-localhost-nodeports`, default true, kubernetes PR 108250).
    pub fn iptables_localhost_nodeports(self) -> bool {
        true
    }

    pub fn has_nftables_mode(self) -> bool {
        self.0 >= NFTABLES_SINCE
    }

    /// The LB IP kube-proxy programs for `s` (upstream `LoadBalancerVIPs`):
    /// none for the hostname annotation (the status carries no IP), none
    /// for `ipMode: Proxy` where the LoadBalancerIPMode gate is on.
    pub fn lb_vip(self, s: &ServicePlan) -> Option<std::net::Ipv4Addr> {
        match (s.type_, s.lb_ip, s.lb_hostname) {
            (ServiceType::LoadBalancer, Some(ip), false)
                if !(s.lb_ip_mode_proxy && self.0 >= LB_IP_MODE_SINCE) =>
            {
                Some(ip)
            }
            _ => None,
        }
    }

    /// Serving terminating endpoints are used where no ready one is.
    pub fn terminating_fallback(self) -> bool {
        self.0 >= TERMINATING_FALLBACK_SINCE
    }

    pub fn ipvs_deprecated(self) -> bool {
        self.0 >= IPVS_DEPRECATED_SINCE
    }

    /// Real servers of an external address (NodePort, ExternalIP, LB IP) on a
    /// node: `local` are the endpoints on that node, `all` every endpoint.
    pub fn external_real_servers<T: Clone>(
        self,
        policy: TrafficPolicy,
        all: &[T],
        local: &[T],
    ) -> Vec<T> {
        match policy {
            TrafficPolicy::Cluster => all.to_vec(),
            TrafficPolicy::Local if !local.is_empty() => local.to_vec(),
            TrafficPolicy::Local if self.local_falls_back_to_cluster() => all.to_vec(),
            TrafficPolicy::Local => Vec::new(),
        }
    }

    /// Real servers of the ClusterIP on a node.
    pub fn internal_real_servers<T: Clone>(
        self,
        policy: TrafficPolicy,
        all: &[T],
        local: &[T],
    ) -> Vec<T> {
        match policy {
            TrafficPolicy::Local if self.honours_internal_policy() => local.to_vec(),
            _ => all.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TrafficPolicy::*;

    fn v(s: &str) -> ProxyVersion {
        ProxyVersion::parse(s).unwrap()
    }

    #[test]
    fn local_without_local_endpoints_by_version() {
        let all = [1, 2];
        for (ver, want) in [
            ("1.21", vec![]),
            ("1.22", vec![]),
            ("1.23.17", vec![]),
            ("1.24", vec![1, 2]),
            ("v1.30.2", vec![1, 2]),
        ] {
            assert_eq!(
                v(ver).external_real_servers(Local, &all, &[]),
                want,
                "{ver}"
            );
        }
    }

    #[test]
    fn local_with_local_endpoints_and_cluster_any_version() {
        for ver in ["1.21", "1.22", "1.23", "1.24", "1.30"] {
            assert_eq!(v(ver).external_real_servers(Local, &[1, 2], &[2]), vec![2]);
            assert_eq!(
                v(ver).external_real_servers(Cluster, &[1, 2], &[]),
                vec![1, 2]
            );
        }
    }

    #[test]
    fn internal_policy_from_1_22() {
        assert_eq!(
            v("1.21").internal_real_servers(Local, &[1, 2], &[1]),
            vec![1, 2]
        );
        assert_eq!(
            v("1.22").internal_real_servers(Local, &[1, 2], &[1]),
            vec![1]
        );
        assert_eq!(
            v("1.23").internal_real_servers(Local, &[1, 2], &[]),
            Vec::<i32>::new()
        );
        assert_eq!(
            v("1.30").internal_real_servers(Cluster, &[1, 2], &[]),
            vec![1, 2]
        );
    }

    #[test]
    fn mode_gates() {
        assert!(!v("1.28.9").has_nftables_mode());
        assert!(v("1.29").has_nftables_mode());
        assert!(!v("1.34").ipvs_deprecated());
        assert!(v("1.35.0").ipvs_deprecated());
    }

    #[test]
    fn malformed_versions_are_errors() {
        for bad in ["1", "one.two", "2.0", "", "1.x"] {
            let e = ProxyVersion::parse(bad).unwrap_err();
            assert!(e.contains("cluster.kubernetes"), "{bad}: {e}");
        }
    }
}
