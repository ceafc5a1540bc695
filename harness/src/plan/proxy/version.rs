//! The one place that knows how kube-proxy's choices change with the
//! Kubernetes version. Rules, not a table: any 1.x the topology names works.
//!
//! - `externalTrafficPolicy: Local` on a node with no local endpoint: before
//!   1.24 the virtual server has no real servers; from 1.24 it gets every
//!   endpoint of the cluster (kubernetes PR 97081, commit 61085a7).
//! - `internalTrafficPolicy` is honoured from 1.22 (beta, on by default);
//!   before, ClusterIP traffic always goes to every endpoint.

use crate::plan::types::TrafficPolicy;
use crate::topology::validate::KubeVersion;

/// First version whose Local services fall back to all endpoints.
pub const LOCAL_FALLBACK_SINCE: KubeVersion = KubeVersion {
    major: 1,
    minor: 24,
    patch: 0,
};
/// First version that honours `internalTrafficPolicy`.
pub const INTERNAL_POLICY_SINCE: KubeVersion = KubeVersion {
    major: 1,
    minor: 22,
    patch: 0,
};

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
    fn malformed_versions_are_errors() {
        for bad in ["1", "one.two", "2.0", "", "1.x"] {
            let e = ProxyVersion::parse(bad).unwrap_err();
            assert!(e.contains("cluster.kubernetes"), "{bad}: {e}");
        }
    }
}
