//! Instance limits: how many ENIs an ECS instance takes, how many private
//! IPs each ENI holds, and whether it can carry a trunk ENI.
//!
//! `nodes[].enis` wins; otherwise `nodes[].instance_type` is looked up in a
//! small built-in table; otherwise the model's default (3 ENIs × 10 IPs, no
//! trunk). The table's figures follow the shape of Alibaba's instance-family
//! pages (ENIs and IPv4 per ENI grow with size, g6/g7 from `large` up can
//! carry a trunk) but are **illustrative**: check the real instance family
//! page before relying on an exact number. The exceptions are the rows
//! with a total (`EniTotalQuantity`, which sets the member-ENI quota): they
//! copy a `DescribeInstanceTypes` record, named beside the row.

use crate::topology::model::{EniLimits, Node};

/// One row of the built-in instance table.
pub struct InstanceType {
    pub name: &'static str,
    /// `EniQuantity`: ENIs, the primary included.
    pub enis: u32,
    /// `EniPrivateIpAddressQuantity`.
    pub ips_per_eni: u32,
    /// `EniTrunkSupported`.
    pub trunk: bool,
    /// `EniTotalQuantity`, where a recorded API response gives it.
    pub total: Option<u32>,
}

const fn row(name: &'static str, enis: u32, ips_per_eni: u32, trunk: bool) -> InstanceType {
    InstanceType {
        name,
        enis,
        ips_per_eni,
        trunk,
        total: None,
    }
}

impl InstanceType {
    /// With its recorded `EniTotalQuantity`.
    const fn total(self, total: u32) -> Self {
        InstanceType {
            total: Some(total),
            ..self
        }
    }
}

pub const INSTANCE_TYPES: &[InstanceType] = &[
    row("ecs.g6.large", 3, 10, true),
    row("ecs.g6.xlarge", 4, 15, true),
    row("ecs.g6.2xlarge", 6, 15, true),
    row("ecs.g6.4xlarge", 8, 30, true),
    row("ecs.g7.large", 3, 10, true),
    row("ecs.g7.xlarge", 4, 15, true),
    // The record in Terway's OpenAPI mock (`pkg/aliyun/client/mocks`):
    // EniQuantity 4, EniTotalQuantity 10, 15 IPs, trunk.
    row("ecs.g7.2xlarge", 4, 15, true).total(10),
    row("ecs.g7.4xlarge", 8, 30, true),
    row("ecs.c7.large", 3, 10, true),
    row("ecs.c7.xlarge", 4, 15, true),
    // A DescribeInstanceTypes record (ap-northeast-2, 2025-08): EniQuantity
    // 8, EniTotalQuantity 40, 20 IPs, EniTrunkSupported true.
    row("ecs.r6.8xlarge", 8, 20, true).total(40),
    row("ecs.t6-c1m2.large", 2, 2, false),
    row("ecs.n4.small", 1, 2, false),
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
    match INSTANCE_TYPES.iter().find(|row| row.name == t) {
        Some(row) => (
            EniLimits {
                max: row.enis,
                ips_per_eni: row.ips_per_eni,
                trunk: row.trunk,
                total: row.total,
            },
            None,
        ),
        None => {
            let known: Vec<&str> = INSTANCE_TYPES.iter().map(|row| row.name).collect();
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
            total: None,
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
        let (l, _) = node_limits(&node(None, Some("ecs.g7.2xlarge")));
        assert_eq!((l.max, l.total, l.member_enis()), (4, Some(10), Some(6)));
        let (l, _) = node_limits(&node(None, Some("ecs.g7.xlarge")));
        assert_eq!(l.member_enis(), None, "no recorded EniTotalQuantity");
        let (l, _) = node_limits(&node(None, Some("ecs.n4.small")));
        assert_eq!(l.member_enis(), Some(0), "no trunk, no member ENIs");
        let (l, note) = node_limits(&node(None, Some("ecs.x9.huge")));
        assert_eq!(l, EniLimits::default());
        assert!(note.unwrap().contains("ecs.x9.huge"));
    }
}
