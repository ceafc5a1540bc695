//! The `cnlab` command line.

mod bench;
mod capture;
mod commands;
pub mod get;
mod graph;
mod matrix;
mod pods;
mod progress;
mod running;
pub mod services;
mod trace;
mod vm;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use crate::kernel::caps::BackendChoice;

/// Kubernetes-on-cloud networks in Linux network namespaces, checked with real packets.
///
/// A topology YAML describes a VPC (vSwitches, security groups, route entries),
/// nodes with their ENIs, hosts outside the cluster, Kubernetes objects as
/// `kubectl get -o yaml` prints them, and expectations (`from → to: connected,
/// source, path`). cnlab builds it from real network namespaces, plumbs it the
/// way the CNI and kube-proxy would, sends real packets and reports what
/// connected, which source address the server saw and which path packets took.
///
/// Commands that build labs need root (`sudo`). Nothing is created in the host's
/// own network namespace and no lab has a path off the machine.
#[derive(Debug, Parser)]
#[command(name = "cnlab", version, max_term_width = 100, after_help = EXIT_CODES)]
pub struct Cli {
    /// Log level for diagnostics on stderr (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "CNLAB_LOG")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Every command's exit status (also in the README).
pub const EXIT_CODES: &str = "Exit codes:
  0   everything held (check), the probe connected (trace, explain), the command did its work
  1   an expectation failed, a probe did not connect, the input is invalid, or the command failed
  2   the environment cannot run a lab: not root, a kernel feature missing with no backend
  64  usage error: an unknown command, option or value (clap's message; sysexits EX_USAGE)
  cnlab shell and cnlab vm exit with the status of the command they ran.";

/// Usage errors exit 64 (EX_USAGE) so that 2 means only "this
/// environment cannot run a lab".
pub const EXIT_USAGE: i32 = 64;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// Native kernel features where the kernel has them, portable stand-ins elsewhere.
    Auto,
    /// 802.1Q devices, ipvlan, dummy, IPVS; fails if the kernel lacks one.
    Native,
    /// eBPF VLAN push/pop, macvlan, a port-less bridge, nftables with IPVS semantics.
    Portable,
}

impl From<BackendArg> for BackendChoice {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Auto => BackendChoice::Auto,
            BackendArg::Native => BackendChoice::Native,
            BackendArg::Portable => BackendChoice::Portable,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PodCommand {
    /// Recreate a pod's network namespace and plumbing, as a kubelet does when it
    /// restarts the pod sandbox; the pod keeps its address (Fixed PodNetworking).
    Restart {
        /// <ns>/<name> or pod/<ns>/<name>
        pod: String,
        #[arg(long)]
        lab: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum CniCommand {
    /// Run CNI CHECK for pods plumbed by CNI plugins (all of them when none is named),
    /// with the result of their ADD as `prevResult`, as the spec says: each plugin of the
    /// chain in order, the first error ends a pod's CHECK; never for cniVersion before
    /// 0.4.0 or a list with `disableCheck`. Prints one line per pod; exit 1 if any failed.
    Check {
        /// <ns>/<name> or pod/<ns>/<name>
        pods: Vec<String>,
        /// Lab id or topology name (default: the only running lab).
        #[arg(long)]
        lab: Option<String>,
    },
}

/// One probe in a running lab (`trace`, `explain`).
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// pod/<ns>/<name>, node/<name> or external/<name>.
    pub from: String,
    /// pod/<ns>/<name>:<port>, service/<ns>/<name>:<port>[@external-ip|@lb],
    /// nodeport/<node>/<ns>/<name> or ip/<addr>:<port> (as in `expect:`).
    pub to: String,
    /// tcp, udp or icmp.
    #[arg(long, default_value = "tcp", value_parser = ["tcp", "udp", "icmp"])]
    pub proto: String,
    /// Lab id or topology name (default: the only running lab).
    #[arg(long)]
    pub lab: Option<String>,
    /// Probe deadline in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub timeout_ms: u64,
}

/// `cnlab check` options for looking into a failure.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct CheckExplain {
    /// Run only the expectation with this name (in every file that has it).
    #[arg(long, value_name = "NAME")]
    pub only: Option<String>,
    /// Leave the lab up when an expectation fails, and print how to look inside.
    #[arg(long)]
    pub keep: bool,
    /// Write one pcapng file per probe into this directory (every
    /// observation point an interface, named by its id).
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,
    /// A line on stderr per finished expectation (on a terminal a live
    /// status line is shown anyway).
    #[arg(long)]
    pub progress: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build each topology, probe every expectation, tear down; exit 0 only if all hold.
    ///
    /// Arguments are topology files or directories (their *.yaml files). Prints a
    /// table per file (expectation, observed result, observed source, path).
    /// Exit codes: 0 all hold, 1 an expectation failed or a file is invalid,
    /// 2 the environment cannot run labs (not root, missing kernel feature).
    Check {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
        /// Print results as JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write JUnit XML to this path.
        #[arg(long, value_name = "PATH")]
        junit: Option<PathBuf>,
        /// Kernel feature backends.
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        /// Probes in flight at once per lab.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        #[command(flatten)]
        explain: CheckExplain,
        /// Labs (files) at once; output order stays that of -j 1. Default:
        /// 4 per CPU, 4..16.
        #[arg(short = 'j', long = "jobs", value_name = "N")]
        jobs: Option<usize>,
        /// Run only shard K of N (stable by file name), e.g. --shard 2/4.
        #[arg(long, value_name = "K/N")]
        shard: Option<crate::check::runner::Shard>,
    },
    /// Print the topology's JSON Schema (for editors), or with --markdown the key reference of docs/topology.md.
    Schema {
        #[arg(long)]
        markdown: bool,
    },
    /// Check a topology file without building anything: every problem with its YAML path and line.
    Validate {
        #[arg(required = true, value_name = "FILE|DIR")]
        paths: Vec<PathBuf>,
    },
    /// Print every namespace, link, address, route, rule, sysctl and nft ruleset a topology becomes.
    Plan {
        file: PathBuf,
        /// Plan for these backends (default: what this kernel supports, or portable when not root).
        #[arg(long, value_enum)]
        backend: Option<BackendArg>,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Bring a lab up and keep it running until Ctrl-C (or `cnlab down` with --detach).
    Up {
        file: PathBuf,
        /// Hand the lab to a background keeper process and return once it is ready.
        #[arg(long)]
        detach: bool,
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
        #[arg(long, hide = true)]
        keeper: bool,
    },
    /// Stop a running lab (by id or topology name; the only one if omitted).
    Down {
        lab: Option<String>,
        /// Stop every running lab.
        #[arg(long)]
        all: bool,
    },
    /// List running labs, their owner process, namespaces and pending pods.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Send one probe in a running lab and print the verdict, source and path.
    ///
    /// FROM is pod/<ns>/<name>, node/<name> or external/<name>; TO is
    /// pod/<ns>/<name>:<port> or ip/<addr>:<port> (as in `expect:`).
    /// Exits 0 when the probe connected, 1 when it did not (refused, timeout)
    /// or could not be sent.
    Trace(ProbeArgs),
    /// Like trace, and name every security-group and NAT rule whose counter the probe moved.
    ///
    /// Answers "which rule dropped it": e.g. `eni/member:shop/web  default ingress drop → drop`.
    /// Exits as trace does.
    Explain(ProbeArgs),
    /// Act on a pod of a running lab.
    #[command(subcommand)]
    Pod(PodCommand),
    /// CNI runtime verbs on a running lab whose pods CNI plugins plumbed (`cnlab cni check`).
    #[command(subcommand)]
    Cni(CniCommand),
    /// Open a shell (or run a command) inside a node, pod, ENI, external or the VPC router of a running lab.
    ///
    /// TARGET is a namespace key (node/<name>, pod/<ns>/<name>, eni/<id>, vpc,
    /// external/<name>) or just a node or pod name.
    Shell {
        target: String,
        #[arg(long)]
        lab: Option<String>,
        /// Command to run instead of $SHELL.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Probe this kernel's features in a scratch namespace and print the backend chosen for each.
    Doctor {
        #[arg(long, value_enum, default_value = "auto")]
        backend: BackendArg,
    },
    /// Remove every namespace, file and BPF pin of labs whose owner process is gone.
    Gc,
    /// List ENIs, PodENIs, PodNetworkings, Services, endpoints, CLBs or pods (kubectl style) of a running lab or a topology file.
    ///
    /// `get pods` shows each pod's CNI result where CNI plugins plumbed it: network and plugin
    /// chain, cniVersion, interfaces (`name@sandbox` inside the pod), IPs with gateway,
    /// routes, DNS, and the plugin's error for a pod whose ADD failed.
    Get {
        #[arg(value_enum)]
        what: get::Resource,
        #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
        output: get::Output,
        /// Plan this topology file instead of reading a running lab.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
        /// Lab id or topology name (default: the only running lab).
        #[arg(long)]
        lab: Option<String>,
    },
    /// A node's service rules: its nft ruleset and an `ipvsadm -Ln`-style list of virtual servers.
    Rules {
        node: String,
        #[arg(long)]
        lab: Option<String>,
    },
    /// Time bring-up, probing and teardown next to Mininet and the kernel's floor.
    ///
    /// Cases: flat-N (one node, N pods, all-pairs TCP probes; Mininet's
    /// pingAll on the same N hosts and `ip -batch` alongside), reference (the
    /// largest shipped scenario), scale (20 nodes × 50 pods, 1,000 random
    /// probes, peak RSS). Prints medians and ratios; --json keeps every sample.
    Bench(bench::BenchArgs),
    /// Boot a stock kernel (Debian/Ubuntu package) in qemu with this machine's root
    /// shared read-only and run a command inside; exits with the command's status.
    ///
    /// `cnlab vm --kernel 6.12 -- ./target/debug/cnlab check --backend native topologies/scenarios`
    Vm(vm::VmArgs),
    /// The connectivity matrix: from an ECS outside the cluster, a node and a
    /// pod to pod IP, ClusterIP, NodePort and LoadBalancer (eTP Cluster and
    /// Local, backend on the same node and on another), one real probe per cell.
    ///
    /// Prints a Markdown table (cell: outcome and the source address the
    /// server saw) and names the cells the topology cannot form. --save keeps
    /// the matrix as JSON; --expect SAVED exits 1 listing the cells that differ.
    Matrix(matrix::MatrixArgs),
    /// Draw the lab: VPC, vSwitches, security groups, ENIs (primary,
    /// secondary, trunk, member), nodes, pods, SLBs and externals, as SVG, DOT
    /// or Mermaid; with --path FROM TO, one real probe's request and reply hops.
    ///
    /// `cnlab graph topologies/scenarios/t10-slb-to-member-enis.yaml --path
    /// external/client service/trunking/nginx-cluster:80@lb -o t10.svg`
    Graph(graph::GraphArgs),
    /// Stream a live pcapng from a running lab (`cnlab up --detach`), one
    /// interface per observation point, named by its id; until Ctrl-C.
    ///
    /// `cnlab capture LAB pod/default/web eth0/node-2 | wireshark -k -i -`
    Capture(capture::CaptureArgs),
}

pub fn main() -> i32 {
    // Signals first: every thread started later inherits the blocked mask,
    // and a dedicated thread tears labs down on SIGINT/SIGTERM.
    crate::lab::live::install_signal_teardown();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print to stdout and succeed; anything else
        // is a usage error in clap's words.
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_USAGE } else { 0 };
        }
    };
    // Commands that own no lab die quietly when their output pipe closes
    // (`cnlab trace … | head`), as Unix tools do. Lab owners keep Rust's
    // default (EPIPE): they must live to tear their lab down.
    if !matches!(
        cli.command,
        Command::Check { .. }
            | Command::Up { .. }
            | Command::Bench(_)
            | Command::Vm(_)
            | Command::Matrix(_)
            | Command::Graph(_)
    ) {
        // SAFETY: restoring a default signal disposition before any output.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&cli.log)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    commands::run(cli.command)
}
