//! Colour for people at a terminal: only when the stream is a terminal and
//! `NO_COLOR` is unset or empty (<https://no-color.org>). Pipes, files and CI
//! logs get plain text.

use std::io::IsTerminal;

/// How to paint report text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Style {
    pub colour: bool,
}

impl Style {
    pub const PLAIN: Style = Style { colour: false };

    /// Colour when `is_terminal` and `no_color` (the value of `NO_COLOR`) is
    /// absent or empty.
    pub fn decide(is_terminal: bool, no_color: Option<&str>) -> Style {
        Style {
            colour: is_terminal && no_color.is_none_or(str::is_empty),
        }
    }

    pub fn for_stdout() -> Style {
        Self::decide(std::io::stdout().is_terminal(), no_color().as_deref())
    }

    pub fn for_stderr() -> Style {
        Self::decide(std::io::stderr().is_terminal(), no_color().as_deref())
    }

    fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    pub fn good(self, text: &str) -> String {
        self.paint("32", text)
    }
    pub fn bad(self, text: &str) -> String {
        self.paint("1;31", text)
    }
    pub fn dim(self, text: &str) -> String {
        self.paint("2", text)
    }
    pub fn bold(self, text: &str) -> String {
        self.paint("1", text)
    }
}

fn no_color() -> Option<String> {
    std::env::var_os("NO_COLOR").map(|v| v.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(Style::decide(true, None).colour);
        assert!(
            Style::decide(true, Some("")).colour,
            "an empty NO_COLOR is unset"
        );
        assert!(!Style::decide(true, Some("1")).colour);
        assert!(!Style::decide(false, None).colour);
        assert_eq!(Style::PLAIN.bad("FAIL"), "FAIL");
        assert_eq!(Style { colour: true }.bad("FAIL"), "\x1b[1;31mFAIL\x1b[0m");
    }
}
