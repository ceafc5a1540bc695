//! `cnlab capture LAB POINT…`: a live pcapng stream from a running lab, one
//! interface block per observation point (named by its id), for Wireshark
//! (`cnlab capture LAB pod/x | wireshark -k -i -`) or a file. Runs until
//! Ctrl-C, a closed pipe, `-c N` packets or `--seconds S`.

use std::borrow::Cow;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;

use super::commands::{need_root, EXIT_FAIL, EXIT_OK};
use super::running;
use crate::check::observe::{canonical_point, display_point};
use crate::check::pcap::{interface_block, packet_block};
use crate::lab::Lab;
use crate::plan::ObsPoint;
use crate::probe::{Capture, TapPoint, Taps};

#[derive(Debug, clap::Args)]
pub struct CaptureArgs {
    /// Lab id or topology name (`cnlab status` lists them).
    pub lab: String,
    /// Observation points (`pod/<ns>/<n>`, `eni/member:<ns>/<n>`,
    /// `trunk/<node>`, `vpc`, …, as in `path:`); `all` for every one.
    #[arg(required = true, value_name = "POINT")]
    pub points: Vec<String>,
    /// Write pcapng here; `-` (the default) is stdout.
    #[arg(
        short = 'w',
        long = "write",
        value_name = "FILE|-",
        default_value = "-"
    )]
    pub write: String,
    /// Stop after this many packets.
    #[arg(short = 'c', long = "count", value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "S")]
    pub seconds: Option<f64>,
}

/// Buffers one block and hands it to the output in one write, flushed: a
/// reader sees whole blocks as they come, and an interrupted capture leaves
/// a file that ends at a block boundary.
struct BlockWriter<W: Write> {
    buf: Vec<u8>,
    out: W,
}

impl<W: Write> Write for BlockWriter<W> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

fn resolve<'a>(
    plan: &'a crate::plan::LabPlan,
    names: &[String],
) -> Result<Vec<&'a ObsPoint>, String> {
    if names.iter().any(|n| n == "all") {
        return Ok(plan.points.iter().collect());
    }
    let mut out: Vec<&ObsPoint> = Vec::new();
    let mut unknown = Vec::new();
    for n in names {
        let id = canonical_point(plan, n);
        match plan.points.iter().find(|p| p.id == id) {
            Some(p) if !out.iter().any(|q| q.id == p.id) => out.push(p),
            Some(_) => {}
            None => unknown.push(n.clone()),
        }
    }
    if unknown.is_empty() {
        return Ok(out);
    }
    let known: Vec<String> = plan
        .points
        .iter()
        .map(|p| display_point(plan, &p.id.to_string()))
        .collect();
    Err(format!(
        "no observation point {} in this lab; points: {}",
        unknown.join(", "),
        known.join(", ")
    ))
}

pub fn run(args: &CaptureArgs) -> Result<i32, i32> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("cnlab capture: {e}");
        EXIT_FAIL
    };
    need_root("capture")?;
    let rec = running::find(Some(&args.lab)).map_err(|e| fail(&e))?;
    let lab = Lab::attach(&rec.id).map_err(|e| fail(&e))?;
    let plan = lab.plan();
    let points = resolve(plan, &args.points).map_err(|e| fail(&e))?;
    let mut per_ns: Vec<(usize, Vec<TapPoint>)> = Vec::new();
    for p in &points {
        let tps = crate::check::observe::tap_points(plan, p);
        match per_ns.iter_mut().find(|(ns, _)| *ns == p.ns) {
            Some((_, v)) => v.extend(tps),
            None => per_ns.push((p.ns, tps)),
        }
    }
    let targets: Vec<_> = per_ns
        .into_iter()
        .map(|(ns, v)| (lab.netns(ns), v))
        .collect();
    let out: Box<dyn Write> = if args.write == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let path = PathBuf::from(&args.write);
        Box::new(
            std::fs::File::create(&path)
                .map_err(|e| fail(&format!("-w {}: {e}", path.display())))?,
        )
    };
    let names: Vec<String> = points
        .iter()
        .map(|p| display_point(plan, &p.id.to_string()))
        .collect();
    let section = SectionHeaderBlock {
        options: vec![
            SectionHeaderOption::Comment(Cow::Owned(format!(
                "cnlab capture of lab {} ({}): {}",
                rec.id,
                rec.name,
                names.join(", ")
            ))),
            SectionHeaderOption::UserApplication(Cow::Borrowed("cnlab")),
        ],
        ..Default::default()
    };
    let io = |e: &dyn std::fmt::Display| fail(&format!("writing the capture: {e}"));
    let mut w = PcapNgWriter::with_section_header(
        BlockWriter {
            buf: Vec::new(),
            out,
        },
        section,
    )
    .map_err(|e| io(&e))?;
    for p in &points {
        w.write_pcapng_block(interface_block(plan, p))
            .map_err(|e| io(&e))?;
    }
    w.get_mut().flush().map_err(|e| io(&e))?;
    let (tx, rx) = mpsc::channel::<Capture>();
    let taps =
        Taps::open_streaming(&targets, tx).map_err(|e| fail(&format!("opening taps: {e}")))?;
    eprintln!(
        "cnlab capture: lab {} ({}), {} point(s): {}; Ctrl-C stops",
        rec.id,
        rec.name,
        names.len(),
        names.join(", ")
    );
    let deadline = args
        .seconds
        .map(|s| Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    let mut written = 0u64;
    loop {
        if args.count.is_some_and(|c| written >= c) {
            break;
        }
        let wait = match deadline {
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) => left,
                None => break,
            },
            None => Duration::from_millis(500),
        };
        let c = match rx.recv_timeout(wait) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(packet) = packet_block(plan, &points, &c) {
            w.write_pcapng_block(packet).map_err(|e| io(&e))?;
            // A closed pipe (Wireshark quit) ends the capture, quietly.
            if let Err(e) = w.get_mut().flush() {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    break;
                }
                return Err(io(&e));
            }
            written += 1;
        }
    }
    drop(rx);
    drop(taps);
    eprintln!("cnlab capture: {written} packet(s)");
    Ok(EXIT_OK)
}
