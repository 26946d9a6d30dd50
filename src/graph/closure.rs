//! Transitive closures of the inputs. The graph is condensed into its
//! strongly connected components (cycles are normal in Python code) with
//! petgraph; each component's closure is a bitset built from its successors'
//! in reverse topological order, so every edge is looked at once. Nodes are
//! numbered in path order, so a bitset iterates in sorted path order, which
//! is the order the dependency hash needs. On very large graphs, where a
//! bitset per component would not fit in memory, closures are walked one by one.

use fixedbitset::FixedBitSet;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;

use super::{DepGraph, NodeId};

/// Above this many bits of bitsets (256 MiB), closures are walked one by one.
const MAX_BITSET_BITS: usize = 1 << 31;

pub struct Closures {
    graph: DiGraph<(), ()>,
    /// Per component (in tarjan order) its closure, when bitsets fit in memory.
    component_sets: Option<(Vec<FixedBitSet>, Vec<u32>)>,
    /// Closure shared by every input: the global roots and what they reach.
    global_set: FixedBitSet,
}

impl Closures {
    /// Every closure at once: worth it when most inputs need theirs.
    pub fn compute(dep: &DepGraph) -> Closures {
        let graph = petgraph_of(dep);
        let node_count = dep.nodes.len();
        let components = tarjan_scc(&graph);
        let component_sets = (components.len().saturating_mul(node_count) <= MAX_BITSET_BITS)
            .then(|| component_closures(&graph, &components, node_count));
        Closures::with(dep, graph, component_sets)
    }

    /// Closures walked one by one when asked for: cheaper when few inputs need theirs.
    pub fn walking(dep: &DepGraph) -> Closures {
        Closures::with(dep, petgraph_of(dep), None)
    }

    fn with(
        dep: &DepGraph,
        graph: DiGraph<(), ()>,
        component_sets: Option<(Vec<FixedBitSet>, Vec<u32>)>,
    ) -> Closures {
        let node_count = dep.nodes.len();
        let mut closures = Closures {
            graph,
            component_sets,
            global_set: FixedBitSet::with_capacity(node_count),
        };
        let mut global_set = FixedBitSet::with_capacity(node_count);
        for (node, _) in &dep.globals {
            global_set.union_with(&closures.reach(*node));
        }
        closures.global_set = global_set;
        closures
    }

    /// Everything `node` depends on, itself included (globals not included).
    pub fn reach(&self, node: NodeId) -> FixedBitSet {
        match &self.component_sets {
            Some((sets, component_of)) => sets[component_of[node as usize] as usize].clone(),
            None => {
                let mut set = FixedBitSet::with_capacity(self.graph.node_count());
                let mut dfs = Dfs::new(&self.graph, NodeIndex::new(node as usize));
                while let Some(next) = dfs.next(&self.graph) {
                    set.insert(next.index());
                }
                set
            }
        }
    }

    /// The closure of an input: what it reaches plus every global
    /// dependency's closure. Bits are node ids, so they iterate in path order.
    pub fn of_input(&self, node: NodeId) -> FixedBitSet {
        let mut set = self.reach(node);
        set.union_with(&self.global_set);
        set
    }
}

fn petgraph_of(dep: &DepGraph) -> DiGraph<(), ()> {
    let node_count = dep.nodes.len();
    let mut graph = DiGraph::<(), ()>::with_capacity(node_count, 0);
    for _ in 0..node_count {
        graph.add_node(());
    }
    for (from, node) in dep.nodes.iter().enumerate() {
        for edge in &node.edges {
            graph.add_edge(NodeIndex::new(from), NodeIndex::new(edge.to as usize), ());
        }
    }
    graph
}

/// The nodes whose closure (globals included) contains one of `changed`:
/// everything that reaches a changed node, or every node when a global
/// dependency does.
pub fn reaching(dep: &DepGraph, changed: &[NodeId]) -> FixedBitSet {
    let node_count = dep.nodes.len();
    let mut dependents: Vec<Vec<NodeId>> = vec![Vec::new(); node_count];
    for (from, node) in dep.nodes.iter().enumerate() {
        for edge in &node.edges {
            dependents[edge.to as usize].push(from as NodeId);
        }
    }
    let mut reached = FixedBitSet::with_capacity(node_count);
    let mut stack: Vec<NodeId> = changed.to_vec();
    while let Some(node) = stack.pop() {
        if reached.put(node as usize) {
            continue;
        }
        stack.extend(dependents[node as usize].iter().copied());
    }
    if dep
        .globals
        .iter()
        .any(|(g, _)| reached.contains(*g as usize))
    {
        reached.insert_range(..);
    }
    reached
}

fn component_closures(
    graph: &DiGraph<(), ()>,
    components: &[Vec<NodeIndex>],
    node_count: usize,
) -> (Vec<FixedBitSet>, Vec<u32>) {
    let mut component_of = vec![0u32; node_count];
    for (c, members) in components.iter().enumerate() {
        for member in members {
            component_of[member.index()] = c as u32;
        }
    }
    // tarjan_scc yields components in reverse topological order: every
    // successor component comes before its predecessors.
    let mut sets: Vec<FixedBitSet> = Vec::with_capacity(components.len());
    for (c, members) in components.iter().enumerate() {
        let mut set = FixedBitSet::with_capacity(node_count);
        for member in members {
            set.insert(member.index());
        }
        for member in members {
            for successor in graph.neighbors(*member) {
                let sc = component_of[successor.index()] as usize;
                if sc != c {
                    set.union_with(&sets[sc]);
                }
            }
        }
        sets.push(set);
    }
    (sets, component_of)
}
