#![no_main]
//! `cnlab::fuzzing::planner` under libFuzzer (see scripts/fuzz).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| cnlab::fuzzing::planner(data));
