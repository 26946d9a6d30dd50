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
    pub fn compute(dep: &DepGraph) -> Closures {
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
        let components = tarjan_scc(&graph);
        let component_sets = (components.len().saturating_mul(node_count) <= MAX_BITSET_BITS)
            .then(|| component_closures(&graph, &components, node_count));
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
