//! Line numbers for YAML paths.
//!
//! serde forgets where a value came from, so the topology text is walked a
//! second time with yaml-rust2's event parser, which marks every event with
//! its position. Paths look like `nodes[2].vswitch`,
//! `kubernetes[3].spec.ports[0].nodePort`; a key that is not a plain word
//! (annotations such as `service.beta.kubernetes.io/x`) is written quoted in
//! brackets: `metadata.annotations["service.beta.kubernetes.io/x"]`.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a YAML path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// `path` extended by the mapping key `key`.
pub fn join_key(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (path.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{path}.{key}"),
        (_, false) => format!("{path}[{}]", quote(key)),
    }
}

/// `path` extended by the sequence index `index`.
pub fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

/// The path of a list of steps.
pub fn render(segs: &[Seg]) -> String {
    let mut out = String::new();
    for seg in segs {
        out = match seg {
            Seg::Key(k) => join_key(&out, k),
            Seg::Index(i) => join_index(&out, *i),
        };
    }
    out
}

fn quote(key: &str) -> String {
    let mut out = String::from("\"");
    for c in key.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Splits a path written by `join_key`/`join_index` back into steps.
/// Malformed input (not produced by this module) is split best-effort.
pub fn split(path: &str) -> Vec<Seg> {
    let chars: Vec<char> = path.chars().collect();
    let mut segs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => i += 1,
            '[' if chars.get(i + 1) == Some(&'"') => {
                let mut key = String::new();
                i += 2;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        i += 1;
                    }
                    key.push(chars[i]);
                    i += 1;
                }
                // closing quote and bracket
                i += 2;
                segs.push(Seg::Key(key));
            }
            '[' => {
                let start = i + 1;
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                let text: String = chars[start..i.min(chars.len())].iter().collect();
                i += 1;
                match text.parse() {
                    Ok(n) => segs.push(Seg::Index(n)),
                    Err(_) => segs.push(Seg::Key(text)),
                }
            }
            _ => {
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                segs.push(Seg::Key(chars[start..i].iter().collect()));
            }
        }
    }
    segs
}

/// The parent of a path (`nodes[2].vswitch` → `nodes[2]` → `nodes` → ``);
/// `None` for the root.
pub fn parent(path: &str) -> Option<String> {
    let mut segs = split(path);
    segs.pop().map(|_| render(&segs))
}

/// Whether `path` is `ancestor` or lies below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    let (p, a) = (split(path), split(ancestor));
    p.len() >= a.len() && p[..a.len()] == a[..]
}

/// YAML path → 1-based line: of the key for a mapping entry, of the item
/// for a sequence item, 1 for the document root.
///
/// Every document of a multi-document file is mapped: the first at the root,
/// document `n` (1-based, from the second on) under the key `document<n>`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LineMap {
    lines: HashMap<String, usize>,
    /// Keys met twice in one mapping: (path, first line, second line).
    duplicates: Vec<(String, usize, usize)>,
    /// Where a path of the resolved topology really is in the file
    /// (`kubernetes[4]` → `document2.items[1]`), longest first.
    aliases: Vec<(Vec<Seg>, Vec<Seg>)>,
}

impl LineMap {
    /// Walks `text`. Never fails: on a syntax error the map holds what was
    /// read before it (the syntax error itself is reported by the parser
    /// that builds the values).
    pub fn parse(text: &str) -> LineMap {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(text);
        // Errors are deliberately dropped, see above.
        let _ = parser.load(&mut walker, true);
        LineMap {
            lines: walker.lines,
            duplicates: walker.duplicates,
            aliases: Vec::new(),
        }
    }

    /// The path of the document root of document `n` (0-based).
    pub fn document_root(n: usize) -> String {
        if n == 0 {
            String::new()
        } else {
            format!("document{}", n + 1)
        }
    }

    /// Keys that occur twice in one mapping: (path, first line, second line).
    pub fn duplicates(&self) -> &[(String, usize, usize)] {
        &self.duplicates
    }

    /// Records that `from` (a path of the resolved topology) is written at
    /// `to` in the file.
    pub fn alias(&mut self, from: &str, to: &str) {
        if from != to {
            self.aliases.push((split(from), split(to)));
            self.aliases.sort_by(|a, b| b.0.len().cmp(&a.0.len()));
        }
    }

    /// Where `path` is written in the file (aliases applied).
    pub fn display(&self, path: &str) -> String {
        let segs = split(path);
        for (from, to) in &self.aliases {
            if segs.len() >= from.len() && segs[..from.len()] == from[..] {
                let mut out = to.clone();
                out.extend_from_slice(&segs[from.len()..]);
                return render(&out);
            }
        }
        path.to_string()
    }

    /// The line recorded for exactly `path`.
    pub fn get(&self, path: &str) -> Option<usize> {
        self.lines.get(&self.display(path)).copied()
    }

    /// The line of `path`, or of its nearest ancestor that exists in the file
    /// (a missing key points at the mapping that lacks it).
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut segs = split(&self.display(path));
        loop {
            if let Some(line) = self.lines.get(&render(&segs)) {
                return Some(*line);
            }
            segs.pop()?;
        }
    }

    /// Number of recorded paths.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

enum Frame {
    Map {
        path: String,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<String>,
    },
    Seq {
        path: String,
        index: usize,
    },
}

#[derive(Default)]
struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
    duplicates: Vec<(String, usize, usize)>,
    /// Documents started so far.
    documents: usize,
}

impl Walker {
    fn record(&mut self, path: String, mark: Marker) {
        self.lines.entry(path).or_insert(mark.line());
    }

