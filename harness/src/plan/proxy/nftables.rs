//! kube-proxy in nftables mode (pkg/proxy/nftables/proxier.go).

use super::version::{ProxyVersion, NFTABLES_SINCE};
use super::{NodeInput, ProxyDriver};
use crate::plan::draft::Draft;
use crate::plan::types::*;
use crate::topology::model::ProxyMode;

pub struct Nftables;

impl ProxyDriver for Nftables {
    fn mode(&self) -> ProxyMode {
        ProxyMode::Nftables
    }

    fn check_version(&self, v: ProxyVersion) -> Result<(), String> {
        if v.has_nftables_mode() {
            Err(
                "cnlab does not model kube-proxy's nftables mode yet; use proxy: iptables or ipvs"
                    .into(),
            )
        } else {
            Err(format!(
                "kube-proxy has no nftables mode before {NFTABLES_SINCE} (KEP-3866); cluster.kubernetes is {}: use proxy: iptables or ipvs",
                v.0
            ))
        }
    }

    fn program_node(&self, _d: &mut Draft, n: &NodeInput) -> ProxyNodePlan {
        ProxyNodePlan {
            node: n.node.name.clone(),
            bound: Vec::new(),
            virtual_servers: Vec::new(),
        }
    }
}
