//! nft rule counters across a lab: which security-group (or masquerade)
//! rule saw a probe's packets. A verdict says *that* a packet was dropped;
//! the counter that moved says *which rule* dropped it.

use std::collections::BTreeMap;

use crate::kernel::nft;
use crate::lab::Lab;

/// `(namespace key, rule comment)` → packets.
pub type Counters = BTreeMap<(String, String), u64>;

/// A rule whose counter moved between two snapshots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// Namespace key (`eni/eni-…`, `node/…`).
    pub ns: String,
    /// The rule's comment (`sg-strict rule 0`, `default ingress drop`).
    pub rule: String,
    pub packets: u64,
    /// The rule's verdict (`accept`, `drop`, `masquerade`, …) if it has one.
    pub verdict: Option<String>,
}

/// Reads every commented rule counter in every namespace that has nft rules.
pub fn snapshot(lab: &Lab) -> Result<(Counters, BTreeMap<(String, String), String>), String> {
    let mut counters = Counters::new();
    let mut verdicts = BTreeMap::new();
    for (i, ns) in lab.plan().namespaces.iter().enumerate() {
        if ns.nft.is_none() && ns.iptables.is_none() {
            continue;
        }
        let json = nft::list_ruleset_json(lab.netns(i)).map_err(|e| e.to_string())?;
        for (rule, packets, verdict) in commented_counters(&json) {
            let key = owned_rule(&ns.key, rule);
            if let Some(v) = verdict {
                verdicts.insert(key.clone(), v);
            }
            *counters.entry(key).or_default() += packets;
        }
    }
    Ok((counters, verdicts))
}

/// `(owner, rule)` of a counted rule in namespace `ns`: a member ENI's rules
/// live in its hypervisor's namespace with comments `eni/<id>: <rule>`, and
/// belong to the ENI.
fn owned_rule(ns: &str, comment: String) -> (String, String) {
    match crate::plan::sg::member_rule(&comment) {
        Some((owner, rule)) => (owner.to_string(), rule.to_string()),
        None => (ns.to_string(), comment),
    }
}

/// Counters that moved from `before` to `after`, largest first.
pub fn moved(
    before: &Counters,
    after: &Counters,
    verdicts: &BTreeMap<(String, String), String>,
) -> Vec<Moved> {
    let mut v: Vec<Moved> = after
        .iter()
        .filter_map(|(k, &n)| {
            let delta = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (delta > 0).then(|| Moved {
                ns: k.0.clone(),
                rule: k.1.clone(),
                packets: delta,
                verdict: verdicts.get(k).cloned(),
            })
        })
        .collect();
    v.sort_by(|a, b| {
        b.packets
            .cmp(&a.packets)
            .then(a.ns.cmp(&b.ns))
            .then(a.rule.cmp(&b.rule))
    });
    v
}

/// `(comment, packets, verdict)` of every rule with a counter and a comment
/// in `nft -j list ruleset` output.
pub fn commented_counters(json: &serde_json::Value) -> Vec<(String, u64, Option<String>)> {
    let Some(items) = json.get("nftables").and_then(|v| v.as_array()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| item.get("rule"))
        .filter_map(|rule| {
            let comment = rule.get("comment")?.as_str()?.to_string();
            let expr = rule.get("expr")?.as_array()?;
            let packets = expr
                .iter()
                .find_map(|e| e.get("counter")?.get("packets")?.as_u64())?;
            let verdict = expr.iter().find_map(|e| {
                [
                    "accept",
                    "drop",
                    "reject",
                    "masquerade",
                    "snat",
                    "dnat",
                    "return",
                    "jump",
                ]
                .iter()
                .find(|k| e.get(**k).is_some())
                .map(|k| k.to_string())
            });
            Some((comment, packets, verdict))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_enis_rules_are_keyed_by_the_eni_not_by_hv() {
        assert_eq!(
            owned_rule("hv/n1", "eni/eni-1a: sg-a rule 0".into()),
            ("eni/eni-1a".to_string(), "sg-a rule 0".to_string())
        );
        assert_eq!(
            owned_rule("eni/eni-2b", "default ingress drop".into()),
            ("eni/eni-2b".to_string(), "default ingress drop".to_string())
        );
        assert_eq!(
            owned_rule("node/n1", "KUBE-SVC: x".into()),
            ("node/n1".to_string(), "KUBE-SVC: x".to_string())
        );
    }

    #[test]
    fn reads_comments_counters_and_verdicts_from_nft_json() {
        let json: serde_json::Value = serde_json::from_str(
            r#"{"nftables":[{"metainfo":{}},{"table":{"family":"inet","name":"cnlab_sg"}},
            {"rule":{"family":"inet","table":"cnlab_sg","chain":"ingress","handle":4,"comment":"sg-strict rule 0",
              "expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"192.168.0.0","len":16}}}},
                      {"counter":{"packets":3,"bytes":180}},{"accept":null}]}},
            {"rule":{"family":"inet","table":"cnlab_sg","chain":"ingress","handle":5,"comment":"default ingress drop",
              "expr":[{"counter":{"packets":7,"bytes":420}},{"drop":null}]}},
            {"rule":{"family":"inet","table":"cnlab_sg","chain":"forward","handle":2,
              "expr":[{"counter":{"packets":9,"bytes":1}},{"accept":null}]}}]}"#,
        )
        .unwrap();
        let c = commented_counters(&json);
        assert_eq!(
            c,
            vec![
                (
                    "sg-strict rule 0".to_string(),
                    3,
                    Some("accept".to_string())
                ),
                (
                    "default ingress drop".to_string(),
                    7,
                    Some("drop".to_string())
                ),
            ]
        );
    }

    #[test]
    fn only_counters_that_moved_are_reported() {
        let k = |r: &str| ("eni/e1".to_string(), r.to_string());
        let before: Counters = [(k("a"), 1), (k("b"), 5)].into_iter().collect();
        let after: Counters = [(k("a"), 1), (k("b"), 8), (k("c"), 2)]
            .into_iter()
            .collect();
        let m = moved(&before, &after, &BTreeMap::new());
        assert_eq!(
            m.iter()
                .map(|m| (m.rule.as_str(), m.packets))
                .collect::<Vec<_>>(),
            vec![("b", 3), ("c", 2)]
        );
    }
}
