//! `cnlab check`'s live progress on stderr: on a terminal one status line,
//! rewritten as each expectation finishes (failures stay on screen); with
//! `--progress` (CI logs) a line per expectation. Neither touches stdout.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::check::progress::{self, word};
use crate::check::style::Style;

/// What `start` set up; `clear`/`finish` keep other stderr lines clean.
pub struct Live {
    status_line: bool,
}

const CLEAR: &str = "\r\x1b[K";

/// Installs the sink for `total` expectations: a status line when stderr is
/// a terminal, a line each with `lines`, nothing otherwise.
pub fn start(total: usize, lines: bool) -> Live {
    let status_line = std::io::stderr().is_terminal() && !lines;
    if !(status_line || lines) || total == 0 {
        return Live { status_line: false };
    }
    let style = Style::for_stderr();
    let done = Arc::new(AtomicUsize::new(0));
    progress::install(move |file, r| {
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        let w = word(r);
        let painted = match w {
            "ok" => style.good(w),
            "n/a" => style.dim(w),
            _ => style.bad(w),
        };
        let ms = r.elapsed.as_millis();
        let text = format!(
            "[{n}/{total}] {file}: {} {painted} ({ms} ms)",
            r.expect.name
        );
        let out = if !status_line {
            format!("{text}\n")
        } else if w == "FAIL" {
            // A failure stays on screen above the status line.
            format!("{CLEAR}{text}\n")
        } else {
            format!("{CLEAR}{text}")
        };
        let _ = std::io::stderr().lock().write_all(out.as_bytes());
    });
    Live { status_line }
}

impl Live {
    /// Erases the status line before another stderr line is written.
    pub fn clear(&self) -> &'static str {
        if self.status_line {
            CLEAR
        } else {
            ""
        }
    }

    pub fn finish(&self) {
        if self.status_line {
            let _ = std::io::stderr().write_all(CLEAR.as_bytes());
        }
    }
}
