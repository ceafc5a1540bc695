//! Deterministic names: namespace suffixes, ENI ids, MACs, host-side veths.
//!
//! Everything is derived from sha1 of stable inputs (topology name, object
//! keys), so planning the same topology twice gives byte-identical plans.

use sha1::{Digest, Sha1};
use std::collections::HashSet;

/// Linux `IFNAMSIZ - 1`.
pub const MAX_IFNAME: usize = 15;
/// Longest namespace suffix (`cnl-<lab id>-<short>`).
pub const MAX_SHORT: usize = 40;

/// Lower-case hex of sha1(`input`).
pub fn sha1_hex(input: &str) -> String {
    Sha1::digest(input.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha1_bytes(input: &str) -> [u8; 20] {
    Sha1::digest(input.as_bytes()).into()
}

/// `eni-` + 10 hex digits: 14 chars, so the id doubles as the ENI's link
/// name in the `vpc` namespace.
pub fn eni_id(topology: &str, owner: &str, index: usize) -> String {
    format!(
        "eni-{}",
        &sha1_hex(&format!("{topology}/{owner}/{index}"))[..10]
    )
}

/// Locally administered unicast MAC (first byte 0x02) from sha1 of the
/// namespace key and interface name; `salt` > 0 re-rolls after a collision.
pub fn mac(ns_key: &str, ifname: &str, salt: u32) -> [u8; 6] {
    let input = if salt == 0 {
        format!("{ns_key}|{ifname}")
    } else {
        format!("{ns_key}|{ifname}#{salt}")
    };
    let h = sha1_bytes(&input);
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

pub fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Terway's host-side veth: `cali` + the first 11 hex digits of
/// `sha1("<namespace>.<name>")` (terway `link.VethNameForPod`; the Go code
/// joins namespace and name with a dot).
pub fn terway_veth(pod_ns: &str, pod_name: &str) -> String {
    format!("cali{}", &sha1_hex(&format!("{pod_ns}.{pod_name}"))[..11])
}

/// Flannel (bridge plugin) host-side veth: `veth` + 8 hex of sha1 of the pod key.
pub fn flannel_veth(pod_key: &str) -> String {
    format!("veth{}", &sha1_hex(pod_key)[..8])
}

/// Keep `[A-Za-z0-9._-]`, replace anything else by `-`.
pub fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The natural suffix of a namespace key (before uniqueness/length fixes).
pub fn natural_short(key: &str) -> String {
    if key == "vpc" {
        return "vpc".into();
    }
    let (kind, rest) = key.split_once('/').unwrap_or(("ns", key));
    let prefix = match kind {
        "eni" => "e",
        "node" => "n",
        "pod" => "p",
        "external" => "x",
        "slb" => "s",
        "hv" => "h",
        other => other,
    };
    sanitize(&format!("{prefix}-{}", rest.replace('/', "-")))
}

/// Hands out unique, filesystem-safe namespace suffixes of at most
/// [`MAX_SHORT`] chars.
#[derive(Debug, Default)]
pub struct ShortNames {
    used: HashSet<String>,
}

impl ShortNames {
    pub fn alloc(&mut self, key: &str) -> String {
        let natural = natural_short(key);
        let mut short = if natural.len() > MAX_SHORT || self.used.contains(&natural) {
            hashed(&natural, key, 0)
        } else {
            natural.clone()
        };
        let mut salt = 1;
        while self.used.contains(&short) {
            short = hashed(&natural, key, salt);
            salt += 1;
        }
        self.used.insert(short.clone());
        short
    }
}

/// First 29 chars of `natural`, `-`, 10 hex of sha1(key): 40 chars at most.
fn hashed(natural: &str, key: &str, salt: u32) -> String {
    let head: String = natural.chars().take(MAX_SHORT - 11).collect();
    let input = if salt == 0 {
        key.to_string()
    } else {
        format!("{key}#{salt}")
    };
    format!("{head}-{}", &sha1_hex(&input)[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eni_id_fits_an_interface_name() {
        let id = eni_id("lab", "node/n1", 0);
        assert_eq!(id.len(), 14);
        assert!(id.starts_with("eni-"));
        assert_ne!(id, eni_id("lab", "node/n2", 0));
    }

    #[test]
    fn terway_veth_matches_terway() {
        // sha1("default.nginx") = c440f455693b…, computed with python hashlib.
        assert_eq!(terway_veth("default", "nginx"), "calic440f455693");
    }

    #[test]
    fn shorts_are_unique_and_bounded() {
        let mut s = ShortNames::default();
        let a = s.alloc("pod/a-b/c");
        let b = s.alloc("pod/a/b-c");
        assert_eq!(a, "p-a-b-c");
        assert_ne!(a, b);
        let long = s.alloc(&format!("pod/default/{}", "x".repeat(80)));
        assert!(long.len() <= MAX_SHORT, "{long}");
        assert_eq!(
            s.alloc("node/cn-hongkong.10.0.4.20"),
            "n-cn-hongkong.10.0.4.20"
        );
        assert_eq!(s.alloc("vpc"), "vpc");
    }

    #[test]
    fn macs_are_locally_administered_unicast() {
        let m = mac("node/n1", "eth0", 0);
        assert_eq!(m[0] & 0x03, 0x02);
        assert_ne!(m, mac("node/n1", "eth0", 1));
    }
}
