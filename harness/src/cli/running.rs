//! Finding a running lab by id or topology name.

use crate::lab::registry::{self, LabRecord};

pub fn running() -> Vec<LabRecord> {
    registry::list()
        .into_iter()
        .filter(|r| r.owner_alive())
        .collect()
}

/// The running lab `which` names (id, id prefix or topology name), or the only one.
pub fn find(which: Option<&str>) -> Result<LabRecord, String> {
    find_in(running(), which)
}

/// As `find`, among every registered lab, those whose owner died too
/// (`cnlab down` cleans those up).
pub fn find_registered(which: Option<&str>) -> Result<LabRecord, String> {
    find_in(registry::list(), which)
}

fn find_in(labs: Vec<LabRecord>, which: Option<&str>) -> Result<LabRecord, String> {
    let list = |v: &[LabRecord]| {
        v.iter()
            .map(|r| format!("{} ({})", r.id, r.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match which {
        None => match labs.len() {
            0 => Err("no running lab: start one with `cnlab up FILE`".into()),
            1 => Ok(labs[0].clone()),
            _ => Err(format!(
                "several labs are running, name one with --lab: {}",
                list(&labs)
            )),
        },
        Some(w) => {
            let hits: Vec<_> = labs
                .iter()
                .filter(|r| r.id == w || r.name == w || r.id.starts_with(w))
                .cloned()
                .collect();
            match hits.len() {
                0 => Err(format!(
                    "no running lab named {w}; running: {}",
                    if labs.is_empty() {
                        "none".into()
                    } else {
                        list(&labs)
                    }
                )),
                1 => Ok(hits[0].clone()),
                _ => Err(format!("{w} names several labs: {}", list(&hits))),
            }
        }
    }
}
