//! Execution waves (MTX-SPEC 5.2 step 3) and dependency-cycle detection (MT-VAL-004).
//!
//! Pure graph code over MT ids; it must never reorder MTs in a way the dependencies do
//! not force (each wave is sorted by `mt_id`).

use std::collections::{BTreeMap, BTreeSet};

use mtx_types::MicroTaskDefinition;

/// A dependency cycle; `cycle` starts and ends with the same MT id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("MT-VAL-004 dependency cycle: {}", cycle.join(" -> "))]
pub struct CycleError {
    pub cycle: Vec<String>,
}

/// The dependency graph: MT id -> known dependencies, duplicates collapsed. Dependencies
/// on unknown ids are left out: MT-VAL-003 reports them and stops the job first.
fn graph(defs: &[MicroTaskDefinition]) -> BTreeMap<&str, BTreeSet<&str>> {
    let ids: BTreeSet<&str> = defs.iter().map(|d| d.mt_id.as_str()).collect();
    let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for d in defs {
        let deps = g.entry(d.mt_id.as_str()).or_default();
        deps.extend(d.depends_on.iter().map(String::as_str).filter(|dep| ids.contains(dep)));
    }
    g
}

/// Every distinct elementary cycle found by depth-first search, each as a path
/// `[a, b, ..., a]` starting at its smallest id. Deterministic: ids are visited in order.
pub fn find_cycles(defs: &[MicroTaskDefinition]) -> Vec<Vec<String>> {
    let g = graph(defs);
    let mut found: BTreeSet<Vec<String>> = BTreeSet::new();
    let mut state: BTreeMap<&str, u8> = BTreeMap::new(); // 0 new, 1 on stack, 2 done
    let mut stack: Vec<&str> = Vec::new();

    fn visit<'a>(
        node: &'a str,
        g: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        stack: &mut Vec<&'a str>,
        found: &mut BTreeSet<Vec<String>>,
    ) {
        state.insert(node, 1);
        stack.push(node);
        for &next in &g[node] {
            match state.get(next).copied().unwrap_or(0) {
                0 => visit(next, g, state, stack, found),
                1 => {
                    let start = stack.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle: Vec<&str> = stack[start..].to_vec();
                    let min = cycle.iter().enumerate().min_by_key(|(_, n)| **n).map(|(i, _)| i).unwrap_or(0);
                    cycle.rotate_left(min);
                    let mut path: Vec<String> = cycle.iter().map(|s| s.to_string()).collect();
                    path.push(path[0].clone());
                    found.insert(path);
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node, 2);
    }

    for &node in g.keys() {
        if state.get(node).copied().unwrap_or(0) == 0 {
            visit(node, &g, &mut state, &mut stack, &mut found);
        }
    }
    found.into_iter().collect()
}

/// Execution waves: repeatedly take every MT whose dependencies all lie in earlier
/// waves; each wave sorted by `mt_id`. A leftover means a cycle.
///
/// Kahn's algorithm by levels: each edge is looked at once, so a 1,000-deep chain costs
/// O(MTs + dependencies) rather than a rescan of every MT per wave.
pub fn compute_waves(defs: &[MicroTaskDefinition]) -> Result<Vec<Vec<String>>, CycleError> {
    let g = graph(defs);
    let mut waiting: BTreeMap<&str, usize> = g.iter().map(|(id, deps)| (*id, deps.len())).collect();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (id, deps) in &g {
        for dep in deps {
            dependents.entry(dep).or_default().push(id);
        }
    }
    let mut wave: Vec<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| *id).collect();
    let mut placed = 0;
    let mut waves = Vec::new();
    while !wave.is_empty() {
        placed += wave.len();
        let mut next = BTreeSet::new();
        for id in &wave {
            for dependent in dependents.get(id).map(Vec::as_slice).unwrap_or_default() {
                let n = waiting.get_mut(dependent).expect("every dependent is a node");
                *n -= 1;
                if *n == 0 {
                    next.insert(*dependent);
                }
            }
        }
        waves.push(wave.iter().map(|s| s.to_string()).collect());
        wave = next.into_iter().collect();
    }
    if placed < g.len() {
        let leftover: Vec<MicroTaskDefinition> =
            defs.iter().filter(|d| waiting.get(d.mt_id.as_str()).is_some_and(|n| *n > 0)).cloned().collect();
        let cycle = find_cycles(&leftover).into_iter().next().unwrap_or_default();
        return Err(CycleError { cycle });
    }
    Ok(waves)
}
