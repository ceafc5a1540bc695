//! `check --pcap DIR`: one pcapng file per probe. Every observation point
//! of the lab is an interface block named by its id (so Wireshark's
//! interface column reads `eni/primary:node-a`, `vpc`, …), the section
//! comment carries the expectation and what was observed, and each packet
//! says where it was seen and which way it went.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pcap_file::pcapng::blocks::enhanced_packet::{EnhancedPacketBlock, EnhancedPacketOption};
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use super::observe::display_point;
use super::{proto_word, CheckResult};
use crate::plan::LabPlan;
use crate::probe::Capture;

/// `DIR/<topology file stem>--<expectation name>.pcapng`, the name made
/// safe for a file system.
pub fn file_for(dir: &Path, topology: &str, expectation: &str) -> PathBuf {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let stem = Path::new(topology)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!("{}--{}.pcapng", safe(&stem), safe(expectation)))
}

/// Writes the frames of one probe.
pub fn write(
    path: &Path,
    plan: &LabPlan,
    r: &CheckResult,
    frames: &[Capture],
) -> std::io::Result<()> {
    let err = |e: pcap_file::PcapError| std::io::Error::other(e.to_string());
    let e = &r.expect;
    let comment = format!(
        "cnlab expectation {:?}: {} -> {} {}, expected {}, observed {}{}",
        e.name,
        e.from,
        e.to,
        proto_word(e.proto),
        e.result.as_str(),
        super::report::observed_word(r),
        if r.failures.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.failures.join("; "))
        }
    );
    let section = SectionHeaderBlock {
        options: vec![
            SectionHeaderOption::Comment(Cow::Owned(comment)),
            SectionHeaderOption::UserApplication(Cow::Borrowed("cnlab")),
        ],
        ..Default::default()
    };
    let file = std::fs::File::create(path)?;
    let mut w =
        PcapNgWriter::with_section_header(std::io::BufWriter::new(file), section).map_err(err)?;
    let points: Vec<&crate::plan::ObsPoint> = plan.points.iter().collect();
    for p in &points {
        w.write_pcapng_block(interface_block(plan, p))
            .map_err(err)?;
    }
    for c in frames {
        if let Some(packet) = packet_block(plan, &points, c) {
            w.write_pcapng_block(packet).map_err(err)?;
        }
    }
    Ok(())
}

/// The interface block of one observation point: named by its id as a
/// person reads it, described by its interface and namespace.
pub fn interface_block<'a>(
    plan: &LabPlan,
    p: &crate::plan::ObsPoint,
) -> InterfaceDescriptionBlock<'a> {
    let ns = &plan.namespaces[p.ns].key;
    let iface = p.ifname.as_deref().unwrap_or("any interface");
    InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![
            InterfaceDescriptionOption::IfName(Cow::Owned(display_point(plan, &p.id.to_string()))),
            InterfaceDescriptionOption::IfDescription(Cow::Owned(format!(
                "{} ({iface} in {ns})",
                p.id
            ))),
            // Timestamps are in nanoseconds.
            InterfaceDescriptionOption::IfTsResol(9),
        ],
    }
}

/// A captured frame as a packet of interface `points[i]` (None: the frame
/// belongs to no written interface), its comment saying where and which way.
pub fn packet_block<'a>(
    plan: &LabPlan,
    points: &[&crate::plan::ObsPoint],
    c: &'a Capture,
) -> Option<EnhancedPacketBlock<'a>> {
    let id = points.iter().position(|p| p.id == c.point)?;
    Some(EnhancedPacketBlock {
        interface_id: id as u32,
        timestamp: Duration::from_nanos(c.ts_ns as u64),
        original_len: c.frame.len() as u32,
        data: Cow::Borrowed(&c.frame),
        options: vec![EnhancedPacketOption::Comment(Cow::Owned(format!(
            "{} {} {}",
            display_point(plan, &c.point),
            if c.outgoing { "out of" } else { "in on" },
            c.ifname
        )))],
    })
}
