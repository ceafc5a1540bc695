#![no_main]
//! `cnlab::fuzzing::decode` under libFuzzer (see scripts/fuzz).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnlab::fuzzing::decode(data));
