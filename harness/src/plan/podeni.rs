//! Terway's trunking CRDs: which PodNetworking a pod uses, and the PodENI
//! record of every trunk pod (a view over the member ENIs of a plan).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::names::mac_str;
use super::types::{EniRole, LabPlan};
use crate::topology::k8s::{LabelSelector, Pod, PodNetworking};

/// The label every namespace carries since Kubernetes 1.21. The lab has no
/// Namespace objects, so it is the only namespace label a
/// `namespaceSelector` can match.
pub const NS_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Terway applies a PodNetworking only once its status is Ready; a pasted
/// object without status counts as Ready.
pub fn is_ready(pn: &PodNetworking) -> bool {
    pn.status.status.as_deref().is_none_or(|s| s == "Ready")
}

fn matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    sel.match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The labels of the pod's namespace as far as the lab knows them.
pub fn namespace_labels(ns: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(NS_NAME_LABEL.to_string(), ns.to_string())])
}

/// Does `pn`'s selector pick `pod`? Both selectors must match when both are
/// given; a PodNetworking without any selector picks nothing.
pub fn selects(pn: &PodNetworking, pod: &Pod) -> bool {
    let sel = &pn.spec.selector;
    if sel.pod_selector.is_none() && sel.namespace_selector.is_none() {
        return false;
    }
    let pod_ok = sel
        .pod_selector
        .as_ref()
        .is_none_or(|s| matches(s, &pod.metadata.labels));
    let ns_ok = sel
        .namespace_selector
        .as_ref()
        .is_none_or(|s| matches(s, &namespace_labels(pod.metadata.ns())));
    pod_ok && ns_ok
}

/// The first Ready PodNetworking (in YAML order) selecting `pod`.
pub fn select<'a>(pns: &'a [PodNetworking], pod: &Pod) -> Option<&'a PodNetworking> {
    pns.iter().find(|pn| is_ready(pn) && selects(pn, pod))
}

/// `allocationType.type`: Fixed keeps the pod's IP; anything else is Elastic.
pub fn is_fixed(pn: &PodNetworking) -> bool {
    pn.spec.allocation_type.type_.as_deref() == Some("Fixed")
}

/// One PodENI as `kubectl get podeni -o yaml` would show its essentials.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodEni {
    /// `<ns>/<name>` of the pod.
    pub pod: String,
    #[serde(rename = "eniID")]
    pub eni_id: String,
    pub mac: String,
    pub ipv4: Ipv4Addr,
    pub vlan_id: u16,
    #[serde(rename = "trunkENIID")]
    pub trunk_eni_id: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
    pub vswitch: String,
    pub security_group_ids: Vec<String>,
}

/// Every trunk pod's PodENI, from the plan's member ENIs.
pub fn podenis(plan: &LabPlan) -> Vec<PodEni> {
    plan.enis
        .iter()
        .filter(|e| e.role == EniRole::Member)
        .filter_map(|e| {
            Some(PodEni {
                pod: e.pod.clone()?,
                eni_id: e.id.clone(),
                mac: mac_str(&e.mac),
                ipv4: *e.ips.first()?,
                vlan_id: e.vlan?,
                trunk_eni_id: e.trunk.clone()?,
                instance_id: e.instance.clone(),
                vswitch: e.vswitch.clone(),
                security_group_ids: e.security_groups.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::k8s::{ObjectMeta, PodNetworkingSelector, PodNetworkingStatus};

    fn pn(
        name: &str,
        pod_sel: Option<&[(&str, &str)]>,
        ns_sel: Option<&[(&str, &str)]>,
        status: Option<&str>,
    ) -> PodNetworking {
        let sel = |kv: &[(&str, &str)]| LabelSelector {
            match_labels: kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let mut p = PodNetworking {
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            ..Default::default()
        };
        p.spec.selector = PodNetworkingSelector {
            pod_selector: pod_sel.map(sel),
            namespace_selector: ns_sel.map(sel),
        };
        p.status = PodNetworkingStatus {
            status: status.map(str::to_string),
        };
        p
    }

    fn pod(ns: &str, labels: &[(&str, &str)]) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = "p".into();
        p.metadata.namespace = Some(ns.into());
        p.metadata.labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p
    }

    #[test]
    fn selection_needs_ready_and_matching_labels() {
        let web = pod("shop", &[("app", "web")]);
        let not_ready = pn("a", Some(&[("app", "web")]), None, Some("Pending"));
        let ready = pn("b", Some(&[("app", "web")]), None, None);
        let pns = [not_ready, ready];
        assert_eq!(
            select(&pns, &web).map(|p| p.metadata.name.as_str()),
            Some("b")
        );
        assert!(select(&pns[..1], &web).is_none());
        assert!(select(&pns, &pod("shop", &[("app", "db")])).is_none());
    }

    #[test]
    fn namespace_selector_matches_the_name_label_only() {
        let by_ns = pn(
            "ns",
            None,
            Some(&[(NS_NAME_LABEL, "trunking")]),
            Some("Ready"),
        );
        assert!(selects(&by_ns, &pod("trunking", &[])));
        assert!(!selects(&by_ns, &pod("default", &[])));
        let other = pn("zone", None, Some(&[("trunking", "zoneb")]), None);
        assert!(!selects(&other, &pod("trunking", &[])));
        assert!(!selects(&pn("empty", None, None, None), &pod("x", &[])));
    }
}
