//! Drawing a `Graph`: Graphviz DOT (clusters for the VPC and each ECS),
//! Mermaid flowchart text, and SVG laid out by the layout-rs crate from the
//! same DOT (layout-rs draws no clusters: groups show in the labels' order only).

use super::model::{Graph, Kind, Style};
use crate::plan::EniRole;

const REQUEST: &str = "#d62728";
const REPLY: &str = "#1f77b4";

fn fill(k: Kind) -> &'static str {
    match k {
        Kind::Vpc => "#dae8fc",
        Kind::Vswitch => "#e1d5e7",
        Kind::Sg => "#f8cecc",
        Kind::Eni(EniRole::Trunk) => "#ffe599",
        Kind::Eni(_) => "#fff2cc",
        Kind::Node => "#d5e8d4",
        Kind::Pod => "#ffffff",
        Kind::Slb => "#ffe6cc",
        Kind::External => "#eeeeee",
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn edge_attrs(style: Style, label: &str) -> String {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!(", label={}", quote(label))
    };
    match style {
        Style::Wire => format!("dir=none{label}"),
        Style::Guards => format!("dir=none, style=dotted, color=gray{label}"),
        Style::Backend => format!("style=dashed, color=darkgreen{label}"),
        Style::Request(_) => format!(
            "color={}, fontcolor={}, penwidth=3{label}",
            quote(REQUEST),
            quote(REQUEST)
        ),
        Style::Reply(_) => format!(
            "color={}, fontcolor={}, penwidth=3{label}",
            quote(REPLY),
            quote(REPLY)
        ),
    }
}

/// Graphviz DOT: `dot -Tsvg` draws it with the VPC and every ECS boxed.
pub fn dot(g: &Graph) -> String {
    let mut out = format!("digraph {} {{\n", quote(&format!("cnlab {}", g.title)));
    out.push_str(&format!(
        "  graph [rankdir=TB, fontname=\"Helvetica\", label={}, labelloc=t];\n",
        quote(&format!("cnlab lab {}", g.title))
    ));
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\", fontsize=10];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    let vertex = |v: &super::model::Vertex| {
        format!(
            "{} [label={}, fillcolor={}];\n",
            quote(&v.id),
            quote(&v.label),
            quote(fill(v.kind))
        )
    };
    for (id, label) in &g.groups {
        out.push_str(&format!(
            "  subgraph {} {{\n    label={};\n    style=\"rounded\";\n",
            quote(&format!("cluster_{id}")),
            quote(label)
        ));
        for v in g.vertices.iter().filter(|v| v.group.as_deref() == Some(id)) {
            out.push_str("    ");
            out.push_str(&vertex(v));
        }
        out.push_str("  }\n");
    }
    for v in g.vertices.iter().filter(|v| v.group.is_none()) {
        out.push_str("  ");
        out.push_str(&vertex(v));
    }
    for e in &g.edges {
        out.push_str(&format!(
            "  {} -> {} [{}];\n",
            quote(&e.from),
            quote(&e.to),
            edge_attrs(e.style, &e.label)
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', "<br/>")
}

/// Mermaid flowchart (GitHub renders it in Markdown).
pub fn mermaid(g: &Graph) -> String {
    let idx = |id: &str| g.vertices.iter().position(|v| v.id == id);
    let mut out = format!("---\ntitle: cnlab lab {}\n---\nflowchart TB\n", g.title);
    let vertex = |i: usize| {
        let v = &g.vertices[i];
        format!("n{i}[\"{}\"]\n", mermaid_text(&v.label))
    };
    for (gi, (id, label)) in g.groups.iter().enumerate() {
        out.push_str(&format!("  subgraph g{gi}[\"{}\"]\n", mermaid_text(label)));
        for (i, _) in g
            .vertices
            .iter()
            .enumerate()
            .filter(|(_, v)| v.group.as_deref() == Some(id))
        {
            out.push_str("    ");
            out.push_str(&vertex(i));
        }
        out.push_str("  end\n");
    }
    for (i, _) in g
        .vertices
        .iter()
        .enumerate()
        .filter(|(_, v)| v.group.is_none())
    {
        out.push_str("  ");
        out.push_str(&vertex(i));
    }
    let mut styles = Vec::new();
    let mut n = 0;
    for e in &g.edges {
        let (Some(a), Some(b)) = (idx(&e.from), idx(&e.to)) else {
            continue;
        };
        let label = if e.label.is_empty() {
            String::new()
        } else {
            format!("|\"{}\"|", mermaid_text(&e.label))
        };
        let arrow = match e.style {
            Style::Wire => "---",
            Style::Guards | Style::Backend => "-.->",
            Style::Request(_) | Style::Reply(_) => "==>",
        };
        out.push_str(&format!("  n{a} {arrow}{label} n{b}\n"));
        match e.style {
            Style::Request(_) => styles.push(format!(
                "  linkStyle {n} stroke:{REQUEST},stroke-width:3px\n"
            )),
            Style::Reply(_) => {
                styles.push(format!("  linkStyle {n} stroke:{REPLY},stroke-width:3px\n"))
            }
            Style::Guards => styles.push(format!("  linkStyle {n} stroke:gray\n")),
            _ => {}
        }
        n += 1;
    }
    for s in styles {
        out.push_str(&s);
    }
    for (i, v) in g.vertices.iter().enumerate() {
        out.push_str(&format!("  style n{i} fill:{}\n", fill(v.kind)));
    }
    out
}

/// SVG laid out and drawn by layout-rs from the DOT text.
pub fn svg(g: &Graph) -> Result<String, String> {
    use layout::backends::svg::SVGWriter;
    use layout::gv::{DotParser, GraphBuilder};
    let text = dot(g);
    let mut parser = DotParser::new(&text);
    let ast = parser
        .process()
        .map_err(|e| format!("layout-rs could not parse the DOT: {e}"))?;
    let mut builder = GraphBuilder::new();
    builder.visit_graph(&ast);
    let mut vg = builder.get();
    let mut svg = SVGWriter::new();
    vg.do_it(false, false, false, &mut svg);
    Ok(svg.finalize())
}
