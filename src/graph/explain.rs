//! Explaining the graph to a person: `why A B` (the shortest chain of rules
//! and imports that makes B a dependency of A) and pictures of one input's
//! dependencies in Graphviz DOT and Mermaid.

use std::collections::{HashSet, VecDeque};
use std::fmt::Write;

use super::{DepGraph, NodeId, Reason};

/// One link of a `why` chain: `from` depends on `to` because of `reason`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub from: NodeId,
    pub to: NodeId,
    pub reason: Reason,
}

/// The shortest chain from `from` to `to`, or `None` if `to` is not in
/// `from`'s closure. Global dependencies are reached from any input.
pub fn why(graph: &DepGraph, from: NodeId, to: NodeId) -> Option<Vec<Link>> {
    if from == to {
        return Some(Vec::new());
    }
    let mut parent: Vec<Option<Link>> = vec![None; graph.nodes.len()];
    let mut seen = vec![false; graph.nodes.len()];
    let mut queue = VecDeque::from([from]);
    seen[from as usize] = true;
    // Global roots hang off the input itself.
    for (global, reason) in &graph.globals {
        if !seen[*global as usize] {
            seen[*global as usize] = true;
            parent[*global as usize] = Some(Link {
                from,
                to: *global,
                reason: reason.clone(),
            });
            queue.push_back(*global);
        }
    }
    while let Some(node) = queue.pop_front() {
        if node == to {
            break;
        }
        for edge in &graph.nodes[node as usize].edges {
            if !seen[edge.to as usize] {
                seen[edge.to as usize] = true;
                parent[edge.to as usize] = Some(Link {
                    from: node,
                    to: edge.to,
                    reason: edge.reason.clone(),
                });
                queue.push_back(edge.to);
            }
        }
    }
    let mut chain = Vec::new();
    let mut current = to;
    while current != from {
        let link = parent[current as usize].clone()?;
        current = link.from;
        chain.push(link);
    }
    chain.reverse();
    Some(chain)
}

/// The edges among `nodes` (an input's closure), for pictures.
fn edges_within<'a>(
    graph: &'a DepGraph,
    nodes: &'a [NodeId],
) -> impl Iterator<Item = (NodeId, NodeId, &'a Reason)> + 'a {
    let members: HashSet<NodeId> = nodes.iter().copied().collect();
    nodes.iter().flat_map(move |from| {
        let members = members.clone();
        graph.nodes[*from as usize]
            .edges
            .iter()
            .filter(move |e| members.contains(&e.to))
            .map(move |e| (*from, e.to, &e.reason))
    })
}

fn short_label(reason: &Reason) -> String {
    match reason {
        Reason::Import { .. } => "import".into(),
        Reason::ModuleString { .. } => "by name".into(),
        Reason::EntryPoint { .. } => "entry point".into(),
        Reason::Rule { action, .. } => action.as_str().into(),
        Reason::Submodules { .. } => "submodules".into(),
        Reason::GlobalDep { .. } => "global".into(),
    }
}

/// Graphviz DOT of `input`'s closure `nodes`; global dependencies hang off the input.
pub fn to_dot(graph: &DepGraph, input: NodeId, nodes: &[NodeId]) -> String {
    let mut out = String::from(
        "digraph dryci {\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];\n",
    );
    for node in nodes {
        let style = if *node == input { ", style=bold" } else { "" };
        let _ = writeln!(out, "  n{node} [label={:?}{style}];", graph.path(*node));
    }
    for (from, to, reason) in edges_within(graph, nodes) {
        let dashed = if reason.is_by_name() {
            ", style=dashed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  n{from} -> n{to} [label={:?}{dashed}];",
            short_label(reason)
        );
    }
    for (global, reason) in &graph.globals {
        let _ = writeln!(
            out,
            "  n{input} -> n{global} [label={:?}, style=dotted];",
            short_label(reason)
        );
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart of `input`'s closure `nodes`.
pub fn to_mermaid(graph: &DepGraph, input: NodeId, nodes: &[NodeId]) -> String {
    let mut out = String::from("flowchart LR\n");
    for node in nodes {
        let _ = writeln!(
            out,
            "  n{node}[\"{}\"]",
            graph.path(*node).replace('"', "#quot;")
        );
    }
    for (from, to, reason) in edges_within(graph, nodes) {
        let arrow = if reason.is_by_name() { "-.->" } else { "-->" };
        let _ = writeln!(out, "  n{from} {arrow}|{}| n{to}", short_label(reason));
    }
    for (global, reason) in &graph.globals {
        let _ = writeln!(out, "  n{input} -.->|{}| n{global}", short_label(reason));
    }
    out
}
