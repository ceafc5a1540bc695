//! Instance limits: how many ENIs an ECS instance takes, how many private
//! IPs each ENI holds, and whether it can carry a trunk ENI.
//!
//! `nodes[].enis` wins; otherwise `nodes[].instance_type` is looked up in a
//! small built-in table; otherwise the model's default (3 ENIs × 10 IPs, no
//! trunk). The table's figures follow the shape of Alibaba's instance-family
//! pages (ENIs and IPv4 per ENI grow with size, g6/g7 from `large` up can
//! carry a trunk) but are **illustrative**: check the real instance family
//! page before relying on an exact number.

use crate::topology::model::{EniLimits, Node};

/// `(instance type, ENIs incl. primary, private IPs per ENI, trunk capable)`.
pub const INSTANCE_TYPES: &[(&str, u32, u32, bool)] = &[
    ("ecs.g6.large", 3, 10, true),
    ("ecs.g6.xlarge", 4, 15, true),
    ("ecs.g6.2xlarge", 6, 15, true),
    ("ecs.g6.4xlarge", 8, 30, true),
    ("ecs.g7.large", 3, 10, true),
    ("ecs.g7.xlarge", 4, 15, true),
    ("ecs.g7.2xlarge", 6, 15, true),
    ("ecs.g7.4xlarge", 8, 30, true),
    ("ecs.c7.large", 3, 10, true),
    ("ecs.c7.xlarge", 4, 15, true),
    ("ecs.t6-c1m2.large", 2, 2, false),
    ("ecs.n4.small", 1, 2, false),
];

/// The limits of one node and, when they were not written explicitly, a
/// note saying where they came from.
pub fn node_limits(node: &Node) -> (EniLimits, Option<String>) {
    if let Some(l) = node.enis {
        return (l, None);
    }
    let d = EniLimits::default();
    let Some(t) = node.instance_type.as_deref() else {
        return (
            d,
            Some(format!(
                "node {}: no enis/instance_type, assuming {} ENIs x {} IPs, no trunk",
                node.name, d.max, d.ips_per_eni
            )),
        );
    };
    match INSTANCE_TYPES.iter().find(|(name, ..)| *name == t) {
        Some(&(_, max, ips, trunk)) => (
            EniLimits {
                max,
                ips_per_eni: ips,
                trunk,
            },
            None,
        ),
        None => {
            let known: Vec<&str> = INSTANCE_TYPES.iter().map(|(n, ..)| *n).collect();
            (
                d,
                Some(format!(
                    "node {}: instance_type {t:?} is not in the built-in table ({}); assuming {} ENIs x {} IPs, no trunk",
                    node.name,
                    known.join(", "),
                    d.max,
                    d.ips_per_eni
                )),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(enis: Option<EniLimits>, t: Option<&str>) -> Node {
        Node {
            name: "n1".into(),
            ip: None,
            vswitch: "vsw-a".into(),
            security_groups: vec![],
            enis,
            instance_type: t.map(str::to_string),
            labels: Default::default(),
            ports: vec![],
            cni_plugins: None,
            trunk: None,
        }
    }

    #[test]
    fn explicit_limits_win_over_the_table() {
        let l = EniLimits {
            max: 2,
            ips_per_eni: 2,
            trunk: false,
        };
        assert_eq!(
            node_limits(&node(Some(l), Some("ecs.g7.2xlarge"))),
            (l, None)
        );
    }

    #[test]
    fn table_lookup_and_unknown_type_note() {
        let (l, note) = node_limits(&node(None, Some("ecs.g7.xlarge")));
        assert_eq!((l.max, l.ips_per_eni, l.trunk, note), (4, 15, true, None));
        let (l, note) = node_limits(&node(None, Some("ecs.x9.huge")));
        assert_eq!(l, EniLimits::default());
        assert!(note.unwrap().contains("ecs.x9.huge"));
    }
}