    /// Records a mapping key, noting a second occurrence.
    fn record_key(&mut self, path: String, mark: Marker) {
        match self.lines.get(&path) {
            Some(first) => self.duplicates.push((path, *first, mark.line())),
            None => {
                self.lines.insert(path, mark.line());
            }
        }
    }

    /// Called when a node starts: records its line and returns its path.
    /// `scalar` is its text when it is a scalar (a key candidate).
    fn start_node(&mut self, scalar: Option<&str>, mark: Marker) -> String {
        let root = LineMap::document_root(self.documents.saturating_sub(1));
        let mut is_key = false;
        let (path, line_path) = match self.stack.last_mut() {
            None => (root.clone(), Some(root)),
            Some(Frame::Seq { path, index }) => {
                let p = join_index(path, *index);
                (p.clone(), Some(p))
            }
            Some(Frame::Map {
                path,
                key: Some(key),
            }) => (join_key(path, key), None),
            Some(Frame::Map { path, key: None }) => {
                // This node is a key. Complex keys get a placeholder.
                let key = scalar.unwrap_or("?").to_string();
                let p = join_key(path, &key);
                is_key = true;
                (p.clone(), Some(p))
            }
        };
        match line_path {
            Some(p) if is_key => self.record_key(p, mark),
            Some(p) => self.record(p, mark),
            None => {}
        }
        path
    }

    /// Called when a node has ended: advances its parent.
    fn end_node(&mut self, scalar: Option<&str>) {
        match self.stack.last_mut() {
            None => {}
            Some(Frame::Seq { index, .. }) => *index += 1,
            Some(Frame::Map { key, .. }) => {
                *key = match key {
                    None => Some(scalar.unwrap_or("?").to_string()),
                    Some(_) => None,
                };
            }
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(text, ..) => {
                self.start_node(Some(&text), mark);
                self.end_node(Some(&text));
            }
            Event::Alias(_) => {
                self.start_node(None, mark);
                self.end_node(None);
            }
            Event::MappingStart(..) => {
                let path = self.start_node(None, mark);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.start_node(None, mark);
                self.stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.end_node(None);
            }
            Event::DocumentStart => self.documents += 1,
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
name: t
vpc:
  vswitches:
    - {id: vsw-a, cidr: 10.0.4.0/24}
    - id: vsw-b
      cidr: 10.0.5.0/24
nodes:
  - name: n1
    vswitch: vsw-a
    security_groups: [sg-a,
       sg-b]
kubernetes:
  - metadata:
      annotations:
        service.beta.kubernetes.io/x: \"1\"
";

    #[test]
    fn records_keys_and_items() {
        let m = LineMap::parse(TEXT);
        assert_eq!(m.get(""), Some(1));
        assert_eq!(m.get("name"), Some(1));
        assert_eq!(m.get("vpc"), Some(2));
        assert_eq!(m.get("vpc.vswitches"), Some(3));
        assert_eq!(m.get("vpc.vswitches[0]"), Some(4));
        assert_eq!(m.get("vpc.vswitches[0].cidr"), Some(4));
        assert_eq!(m.get("vpc.vswitches[1]"), Some(5));
        assert_eq!(m.get("vpc.vswitches[1].cidr"), Some(6));
        assert_eq!(m.get("nodes[0].vswitch"), Some(9));
        assert_eq!(m.get("nodes[0].security_groups[1]"), Some(11));
        let ann = join_key(
            "kubernetes[0].metadata.annotations",
            "service.beta.kubernetes.io/x",
        );
        assert_eq!(
            ann,
            "kubernetes[0].metadata.annotations[\"service.beta.kubernetes.io/x\"]"
        );
        assert_eq!(m.get(&ann), Some(15));
    }

    #[test]
    fn falls_back_to_nearest_ancestor() {
        let m = LineMap::parse(TEXT);
        assert_eq!(m.line("nodes[0].ip"), Some(8));
        assert_eq!(m.line("nodes[0].enis.max"), Some(8));
        assert_eq!(m.line("nodes[7].vswitch"), Some(7));
        assert_eq!(m.line("expect[0].to"), Some(1));
    }

    #[test]
    fn split_and_render_round_trip() {
        for p in ["", "a", "a.b[3].c", "x[\"a.b/c\"].d[0]", "x[\"q\\\"uote\"]"] {
            assert_eq!(render(&split(p)), p, "{p}");
        }
        assert_eq!(parent("a.b[3].c").as_deref(), Some("a.b[3]"));
        assert_eq!(parent("a").as_deref(), Some(""));
        assert_eq!(parent(""), None);
        assert!(is_within("nodes[1].ip", "nodes[1]"));
        assert!(!is_within("nodes[10].ip", "nodes[1]"));
    }

    #[test]
    fn maps_every_document_and_duplicates() {
        let m = LineMap::parse(
            "name: a\nname: b\n---\nkind: Pod\n---\nkind: List\nitems:\n  - kind: Pod\n",
        );
        assert_eq!(m.duplicates(), &[("name".to_string(), 1, 2)]);
        assert_eq!(m.get("document2.kind"), Some(4));
        assert_eq!(m.get("document3.items[0].kind"), Some(8));
        let mut m = m;
        m.alias("kubernetes[1]", "document3.items[0]");
        assert_eq!(m.display("kubernetes[1].kind"), "document3.items[0].kind");
        assert_eq!(m.line("kubernetes[1].spec"), Some(8));
    }

    #[test]
    fn survives_syntax_errors() {
        let m = LineMap::parse("a: 1\nb: [\n");
        assert_eq!(m.get("a"), Some(1));
    }
}
