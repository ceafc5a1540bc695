//! `cnlab graph FILE|LAB`: a picture of the lab (SVG, DOT or Mermaid), with
//! `--path FROM TO` the hops one real probe's request and reply crossed.

mod model;
mod render;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::ValueEnum;

use super::commands::{need_root, EXIT_ENV, EXIT_FAIL, EXIT_OK};
use super::{running, BackendArg};
use crate::check::input::load_planned;
use crate::check::observe::observe;
use crate::lab::{Lab, UpOptions};
use crate::plan::LabPlan;
use crate::topology::model::Proto;
pub use model::Graph;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Svg,
    Dot,
    Mermaid,
}

#[derive(Debug, clap::Args)]
pub struct GraphArgs {
    /// A topology file, or the id or name of a running lab.
    #[arg(value_name = "FILE|LAB")]
    pub what: String,
    /// Send one probe FROM → TO (as in `expect:`) and draw the hops its
    /// request (red) and reply (blue) were seen on. A FILE is brought up for
    /// it and torn down after.
    #[arg(long, num_args = 2, value_names = ["FROM", "TO"])]
    pub path: Option<Vec<String>>,
    /// tcp, udp or icmp (with --path).
    #[arg(long, default_value = "tcp")]
    pub proto: String,
    /// Output format (default: from -o's extension, else svg).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    pub backend: BackendArg,
}

fn format_of(args: &GraphArgs) -> Format {
    if let Some(f) = args.format {
        return f;
    }
    match args
        .output
        .as_deref()
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
    {
        Some("dot" | "gv") => Format::Dot,
        Some("mmd" | "mermaid" | "md") => Format::Mermaid,
        _ => Format::Svg,
    }
}

pub fn run(args: &GraphArgs) -> Result<i32, i32> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("cnlab graph: {e}");
        EXIT_FAIL
    };
    let proto: Proto = serde_yaml_ng::from_str(&args.proto)
        .map_err(|_| fail(&"--proto must be tcp, udp or icmp"))?;
    let file = Path::new(&args.what);
    let graph = if file.is_file() {
        let loaded = load_planned(file).map_err(|r| {
            eprintln!("{r}");
            EXIT_FAIL
        })?;
        match &args.path {
            None => {
                let backends = if crate::lab::is_root() {
                    crate::lab::backends(args.backend.into()).map_err(|e| {
                        eprintln!("cnlab graph: {e}");
                        EXIT_ENV
                    })?
                } else {
                    crate::plan::Backends::PORTABLE
                };
                let plan = crate::plan::plan(&loaded.resolved, backends).map_err(|e| fail(&e))?;
                Graph::of(&plan)
            }
            Some(p) => {
                need_root("graph --path")?;
                let opts = UpOptions {
                    backend: args.backend.into(),
                    file: Some(file.display().to_string()),
                    ..Default::default()
                };
                let lab = Lab::up(&loaded.resolved, &opts).map_err(|e| {
                    eprintln!("cnlab graph: {e}");
                    EXIT_ENV
                })?;
                let g = probed(&lab, &p[0], &p[1], proto);
                lab.down();
                g.map_err(|e| fail(&e))?
            }
        }
    } else {
        let rec = running::find(Some(&args.what))
            .map_err(|e| fail(&format!("{}: not a file, and {e}", args.what)))?;
        let lab = Lab::attach(&rec.id).map_err(|e| fail(&e))?;
        match &args.path {
            None => Graph::of(lab.plan()),
            Some(p) => {
                need_root("graph --path")?;
                probed(&lab, &p[0], &p[1], proto).map_err(|e| fail(&e))?
            }
        }
    };
    let text = match format_of(args) {
        Format::Dot => render::dot(&graph),
        Format::Mermaid => render::mermaid(&graph),
        Format::Svg => render::svg(&graph).map_err(|e| fail(&e))?,
    };
    match &args.output {
        Some(out) => {
            std::fs::write(out, text).map_err(|e| fail(&format!("-o {}: {e}", out.display())))?
        }
        None => print!("{text}"),
    }
    Ok(EXIT_OK)
}

/// The lab's graph with one probe's observed hops overlaid.
fn probed(lab: &Lab, from: &str, to: &str, proto: Proto) -> Result<Graph, String> {
    let o = observe(
        lab,
        "graph",
        from,
        to,
        proto,
        Duration::from_millis(1500),
        true,
    );
    if let Some(e) = o.error {
        return Err(e);
    }
    let plan: &LabPlan = lab.plan();
    let ids = |h: &[crate::probe::Hop]| h.iter().map(|h| h.point.clone()).collect::<Vec<_>>();
    eprintln!(
        "{from} → {to}: {}{}",
        o.outcome.verdict.as_str(),
        if o.outcome.detail.is_empty() {
            String::new()
        } else {
            format!(" ({})", o.outcome.detail)
        }
    );
    let show = |h: &[crate::probe::Hop]| {
        h.iter()
            .map(|h| crate::check::observe::display_point(plan, &h.point))
            .collect::<Vec<_>>()
            .join(" → ")
    };
    eprintln!("  request: {}", show(&o.request));
    eprintln!("  reply:   {}", show(&o.reply));
    let mut g = Graph::of(plan);
    g.overlay(plan, &ids(&o.request), &ids(&o.reply));
    Ok(g)
}
