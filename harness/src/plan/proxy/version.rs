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
/// Before 1.24 the iptables proxier wrote `KUBE-XLB-*` for Local services
/// and a `KUBE-FW-*` for every LB IP; 1.24 renamed and reorganised them
/// into `KUBE-EXT-*` / `KUBE-SVL-*` (kubernetes PR 109060 "Kube proxy rule
/// reorg XLB->EXT", on top of PR 106497).
pub const EXT_CHAINS_SINCE: KubeVersion = v1(24);
/// Before 1.24 kube-proxy filtered a Service's endpoints once for every
/// destination (`proxy.FilterEndpoints`, pkg/proxy/topology.go):
/// `externalTrafficPolicy: Local` skipped the internal policy altogether,
/// and `internalTrafficPolicy: Local` restricted NodePorts, external IPs
/// and LB IPs to this node's endpoints too (kubernetes issue 105470, fixed
/// by PR 106497 "fix internalTrafficPolicy" in 1.24).
pub const SEPARATE_POLICIES_SINCE: KubeVersion = v1(24);
/// Before 1.25 kube-proxy's iptables proxier dropped through the kubelet's
/// `KUBE-MARK-DROP` (mark 0x8000, dropped by the kubelet's `KUBE-FIREWALL`
/// in filter INPUT/OUTPUT); from 1.25 it drops in its own filter chains
/// (`KUBE-PROXY-FIREWALL`, `KUBE-EXTERNAL-SERVICES -j DROP`; KEP-3178,
/// kubernetes PR 110289; the IPVS proxier: PR 110628).
pub const OWN_DROP_SINCE: KubeVersion = v1(25);
/// The kubelet creates `KUBE-MARK-DROP` and the drop-mark rule of
/// `KUBE-FIREWALL` until IPTablesOwnershipCleanup is on (KEP-3178: alpha
/// 1.25, beta and on by default 1.27, GA 1.28).
pub const KUBELET_MARK_DROP_UNTIL: KubeVersion = v1(27);
/// kube-proxy's health server has `/livez` and `nodeEligible` in
/// `/healthz` from 1.28 (KEP-3836, kubernetes PR 116470).
pub const PROXIER_LIVEZ_SINCE: KubeVersion = v1(28);
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

    /// iptables mode writes `KUBE-EXT-*` / `KUBE-SVL-*` (≥ 1.24), not `KUBE-XLB-*`.
    pub fn iptables_ext_chains(self) -> bool {
        self.0 >= EXT_CHAINS_SINCE
    }

    /// kube-proxy drops in its own filter chains (≥ 1.25), not through
    /// the kubelet's `KUBE-MARK-DROP`.
    pub fn drops_in_filter(self) -> bool {
        self.0 >= OWN_DROP_SINCE
    }

    /// The kubelet still writes `KUBE-MARK-DROP` and its `KUBE-FIREWALL`
    /// drop-mark rule (< 1.27).
    pub fn kubelet_mark_drop(self) -> bool {
        self.0 < KUBELET_MARK_DROP_UNTIL
    }

    /// Internal and external traffic policies apply independently (≥ 1.24).
    pub fn separate_policies(self) -> bool {
        self.0 >= SEPARATE_POLICIES_SINCE
    }

    /// The endpoints every destination of a Service starts from on a node
    /// (`all` everywhere, `local` on this node): before 1.24
    /// `internalTrafficPolicy: Local` (unless the external policy is
    /// Local) narrowed them all to this node's (`FilterEndpoints`).
    pub fn service_endpoints<T: Clone>(
        self,
        internal: TrafficPolicy,
        external_local: bool,
        all: &[T],
        local: &[T],
    ) -> Vec<T> {
        if !self.separate_policies()
            && self.honours_internal_policy()
            && internal == TrafficPolicy::Local
            && !external_local
        {
            local.to_vec()
        } else {
            all.to_vec()
        }
    }

    /// The health server serves `/livez` and reports `nodeEligible` (≥ 1.28).
    pub fn proxier_livez(self) -> bool {
        self.0 >= PROXIER_LIVEZ_SINCE
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

    /// Real servers of the ClusterIP on a node (`all` as
    /// [`Self::service_endpoints`] gives them: before 1.24 the internal
    /// policy is already applied there, or ignored for eTP Local).
    pub fn internal_real_servers<T: Clone>(
        self,
        policy: TrafficPolicy,
        all: &[T],
        local: &[T],
    ) -> Vec<T> {
        match policy {
            TrafficPolicy::Local if self.honours_internal_policy() && self.separate_policies() => {
                local.to_vec()
            }
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
        // What a ClusterIP gets: the internal policy applied to the
        // Service's endpoints on this node, as each version does it.
        let cip = |ver: &str, p, all: &[i32], local: &[i32]| {
            let all = v(ver).service_endpoints(p, false, all, local);
            v(ver).internal_real_servers(p, &all, local)
        };
        assert_eq!(cip("1.21", Local, &[1, 2], &[1]), vec![1, 2]);
        assert_eq!(cip("1.22", Local, &[1, 2], &[1]), vec![1]);
        assert_eq!(cip("1.23", Local, &[1, 2], &[]), Vec::<i32>::new());
        assert_eq!(cip("1.24", Local, &[1, 2], &[]), Vec::<i32>::new());
        assert_eq!(cip("1.30", Cluster, &[1, 2], &[]), vec![1, 2]);
    }

    #[test]
    fn policies_entangled_before_1_24() {
        // iTP Local narrows every destination (eTP Cluster) before 1.24 ...
        assert_eq!(
            v("1.23").service_endpoints(Local, false, &[1, 2], &[1]),
            vec![1]
        );
        assert_eq!(
            v("1.24").service_endpoints(Local, false, &[1, 2], &[1]),
            vec![1, 2]
        );
        // ... and is ignored with eTP Local.
        assert_eq!(
            v("1.23").service_endpoints(Local, true, &[1, 2], &[]),
            vec![1, 2]
        );
        assert_eq!(
            v("1.23").internal_real_servers(Local, &[1, 2], &[]),
            vec![1, 2]
        );
        assert_eq!(
            v("1.21").service_endpoints(Local, false, &[1, 2], &[1]),
            vec![1, 2]
        );
        assert!(!v("1.23.17").iptables_ext_chains() && v("1.24").iptables_ext_chains());
        assert!(!v("1.24").drops_in_filter() && v("1.25").drops_in_filter());
        assert!(v("1.26").kubelet_mark_drop() && !v("1.27").kubelet_mark_drop());
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
