//! Files side by side (`cnlab check -j N`) and split across machines
//! (`--shard K/N`). A lab spends most of a `check` waiting — on `timeout`
//! expectations (1.5 s each), on the kernel — so several labs overlap well
//! even on two cores. Results and progress lines come out in input order,
//! exactly as with `-j 1`.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// Files at once when `-j` is not given: enough to overlap the waits on a
/// small machine without starving the kernel (bring-up holds RTNL).
pub fn default_jobs() -> usize {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    (cpus * 4).clamp(4, 16)
}

/// Shard `index` of `count` (1-based, as `--shard 2/4` says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s:?}: expected K/N with 1 <= K <= N (e.g. 2/4)");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = k.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard runs `file`. The assignment depends only on the
    /// file's name (FNV-1a), so it is the same on every machine and does not
    /// move when other files are added or removed.
    pub fn owns(&self, file: &Path) -> bool {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| file.display().to_string());
        (fnv1a(name.as_bytes()) % self.count as u64) as usize == self.index - 1
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `work(i, &items[i])` for every item, `jobs` at a time, results in input
/// order. `done(i, &result)` runs on the calling thread for every item in
/// input order, as soon as it and every item before it finished (progress
/// lines print as with one job).
pub fn run_ordered<T, R, W, D>(items: &[T], jobs: usize, work: W, mut done: D) -> Vec<R>
where
    T: Sync,
    R: Send,
    W: Fn(usize, &T) -> R + Sync,
    D: FnMut(usize, &R),
{
    let jobs = jobs.clamp(1, items.len().max(1));
    let next = AtomicUsize::new(0);
    let mut slots: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            s.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                if tx.send((i, work(i, item))).is_err() {
                    break;
                }
            });
        }
        drop(tx);
        let mut reported = 0;
        for (i, r) in rx.iter() {
            slots[i] = Some(r);
            while let Some(Some(r)) = slots.get(reported) {
                done(reported, r);
                reported += 1;
            }
        }
    });
    slots.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    #[test]
    fn shards_parse_and_split_every_file_exactly_once() {
        assert_eq!(
            "2/4".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 4 }
        );
        for bad in ["0/4", "5/4", "1/0", "x/2", "3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        let files: Vec<PathBuf> = (0..40)
            .map(|i| PathBuf::from(format!("d/f{i}.yaml")))
            .collect();
        let shards: Vec<Shard> = (1..=4).map(|k| Shard { index: k, count: 4 }).collect();
        for f in &files {
            assert_eq!(
                shards.iter().filter(|s| s.owns(f)).count(),
                1,
                "{}",
                f.display()
            );
        }
        // Stable: by name only, wherever the directory is.
        let s = Shard { index: 1, count: 3 };
        assert_eq!(
            s.owns(Path::new("/a/t4.yaml")),
            s.owns(Path::new("topologies/scenarios/t4.yaml"))
        );
        // Not all on one shard.
        assert!(shards.iter().all(|s| files.iter().any(|f| s.owns(f))));
    }

    #[test]
    fn results_and_progress_come_in_input_order() {
        let items: Vec<u64> = vec![50, 5, 30, 1, 20, 0];
        let mut seen = Vec::new();
        let out = run_ordered(
            &items,
            4,
            |i, ms| {
                std::thread::sleep(Duration::from_millis(*ms));
                i * 10
            },
            |i, r| seen.push((i, *r)),
        );
        assert_eq!(out, vec![0, 10, 20, 30, 40, 50]);
        assert_eq!(seen, (0..6).map(|i| (i, i * 10)).collect::<Vec<_>>());
        let t = std::time::Instant::now();
        let _ = run_ordered(
            &[100u64; 4],
            4,
            |_, ms| std::thread::sleep(Duration::from_millis(*ms)),
            |_, _| {},
        );
        assert!(
            t.elapsed() < Duration::from_millis(350),
            "ran one after another: {:?}",
            t.elapsed()
        );
        assert!(run_ordered(&[] as &[u8], 4, |_, _| 1, |_, _| {}).is_empty());
    }
}
