#![no_main]
//! `cnlab::fuzzing::topology` under libFuzzer (see scripts/fuzz).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnlab::fuzzing::topology(data));
