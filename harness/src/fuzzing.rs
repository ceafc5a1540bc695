//! The bodies of the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the
//! library so that the corpus replay test (`harness/tests/fuzz_corpus.rs`)
//! runs exactly what libFuzzer runs. Each panics on a finding: a panic
//! inside the code under test, or a broken invariant.

use crate::plan::{self, Backends};
use crate::topology::load_str;

/// Topology parser and validator: any bytes; never a panic, and an error
/// report always names at least one problem.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(r) = load_str(text, "fuzz.yaml") {
        assert!(!r.errors.is_empty(), "a rejected topology with no problem");
        // Rendering the report must not panic either.
        let _ = r.to_string();
    }
}

/// Planner on validated input: planning never panics, and a plan keeps
/// every invariant of `plan::invariants` and comes out the same twice.
pub fn planner(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = load_str(text, "fuzz.yaml") else {
        return;
    };
    for b in [Backends::PORTABLE, Backends::NATIVE] {
        let Ok(p) = plan::plan(&loaded.resolved, b) else {
            continue;
        };
        let v = plan::invariants::violations(&p);
        assert!(v.is_empty(), "plan invariants broken:\n{}", v.join("\n"));
        let again = plan::plan(&loaded.resolved, b).expect("planned once, fails twice");
        assert!(again == p, "planning the same topology twice differs");
        let _ = plan::render(&p);
    }
}

/// The tap decoder: any frame; never a panic, and what it decodes is
/// consistent (ports only for TCP/UDP, ICMP fields only for ICMP).
pub fn decode(data: &[u8]) {
    use crate::probe::decode::{decode_frame, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
    if let Some(d) = decode_frame(data) {
        if d.proto != PROTO_TCP && d.proto != PROTO_UDP {
            assert!(
                d.sport == 0 && d.dport == 0,
                "ports on protocol {}",
                d.proto
            );
        }
        if d.proto != PROTO_ICMP {
            assert!(d.icmp_type.is_none() && d.icmp_id.is_none());
        }
        if d.tcp_flags.is_some() {
            assert_eq!(d.proto, PROTO_TCP);
        }
    }
}
