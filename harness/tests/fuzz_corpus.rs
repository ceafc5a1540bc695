//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`: the shipped
//! topologies, hand-made frames, and every input libFuzzer once crashed on,
//! kept as regression cases) replayed through the very functions the
//! targets run (`cnlab::fuzzing`). This is what `cargo test` runs; the
//! libFuzzer builds need cargo-fuzz and a nightly-flag compiler, and run
//! from `scripts/fuzz` (see the README).

use std::path::Path;

fn replay(target: &str, run: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{}: corpus too small", dir.display());
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let name = f.display().to_string();
        if let Err(e) = std::panic::catch_unwind(|| run(&data)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{target}: {name}: {msg}");
        }
    }
}

#[test]
fn topology_corpus() {
    replay("topology", cnlab::fuzzing::topology);
}

#[test]
fn planner_corpus() {
    replay("planner", cnlab::fuzzing::planner);
}

#[test]
fn decode_corpus() {
    replay("decode", cnlab::fuzzing::decode);
}
