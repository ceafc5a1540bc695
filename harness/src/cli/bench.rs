//! `cnlab bench`: bring-up, probing and teardown timings next to Mininet
//! and the kernel's floor.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::BackendArg;
use crate::bench::{self, BenchOptions, Case, ScaleCni, ScaleOptions};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CaseArg {
    /// One node, N pods on its bridge, all-pairs TCP probes; Mininet and the floor alongside.
    Flat,
    /// The largest shipped scenario (or topologies/reference/): up, every expectation, down.
    Reference,
    /// Only the kernel's floor (ip -batch) for the flat sizes.
    Floor,
    /// Nodes × pods (20 × 50), random probes, peak RSS.
    Scale,
    All,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Cases to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub case: Vec<CaseArg>,
    /// Pod counts of the flat case (comma-separated).
    #[arg(long = "n", value_delimiter = ',', default_value = "10,50,100")]
    pub sizes: Vec<usize>,
    /// Runs per case; the table shows medians.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Print the report as JSON (every sample) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Skip Mininet even when it is installed.
    #[arg(long)]
    pub no_mininet: bool,
    /// Probes in flight at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Scale case: nodes.
    #[arg(long, default_value_t = 20)]
    pub scale_nodes: usize,
    /// Scale case: pods per node.
    #[arg(long, default_value_t = 50)]
    pub scale_pods: usize,
    /// Scale case: random pod-to-pod probes.
    #[arg(long, default_value_t = 1000)]
    pub scale_probes: usize,
    /// Scale case: flannel or terway-trunking.
    #[arg(long, default_value = "flannel")]
    pub scale_cni: ScaleCni,
    /// Directory holding scenarios/ (and reference/, when it exists).
    #[arg(long, default_value = "topologies")]
    pub topologies: PathBuf,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
    /// How trunk VLAN programs attach (comma-separated: the reference case
    /// runs once per mode, side by side). Default: the automatic choice.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub tc_attach: Vec<crate::kernel::tc::TcAttach>,
}

impl BenchArgs {
    pub fn options(&self) -> BenchOptions {
        let mut cases = Vec::new();
        for c in &self.case {
            let add: &[Case] = match c {
                CaseArg::Flat => &[Case::Flat],
                CaseArg::Reference => &[Case::Reference],
                CaseArg::Floor => &[Case::Floor],
                CaseArg::Scale => &[Case::Scale],
                CaseArg::All => &[Case::Flat, Case::Reference, Case::Scale],
            };
            for a in add {
                if !cases.contains(a) {
                    cases.push(*a);
                }
            }
        }
        BenchOptions {
            cases,
            sizes: self.sizes.clone(),
            repeat: self.repeat,
            mininet: !self.no_mininet,
            parallel: self.parallel,
            scale: ScaleOptions {
                nodes: self.scale_nodes,
                pods_per_node: self.scale_pods,
                probes: self.scale_probes,
                cni: self.scale_cni,
            },
            topologies: self.topologies.clone(),
            backend: self.backend.into(),
            tc_attach: self.tc_attach.clone(),
        }
    }
}

/// Exit 0 when every case ran and every probe held, 1 when a probe did not
/// hold, 2 when a case could not run.
pub fn run(args: &BenchArgs) -> i32 {
    let opts = args.options();
    let mut progress = |line: &str| eprintln!("{line}");
    match bench::run(&opts, &mut progress) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_table());
            }
            if report.cases.iter().all(|c| c.passed == c.probes) {
                0
            } else {
                1
            }
        }
        Err(e) => {
            eprintln!("cnlab bench: {e}");
            2
        }
    }
}
