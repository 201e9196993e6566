//! The decomposition: a parsed Work Packet into MT definitions that pass MT-VAL
//! (MTX-SPEC 3.6, section 4), deterministically.
//!
//! Deliverables come from, in order of preference: the per-MT hints, the clause rows, the
//! IMPLEMENTATION_ORDER entries, the DONE_MEANS items grouped by the files they name. Each
//! becomes one MT (split when it exceeds the 5 modify / 3 create limits). When no
//! deliverable can be tied to a file, the single-MT fallback of 14.7 is used. Must never
//! invent a verify command: every command comes from the packet.

use std::collections::{BTreeMap, BTreeSet};

use crate::bindings::mtx::plugin::types::{
    DoneCriterion, DoneVerification, ExecutionTier, Expectation, ExpectedOutput, FileAccess, MtDefinition,
    PlannerInput, PluginError, RiskLevel, VerifySpec,
};
use crate::paths;
use crate::words::{self, command_matches, is_whole_suite, path_score, task_tags};

/// `MT-[0-9]{3}`, numbered from 1.
const MAX_MTS: usize = 999;
const MAX_READ: usize = 10;
const MAX_MODIFY: usize = 5;
const MAX_CREATE: usize = 3;
const MAX_VERIFY: usize = 5;
const MAX_DONE: usize = 8;
const MAX_ACTIONS: usize = 10;
/// Default verify timeout, as in the 14.7 fallback: test suites of real packets are slow.
const VERIFY_TIMEOUT_MS: u32 = 180_000;
/// MT-VAL-006 system overhead.
const OVERHEAD_TOKENS: u32 = 512;
const MIN_BUDGET: u32 = 512;
const MAX_BUDGET: u32 = 8192;

/// Something the packet asks for, before it is tied to files.
#[derive(Debug, Clone, Default)]
struct Deliverable {
    /// The hint or IMPLEMENTATION_ORDER id it came from (`MT-001`), if any.
    source_id: Option<String>,
    text: String,
    surfaces: Vec<String>,
    tests: Vec<String>,
    depends_on: Vec<String>,
    criteria: Vec<String>,
    detail: Option<String>,
}

/// A deliverable tied to files, one future MT.
#[derive(Debug, Clone)]
struct Unit {
    deliverable: Deliverable,
    modify: Vec<String>,
    create: Vec<String>,
    notes: Vec<String>,
    part: Option<(usize, usize)>,
}

pub fn plan(input: &PlannerInput) -> Result<Vec<MtDefinition>, PluginError> {
    let packet = &input.packet;
    let test_plan: Vec<String> = packet
        .test_plan
        .iter()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty() && !c.starts_with('#'))
        .collect();
    if test_plan.is_empty() {
        return Err(PluginError::InvalidInput(format!(
            "packet {} has no TEST_PLAN command; mtx never invents verify commands (MTX-SPEC 14.7)",
            packet.wp_id
        )));
    }
    let max_budget = MAX_BUDGET.min(input.context_window.saturating_sub(OVERHEAD_TOKENS));
    if max_budget < MIN_BUDGET {
        return Err(PluginError::InvalidInput(format!(
            "context window {} leaves less than {MIN_BUDGET} tokens after the {OVERHEAD_TOKENS}-token overhead",
            input.context_window
        )));
    }
    let ws: Vec<String> = input.workspace_files.iter().map(|f| paths::normalize(&f.path)).collect();
    let ws_refs: Vec<&str> = ws.iter().map(String::as_str).collect();
    let sizes: BTreeMap<&str, u64> =
        ws.iter().map(String::as_str).zip(input.workspace_files.iter().map(|f| f.size_bytes)).collect();
    let ctx = Ctx { input, ws: &ws_refs, sizes: &sizes, test_plan: &test_plan, max_budget };

    let mut units: Vec<Unit> = Vec::new();
    let mut unplaced: Vec<String> = Vec::new();
    for d in deliverables(&ctx) {
        let resolved = resolve(&ctx, d.clone());
        if resolved.is_empty() {
            // No file named: its wording becomes a criterion of the MT before it (or the first).
            let mut texts = d.criteria.clone();
            if texts.is_empty() {
                texts.push(d.text.clone());
            }
            match units.last_mut() {
                Some(u) => u.deliverable.criteria.extend(texts),
                None => unplaced.extend(texts),
            }
        }
        units.extend(resolved);
    }
    if let Some(first) = units.first_mut() {
        let mut texts = unplaced;
        texts.append(&mut first.deliverable.criteria);
        first.deliverable.criteria = texts;
    }
    if units.is_empty() {
        return Ok(vec![fallback(&ctx)]);
    }
    if units.len() > MAX_MTS {
        return Err(PluginError::InvalidInput(format!(
            "packet {} yields {} MTs; MT ids have three digits, so at most {MAX_MTS} fit",
            packet.wp_id,
            units.len()
        )));
    }
    assign_done_means(&ctx, &mut units);
    Ok(build(&ctx, &units))
}

struct Ctx<'a> {
    input: &'a PlannerInput,
    ws: &'a [&'a str],
    sizes: &'a BTreeMap<&'a str, u64>,
    test_plan: &'a [String],
    max_budget: u32,
}

/// `MT-001: text` -> (`MT-001`, `text`).
fn split_order_entry(entry: &str) -> Option<(String, String)> {
    let (id, text) = entry.split_once(':')?;
    let id = id.trim().trim_start_matches("- ").to_uppercase();
    (id.starts_with("MT-") && id[3..].chars().all(|c| c.is_ascii_digit()) && id.len() > 3)
        .then(|| (id, text.trim().to_string()))
}

fn deliverables(ctx: &Ctx<'_>) -> Vec<Deliverable> {
    let p = &ctx.input.packet;
    let order: BTreeMap<String, String> =
        p.implementation_order.iter().filter_map(|e| split_order_entry(e)).collect();
    if !p.mt_hints.is_empty() {
        return p
            .mt_hints
            .iter()
            .map(|h| Deliverable {
                source_id: Some(h.mt_id.to_uppercase()),
                text: h.clause.clone(),
                surfaces: h.code_surfaces.clone(),
                tests: h.expected_tests.clone(),
                depends_on: h.depends_on.iter().map(|d| d.to_uppercase()).collect(),
                criteria: vec![h.clause.clone()],
                detail: order.get(&h.mt_id.to_uppercase()).cloned(),
            })
            .collect();
    }
    if !p.clause_rows.is_empty() {
        return p
            .clause_rows
            .iter()
            .map(|r| Deliverable {
                text: r.clause.clone(),
                surfaces: r.code_surfaces.clone(),
                tests: r.tests.clone(),
                criteria: vec![r.clause.clone()],
                ..Deliverable::default()
            })
            .collect();
    }
    if !order.is_empty() {
        // Declared order: each entry depends on the one before it.
        let mut prev: Option<String> = None;
        let mut out = Vec::new();
        for (id, text) in p.implementation_order.iter().filter_map(|e| split_order_entry(e)) {
            out.push(Deliverable {
                source_id: Some(id.clone()),
                text: text.clone(),
                depends_on: prev.iter().cloned().collect(),
                ..Deliverable::default()
            });
            prev = Some(id);
        }
        return out;
    }
    group_done_means(ctx)
}

/// The workspace files a piece of prose names: explicit paths first, else the files with
/// the best word score (ties kept, at most 5; a weak score-1 match only when it is narrow).
fn files_for_text(ctx: &Ctx<'_>, text: &str) -> (Vec<String>, bool) {
    let mentioned = mentioned_paths(ctx, text);
    if !mentioned.is_empty() {
        return (mentioned, true);
    }
    let w = words::words(text);
    let scored: Vec<(u32, &str)> =
        ctx.ws.iter().map(|f| (path_score(f, &w), *f)).filter(|(s, _)| *s > 0).collect();
    let Some(best) = scored.iter().map(|(s, _)| *s).max() else { return (vec![], false) };
    let top: Vec<String> = scored.iter().filter(|(s, _)| *s == best).map(|(_, f)| f.to_string()).collect();
    if top.len() > MAX_MODIFY || (best == 1 && top.len() > 2) {
        return (vec![], false);
    }
    (top, best > 1)
}

/// Paths named in the text, in text order: a full or partial path matches files ending
/// with it; a bare file name only when exactly one workspace file has that name.
fn mentioned_paths(ctx: &Ctx<'_>, text: &str) -> Vec<String> {
    let mut mentioned: Vec<String> = Vec::new();
    for token in text.split_whitespace() {
        let t = token
            .trim_matches(|c: char| !(c.is_alphanumeric() || c == '/' || c == '.' || c == '_' || c == '-'))
            .trim_end_matches('.');
        if !(t.contains('/') || paths::extension(t).is_some()) {
            continue;
        }
        let t = paths::normalize(t);
        let hits: Vec<&str> =
            ctx.ws.iter().copied().filter(|f| *f == t || f.ends_with(&format!("/{t}"))).collect();
        if t.contains('/') || hits.len() == 1 {
            mentioned.extend(hits.into_iter().map(String::from));
        }
    }
    dedup(mentioned)
}

/// DONE_MEANS items grouped by the files they name; an item that names none joins the
/// group before it (or the first group).
fn group_done_means(ctx: &Ctx<'_>) -> Vec<Deliverable> {
    let mut groups: Vec<(Vec<String>, Vec<String>)> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for item in ctx.input.packet.done_means.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let (mut files, strong) = files_for_text(ctx, item);
        // A weak match joins the latest group it overlaps rather than opening a new one.
        if !strong && let Some(g) = groups.iter().rev().find(|g| g.0.iter().any(|f| files.contains(f))) {
            files = g.0.clone();
        }
        if files.is_empty() {
            match groups.last_mut() {
                Some(g) => g.1.push(item.to_string()),
                None => pending.push(item.to_string()),
            }
            continue;
        }
        match groups.iter_mut().find(|g| g.0 == files) {
            Some(g) => g.1.push(item.to_string()),
            None => groups.push((files, vec![item.to_string()])),
        }
    }
    if let Some(first) = groups.first_mut() {
        let mut items = std::mem::take(&mut pending);
        items.append(&mut first.1);
        first.1 = items;
    }
    groups
        .into_iter()
        .flat_map(|(files, items)| {
            // Keep room for up to 3 automated criteria.
            items
                .chunks(MAX_DONE - 3)
                .map(|chunk| Deliverable {
                    text: chunk.join(" "),
                    surfaces: files.clone(),
                    criteria: chunk.to_vec(),
                    ..Deliverable::default()
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Ties a deliverable to concrete files and splits it at the file limits.
fn resolve(ctx: &Ctx<'_>, d: Deliverable) -> Vec<Unit> {
    let p = &ctx.input.packet;
    let mut modify = Vec::new();
    let mut create = Vec::new();
    let mut notes = Vec::new();
    let surfaces = if d.surfaces.is_empty() {
        files_for_text(ctx, &format!("{} {}", d.text, d.detail.as_deref().unwrap_or(""))).0
    } else {
        d.surfaces.clone()
    };
    for raw in &surfaces {
        let s = paths::normalize(raw);
        if s.is_empty() {
            continue;
        }
        let out_of_scope = p.out_of_scope.iter().any(|o| paths::in_scope(&s, std::slice::from_ref(o)));
        if !paths::in_scope(&s, &p.in_scope_paths) || out_of_scope {
            notes.push(format!("{s} is outside the packet's scope and was left out"));
        } else if paths::is_directory(&s, ctx.ws) {
            modify.extend(paths::expand(&s, ctx.ws).into_iter().map(String::from));
        } else if ctx.ws.contains(&s.as_str()) {
            modify.push(s);
        } else if paths::extension(&s).is_some() {
            create.push(s);
        } else {
            notes.push(format!("{s} names no file in the workspace and was left out"));
        }
    }
    let (modify, create) = (dedup(modify), dedup(create));
    if modify.is_empty() && create.is_empty() {
        return vec![];
    }
    // Declared-order sentences that name only other MTs' files would tell the model to edit
    // files it may not touch: they become notes instead of actions.
    let mut d = d;
    if let Some(detail) = d.detail.take() {
        let (mut kept, mut moved) = (Vec::new(), Vec::new());
        for sentence in detail.split(". ").map(|x| x.trim().trim_end_matches('.')).filter(|x| !x.is_empty()) {
            let named = mentioned_paths(ctx, sentence);
            if named.is_empty() || named.iter().any(|f| modify.contains(f) || create.contains(f)) {
                kept.push(sentence.to_string());
            } else {
                moved.push(sentence.to_string());
            }
        }
        if !moved.is_empty() {
            notes.push(format!(
                "IMPLEMENTATION_ORDER also says, for files of other MTs: {}.",
                moved.join(". ")
            ));
        }
        d.detail = (!kept.is_empty()).then(|| format!("{}.", kept.join(". ")));
    }
    let parts = modify.len().div_ceil(MAX_MODIFY).max(create.len().div_ceil(MAX_CREATE));
    (0..parts)
        .map(|i| Unit {
            deliverable: d.clone(),
            modify: modify.iter().skip(i * MAX_MODIFY).take(MAX_MODIFY).cloned().collect(),
            create: create.iter().skip(i * MAX_CREATE).take(MAX_CREATE).cloned().collect(),
            notes: notes.clone(),
            part: (parts > 1).then_some((i + 1, parts)),
        })
        .collect()
}

/// Hint and clause-row plans: every DONE_MEANS item becomes a criterion of the MT whose
/// files or wording it matches best (the last MT when none does).
fn assign_done_means(ctx: &Ctx<'_>, units: &mut [Unit]) {
    let from_done_means = ctx.input.packet.mt_hints.is_empty()
        && ctx.input.packet.clause_rows.is_empty()
        && ctx.input.packet.implementation_order.iter().all(|e| split_order_entry(e).is_none());
    if from_done_means {
        return;
    }
    for item in ctx.input.packet.done_means.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let w = words::words(item);
        let score = |u: &Unit| -> u32 {
            let files: u32 = u.modify.iter().chain(&u.create).map(|f| path_score(f, &w)).sum();
            let text = words::words(&format!(
                "{} {}",
                u.deliverable.text,
                u.deliverable.detail.as_deref().unwrap_or("")
            ));
            files * 2 + w.intersection(&text).count() as u32
        };
        let best = units.iter().map(score).max().unwrap_or(0);
        let target = if best == 0 {
            units.len() - 1
        } else {
            units.iter().position(|u| score(u) == best).unwrap_or(0)
        };
        let criteria = &mut units[target].deliverable.criteria;
        if !criteria.iter().any(|c| c == item) {
            criteria.push(item.to_string());
        }
    }
}

fn build(ctx: &Ctx<'_>, units: &[Unit]) -> Vec<MtDefinition> {
    let p = &ctx.input.packet;
    let ids: Vec<String> = (1..=units.len()).map(|n| format!("MT-{n:03}")).collect();
    // Hint / order ids -> the generated id of their last part (dependents wait for all parts).
    let mut by_source: BTreeMap<String, String> = BTreeMap::new();
    for (u, id) in units.iter().zip(&ids) {
        if let Some(src) = &u.deliverable.source_id {
            by_source.insert(src.clone(), id.clone());
        }
    }
    let whole_suite: Vec<&String> = ctx.test_plan.iter().filter(|c| is_whole_suite(c)).collect();
    let mut out: Vec<MtDefinition> = Vec::with_capacity(units.len());
    for (i, u) in units.iter().enumerate() {
        let d = &u.deliverable;
        let own: Vec<String> = u.modify.iter().chain(&u.create).cloned().collect();
        let text_words = words::words(&format!(
            "{} {} {}",
            d.text,
            d.detail.as_deref().unwrap_or(""),
            d.criteria.join(" ")
        ));

        // Verify commands: the deliverable's own, else the test-plan commands narrowed to it,
        // else the whole-suite ones; the last MT also runs the packet's whole-suite commands.
        let mut commands: Vec<String> =
            dedup(d.tests.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect());
        if commands.is_empty() {
            commands =
                ctx.test_plan.iter().filter(|c| command_matches(c, &text_words, &own)).cloned().collect();
        }
        if commands.is_empty() {
            commands = whole_suite.iter().map(|c| c.to_string()).take(3).collect();
        }
        if commands.is_empty() {
            commands = ctx.test_plan.iter().take(3).cloned().collect();
        }
        if i + 1 == units.len() {
            for c in &whole_suite {
                if !commands.contains(c) {
                    commands.push(c.to_string());
                }
            }
        }
        commands.truncate(MAX_VERIFY);
        let verify: Vec<VerifySpec> = commands
            .iter()
            .map(|c| VerifySpec {
                command: c.clone(),
                expect: Expectation::ExitZero,
                pattern: None,
                timeout_ms: VERIFY_TIMEOUT_MS,
                blocking: true,
            })
            .collect();

        // Done criteria: prose tied to a verify command becomes automated with its index.
        let mut done: Vec<DoneCriterion> = Vec::new();
        let mut referenced = BTreeSet::new();
        let mut overflow = Vec::new();
        for c in &d.criteria {
            let cw = words::words(c);
            let by_command = commands.iter().position(|cmd| criterion_names_command(c, &cw, cmd));
            let criterion = match by_command {
                Some(ix) => {
                    referenced.insert(ix);
                    DoneCriterion {
                        description: cut(c, 300),
                        verification: DoneVerification::Automated,
                        verify_ref: Some(ix as u32),
                    }
                }
                None => DoneCriterion {
                    description: cut(c, 300),
                    verification: DoneVerification::EvidenceRequired,
                    verify_ref: None,
                },
            };
            if done.len() < MAX_DONE - 1 {
                done.push(criterion);
            } else {
                overflow.push(cut(c, 120));
            }
        }
        for (ix, cmd) in commands.iter().enumerate() {
            if !referenced.contains(&ix) && done.len() < MAX_DONE {
                done.insert(
                    done.iter().take_while(|c| c.verification == DoneVerification::Automated).count(),
                    DoneCriterion {
                        description: format!("`{cmd}` passes"),
                        verification: DoneVerification::Automated,
                        verify_ref: Some(ix as u32),
                    },
                );
            }
        }

        // Dependencies: declared ones, earlier parts of the same deliverable, and for each of
        // this MT's files the latest earlier MT touching it (edits of one file stay in order).
        let mut deps: BTreeSet<String> = d
            .depends_on
            .iter()
            .filter_map(|s| by_source.get(s))
            .filter(|id| **id != ids[i])
            .cloned()
            .collect();
        if let Some((n, _)) = u.part
            && n > 1
        {
            deps.insert(ids[i - 1].clone());
        }
        for f in &own {
            if let Some(j) =
                (0..i).rev().find(|&j| units[j].modify.iter().chain(&units[j].create).any(|g| g == f))
            {
                deps.insert(ids[j].clone());
            }
        }
        // Dependencies never point forward, so the graph stays acyclic (MT-VAL-004).
        let deps: Vec<String> = deps.into_iter().filter(|d| ids[..i].contains(d)).collect();

        // Read: what the dependencies touched, then those of the packet's files to open that
        // sit next to this MT's files or that its wording names (every file costs budget).
        let mut read: Vec<String> = Vec::new();
        for dep in &deps {
            if let Some(j) = ids.iter().position(|x| x == dep) {
                read.extend(units[j].modify.iter().chain(&units[j].create).cloned());
            }
        }
        let parent = |f: &str| f.rsplit_once('/').map_or(String::new(), |(dir, _)| dir.to_string());
        let own_dirs: BTreeSet<String> = own.iter().map(|f| parent(f)).collect();
        let named = mentioned_paths(ctx, &format!("{} {}", d.text, d.detail.as_deref().unwrap_or("")));
        read.extend(
            p.files_to_open
                .iter()
                .map(|f| paths::normalize(f))
                .filter(|f| ctx.ws.contains(&f.as_str()))
                .filter(|f| own_dirs.contains(&parent(f)) || named.contains(f)),
        );
        let mut read: Vec<String> = dedup(read).into_iter().filter(|f| !own.contains(f)).collect();
        read.truncate(MAX_READ);

        let name = match u.part {
            Some((n, total)) => format!("{} (part {n} of {total})", cut(&d.text, 85)),
            None => cut(&d.text, 100),
        };
        let scope = cut(
            &match &d.detail {
                Some(detail) if detail != &d.text => format!("{}: {detail}", d.text),
                _ => d.text.clone(),
            },
            500,
        );
        let mut all_files = own.clone();
        all_files.extend(read.iter().cloned());
        let tags = task_tags(&own, &format!("{} {}", d.text, d.detail.as_deref().unwrap_or("")));
        let mut notes = u.notes.clone();
        if !overflow.is_empty() {
            notes.push(format!("Also required: {}", overflow.join("; ")));
        }
        if !p.out_of_scope.is_empty() {
            notes.push(format!("Out of scope: {}", p.out_of_scope.join("; ")));
        }
        out.push(MtDefinition {
            mt_id: ids[i].clone(),
            name,
            scope,
            files: FileAccess { read: read.clone(), modify: u.modify.clone(), create: u.create.clone() },
            actions: actions(d, &u.modify, &u.create, &commands),
            verify,
            done,
            depends_on: deps,
            token_budget: budget(ctx, &u.modify, &u.create, &read),
            execution_tier: ExecutionTier::LocalSmall,
            allowed_tools: vec![],
            retry_budget: 3,
            escalation_target: None,
            expected_output: ExpectedOutput::Patch,
            task_tags: tags,
            risk_level: risk(p.risk_tier.as_deref()),
            notes: (!notes.is_empty()).then(|| cut(&notes.join(" "), 1000)),
        });
    }
    out
}

/// Whether a prose criterion is what a test command proves: two words of a multi-word test
/// filter (or the one word of a one-word filter), in a sentence that speaks of tests. A
/// criterion about code ("the struct has a field") needs evidence even when a test covers it.
fn criterion_names_command(text: &str, text_words: &BTreeSet<String>, command: &str) -> bool {
    let Some(filter) = words::test_filter(command) else { return false };
    let lower = filter.to_lowercase();
    let parts: BTreeSet<&str> = lower.split(['_', ':', '/', '.', '-']).filter(|p| p.len() >= 3).collect();
    let overlap = parts.iter().filter(|p| text_words.contains(**p)).count();
    let speaks_of_tests = text.to_lowercase().contains("test");
    match parts.len() {
        0 => false,
        1 => speaks_of_tests && overlap == 1,
        _ => speaks_of_tests && overlap >= 2,
    }
}

fn actions(d: &Deliverable, modify: &[String], create: &[String], commands: &[String]) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    match &d.detail {
        Some(detail) => a.extend(
            detail
                .split(". ")
                .map(|s| s.trim().trim_end_matches('.'))
                .filter(|s| !s.is_empty())
                .take(5)
                .map(|s| cut(s, 200)),
        ),
        None => a.push(cut(&format!("Implement: {}", d.text), 200)),
    }
    let mut files = Vec::new();
    if !modify.is_empty() {
        files.push(format!("change {}", modify.join(", ")));
    }
    if !create.is_empty() {
        files.push(format!("create {}", create.join(", ")));
    }
    a.push(cut(&format!("Edit only these files: {}", files.join("; ")), 200));
    a.push(cut(
        &format!(
            "Run {} and fix what fails",
            commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
        ),
        200,
    ));
    a.push("Cite the changed lines as evidence for each done criterion".into());
    let mut a = dedup(a);
    a.truncate(MAX_ACTIONS);
    a
}

/// Prompt tokens for the files the MT sees: full text of the files it changes (bytes/4),
/// half of the files it only reads, a little for each file it creates, plus the fixed
/// prompt sections; clamped to [512, min(8192, window - 512)].
fn budget(ctx: &Ctx<'_>, modify: &[String], create: &[String], read: &[String]) -> u32 {
    let size = |f: &String| ctx.sizes.get(f.as_str()).copied().unwrap_or(0);
    let modify_bytes: u64 = modify.iter().map(size).sum();
    let read_bytes: u64 = read.iter().map(size).sum();
    let estimate = 1024 + modify_bytes / 4 + read_bytes / 8 + 256 * create.len() as u64;
    u32::try_from(estimate).unwrap_or(u32::MAX).clamp(MIN_BUDGET, ctx.max_budget)
}

fn risk(tier: Option<&str>) -> RiskLevel {
    match tier.map(|t| t.trim().to_ascii_uppercase()).as_deref() {
        Some("LOW") => RiskLevel::Low,
        Some("MEDIUM") => RiskLevel::Medium,
        _ => RiskLevel::High,
    }
}

/// The single-MT decomposition of 14.7.
fn fallback(ctx: &Ctx<'_>) -> MtDefinition {
    let p = &ctx.input.packet;
    let mut files: Vec<String> = Vec::new();
    for entry in &p.in_scope_paths {
        let e = paths::normalize(entry);
        if paths::is_directory(&e, ctx.ws) {
            files.extend(paths::expand(&e, ctx.ws).into_iter().map(String::from));
        } else if ctx.ws.contains(&e.as_str()) {
            files.push(e);
        }
    }
    let files = dedup(files);
    let modify: Vec<String> = files.iter().take(MAX_MODIFY).cloned().collect();
    let read: Vec<String> = files.iter().skip(MAX_MODIFY).take(MAX_READ).cloned().collect();
    let commands: Vec<String> = ctx.test_plan.iter().take(3).cloned().collect();
    let mut done = vec![DoneCriterion {
        description: "All validation commands succeed".into(),
        verification: DoneVerification::Automated,
        verify_ref: Some(0),
    }];
    done.extend(p.done_means.iter().filter(|s| !s.trim().is_empty()).take(MAX_DONE - 1).map(|s| {
        DoneCriterion {
            description: cut(s, 200),
            verification: DoneVerification::EvidenceRequired,
            verify_ref: None,
        }
    }));
    let description = if p.description.trim().is_empty() { p.title.clone() } else { p.description.clone() };
    MtDefinition {
        mt_id: "MT-001".into(),
        name: "Execute Work Packet".into(),
        scope: cut(&description, 500),
        files: FileAccess { read: read.clone(), modify: modify.clone(), create: vec![] },
        actions: dedup(vec![
            cut(&description, 200),
            "Implement required changes within scope".into(),
            "Run validation and collect evidence".into(),
        ]),
        verify: commands
            .iter()
            .map(|c| VerifySpec {
                command: c.clone(),
                expect: Expectation::ExitZero,
                pattern: None,
                timeout_ms: VERIFY_TIMEOUT_MS,
                blocking: true,
            })
            .collect(),
        done,
        depends_on: vec![],
        token_budget: 2048.min(ctx.max_budget),
        execution_tier: ExecutionTier::LocalSmall,
        allowed_tools: vec![],
        retry_budget: 3,
        escalation_target: None,
        expected_output: ExpectedOutput::Patch,
        task_tags: task_tags(&files, &description),
        risk_level: risk(p.risk_tier.as_deref()),
        notes: Some(
            "Single-MT fallback (MTX-SPEC 14.7): no deliverable of the packet could be tied to a file".into(),
        ),
    }
}

/// At most `max` characters, cut on a character boundary, with `...` when cut.
fn cut(s: &str, max: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

fn dedup(items: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    items.into_iter().filter(|i| seen.insert(i.clone())).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::bindings::mtx::plugin::types::{ClauseRow, MtHint, WorkPacket, WorkspaceFile};

    fn strings(v: &Value) -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
    }

    /// The planner-input JSON fixture (snake_case WIT field names) as the WIT record.
    fn input_from_json(text: &str) -> PlannerInput {
        let v: Value = serde_json::from_str(text).unwrap();
        let p = &v["packet"];
        PlannerInput {
            packet: WorkPacket {
                wp_id: p["wp_id"].as_str().unwrap().into(),
                title: p["title"].as_str().unwrap_or_default().into(),
                description: p["description"].as_str().unwrap_or_default().into(),
                in_scope_paths: strings(&p["in_scope_paths"]),
                out_of_scope: strings(&p["out_of_scope"]),
                test_plan: strings(&p["test_plan"]),
                done_means: strings(&p["done_means"]),
                risk_tier: p["risk_tier"].as_str().map(String::from),
                touched_file_budget: p["touched_file_budget"].as_u64().map(|n| n as u32),
                files_to_open: strings(&p["files_to_open"]),
                search_terms: strings(&p["search_terms"]),
                implementation_order: strings(&p["implementation_order"]),
                clause_rows: p["clause_rows"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|r| ClauseRow {
                        clause: r["clause"].as_str().unwrap().into(),
                        code_surfaces: strings(&r["code_surfaces"]),
                        tests: strings(&r["tests"]),
                    })
                    .collect(),
                mt_hints: p["mt_hints"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| MtHint {
                        mt_id: h["mt_id"].as_str().unwrap().into(),
                        clause: h["clause"].as_str().unwrap().into(),
                        code_surfaces: strings(&h["code_surfaces"]),
                        expected_tests: strings(&h["expected_tests"]),
                        depends_on: strings(&h["depends_on"]),
                    })
                    .collect(),
            },
            workspace_files: v["workspace_files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| WorkspaceFile {
                    path: f["path"].as_str().unwrap().into(),
                    size_bytes: f["size_bytes"].as_u64().unwrap(),
                })
                .collect(),
            context_window: v["context_window"].as_u64().unwrap() as u32,
        }
    }

    const REAL: &str = include_str!("../tests/fixtures/WP-1-FR-ModelSessionId-v1.planner-input.json");

    /// The MT-VAL ERROR rules and 3.6.5 limits the host will check, plus the WARNING rules
    /// the planner promises to satisfy (007, 008, 009).
    fn assert_valid(mts: &[MtDefinition], input: &PlannerInput) {
        let max_budget = 8192.min(input.context_window - 512);
        let ids: Vec<&str> = mts.iter().map(|m| m.mt_id.as_str()).collect();
        for (i, m) in mts.iter().enumerate() {
            let id = &m.mt_id;
            assert!(
                id.len() == 6 && id.starts_with("MT-") && id[3..].chars().all(|c| c.is_ascii_digit()),
                "{id}"
            );
            assert_eq!(ids.iter().filter(|x| **x == id).count(), 1, "MT-VAL-001 {id}");
            for d in &m.depends_on {
                let j = ids.iter().position(|x| x == d).unwrap_or_else(|| panic!("MT-VAL-003 {id} -> {d}"));
                assert!(j < i, "dependency {d} of {id} must come earlier");
            }
            for f in m.files.modify.iter().chain(&m.files.create) {
                assert!(paths::in_scope(f, &input.packet.in_scope_paths), "MT-VAL-005 {id}: {f}");
            }
            assert!((1..=100).contains(&m.name.chars().count()), "name of {id}");
            assert!((1..=500).contains(&m.scope.chars().count()), "scope of {id}");
            assert!(
                m.files.read.len() <= 10 && m.files.modify.len() <= 5 && m.files.create.len() <= 3,
                "files of {id}"
            );
            assert!(!m.files.modify.is_empty() || !m.files.create.is_empty(), "{id} touches nothing");
            assert!((1..=10).contains(&m.actions.len()), "actions of {id}");
            assert!(
                m.actions.iter().all(|a| (1..=200).contains(&a.chars().count())),
                "action length of {id}"
            );
            let unique: BTreeSet<&String> = m.actions.iter().collect();
            assert_eq!(unique.len(), m.actions.len(), "MT-VAL-009 {id}");
            assert!((1..=5).contains(&m.verify.len()), "verify of {id}");
            assert!(m.verify.iter().any(|v| v.blocking), "MT-VAL-007 {id}");
            assert!(
                m.verify.iter().all(|v| (1000..=300_000).contains(&v.timeout_ms) && !v.command.is_empty())
            );
            assert!((1..=8).contains(&m.done.len()), "done of {id}");
            for d in &m.done {
                if d.verification == DoneVerification::Automated {
                    assert!(d.verify_ref.is_some_and(|r| (r as usize) < m.verify.len()), "MT-VAL-008 {id}");
                }
            }
            assert!((512..=max_budget).contains(&m.token_budget), "MT-VAL-006 {id}: {}", m.token_budget);
            assert!(m.retry_budget <= 5);
            assert_eq!(
                (m.execution_tier, m.expected_output),
                (ExecutionTier::LocalSmall, ExpectedOutput::Patch)
            );
        }
    }

    fn packet(done_means: &[&str], test_plan: &[&str], in_scope: &[&str]) -> PlannerInput {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        PlannerInput {
            packet: WorkPacket {
                wp_id: "WP-T".into(),
                title: "t".into(),
                description: "Make the parser and the lexer agree".into(),
                in_scope_paths: s(in_scope),
                out_of_scope: vec![],
                test_plan: s(test_plan),
                done_means: s(done_means),
                risk_tier: Some("MEDIUM".into()),
                touched_file_budget: None,
                files_to_open: vec![],
                search_terms: vec![],
                implementation_order: vec![],
                clause_rows: vec![],
                mt_hints: vec![],
            },
            workspace_files: vec![
                WorkspaceFile { path: "src/lexer.rs".into(), size_bytes: 4000 },
                WorkspaceFile { path: "src/parser/mod.rs".into(), size_bytes: 8000 },
                WorkspaceFile { path: "src/parser/expr.rs".into(), size_bytes: 40_000 },
                WorkspaceFile { path: "tests/parse.rs".into(), size_bytes: 2000 },
            ],
            context_window: 8192,
        }
    }

    #[test]
    fn real_packet_follows_the_hints() {
        let input = input_from_json(REAL);
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        let root = "src/backend/handshake_core/src/";
        let modify: Vec<Vec<String>> = mts.iter().map(|m| m.files.modify.clone()).collect();
        assert_eq!(
            modify,
            vec![
                vec![format!("{root}flight_recorder/mod.rs")],
                vec![format!("{root}workflows.rs")],
                vec![format!("{root}flight_recorder/duckdb.rs")],
            ]
        );
        let deps: Vec<Vec<String>> = mts.iter().map(|m| m.depends_on.clone()).collect();
        assert_eq!(deps, vec![vec![], vec!["MT-001".to_string()], vec!["MT-002".to_string()]]);
        let cmds = |m: &MtDefinition| m.verify.iter().map(|v| v.command.clone()).collect::<Vec<_>>();
        assert_eq!(
            cmds(&mts[0]),
            vec!["cargo test fr_model_session_id", "cargo test flight_recorder_round_trip"]
        );
        // The last MT also runs the packet's whole-suite commands.
        assert_eq!(
            cmds(&mts[2]),
            vec![
                "cargo test flight_recorder_round_trip",
                "cargo test query_by_session",
                "cargo test --manifest-path src/backend/handshake_core/Cargo.toml",
                "just gov-check"
            ]
        );
        assert!(mts.iter().all(|m| m.risk_level == RiskLevel::High));
        // The declared order puts the duckdb.rs migration into MT-001, whose hint owns only
        // mod.rs: that sentence becomes a note, never an action on a file MT-001 may not touch.
        assert!(mts[0].actions.iter().all(|a| !a.contains("duckdb.rs")));
        assert!(mts[0].notes.as_deref().unwrap().contains("Add DuckDB migration in duckdb.rs"));
        // The clause is prose: evidence; the round-trip DONE_MEANS item names a verify command.
        let clause = mts[0].done.iter().find(|d| d.description.starts_with("11.5.1")).unwrap();
        assert_eq!(clause.verification, DoneVerification::EvidenceRequired);
        let round_trip =
            mts.iter().flat_map(|m| &m.done).find(|d| d.description.starts_with("Round-trip test")).unwrap();
        assert_eq!(round_trip.verification, DoneVerification::Automated);
        assert!(
            mts[0].task_tags.contains(&"rust".to_string())
                && mts[0].task_tags.contains(&"flight_recorder".to_string())
        );
        // Every DONE_MEANS item lands on some MT.
        let all: Vec<&str> = mts.iter().flat_map(|m| m.done.iter().map(|d| d.description.as_str())).collect();
        for item in &input.packet.done_means {
            assert!(all.contains(&item.as_str()), "{item} not assigned");
        }
    }

    #[test]
    fn real_packet_without_hints_uses_clause_rows() {
        let mut input = input_from_json(REAL);
        input.packet.mt_hints.clear();
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!(mts.len(), 3);
        // Without declared order, only file overlap makes dependencies; the rows share none.
        assert!(mts.iter().all(|m| m.depends_on.is_empty()));
    }

    #[test]
    fn real_packet_with_only_implementation_order() {
        let mut input = input_from_json(REAL);
        input.packet.mt_hints.clear();
        input.packet.clause_rows.clear();
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        // MT-003 of the order names no file: its wording joins MT-002 as a criterion.
        assert_eq!(mts.len(), 2);
        assert!(mts[1].done.iter().any(|d| d.description.starts_with("Add tests: round-trip test")));
        let root = "src/backend/handshake_core/src/";
        assert_eq!(
            mts[0].files.modify,
            vec![format!("{root}flight_recorder/mod.rs"), format!("{root}flight_recorder/duckdb.rs")]
        );
        assert_eq!(mts[1].files.modify, vec![format!("{root}workflows.rs")]);
        assert_eq!(mts[1].depends_on, vec!["MT-001".to_string()]);
    }

    #[test]
    fn done_means_are_grouped_by_the_files_they_name() {
        let input = packet(
            &[
                "The lexer emits a token for every `=>`",
                "lexer.rs keeps line numbers",
                "The parser accepts match arms in expr.rs",
                "Parser tests cover match arms",
            ],
            &["cargo test lexer", "cargo test parser::expr", "cargo test"],
            &["src/", "tests/"],
        );
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!(mts.len(), 2);
        assert_eq!(mts[0].files.modify, vec!["src/lexer.rs".to_string()]);
        assert_eq!(mts[1].files.modify, vec!["src/parser/expr.rs".to_string()]);
        assert_eq!(mts[0].verify[0].command, "cargo test lexer");
        assert_eq!(mts[1].verify[0].command, "cargo test parser::expr");
        assert_eq!(mts[1].verify.last().unwrap().command, "cargo test", "the last MT runs the whole suite");
        assert_eq!(mts[0].risk_level, RiskLevel::Medium);
        // A bigger file gets a bigger budget.
        assert!(mts[1].token_budget > mts[0].token_budget);
    }

    #[test]
    fn prose_criteria_need_evidence_and_test_criteria_are_automated() {
        let input =
            packet(&["lexer.rs handles tabs", "cargo test lexer passes"], &["cargo test lexer"], &["src/"]);
        let mts = plan(&input).unwrap();
        let kinds: Vec<(DoneVerification, Option<u32>)> =
            mts[0].done.iter().map(|d| (d.verification, d.verify_ref)).collect();
        assert_eq!(
            kinds,
            vec![(DoneVerification::EvidenceRequired, None), (DoneVerification::Automated, Some(0))]
        );
    }

    #[test]
    fn directory_surfaces_expand_and_missing_files_are_created() {
        let mut input = packet(&["done"], &["cargo test"], &["src/parser/", "src/new_mod.rs"]);
        input.packet.clause_rows = vec![ClauseRow {
            clause: "Parser rewrite".into(),
            code_surfaces: vec!["src/parser/**".into(), "src/new_mod.rs".into(), "docs/outside.md".into()],
            tests: vec![],
        }];
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!(
            mts[0].files.modify,
            vec!["src/parser/mod.rs".to_string(), "src/parser/expr.rs".to_string()]
        );
        assert_eq!(mts[0].files.create, vec!["src/new_mod.rs".to_string()]);
        assert!(mts[0].notes.as_deref().unwrap().contains("docs/outside.md is outside"));
    }

    #[test]
    fn too_many_files_split_into_dependent_parts() {
        let mut input = packet(&["x"], &["cargo test"], &["src/"]);
        input.workspace_files =
            (0..7).map(|n| WorkspaceFile { path: format!("src/m{n}.rs"), size_bytes: 100 }).collect();
        input.packet.clause_rows = vec![ClauseRow {
            clause: "Touch all modules".into(),
            code_surfaces: vec!["src/".into()],
            tests: vec![],
        }];
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!((mts[0].files.modify.len(), mts[1].files.modify.len()), (5, 2));
        assert_eq!(mts[1].depends_on, vec!["MT-001".to_string()]);
        assert!(mts[1].name.ends_with("(part 2 of 2)"));
    }

    #[test]
    fn unplaceable_packets_fall_back_to_one_mt() {
        let input = packet(
            &["Everything works", "Nothing breaks"],
            &["# comment", "cargo test", "cargo clippy"],
            &["src/"],
        );
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!(mts.len(), 1);
        let m = &mts[0];
        assert_eq!((m.name.as_str(), m.token_budget), ("Execute Work Packet", 2048));
        assert_eq!(m.files.modify.len(), 3);
        assert_eq!(
            m.verify.iter().map(|v| v.command.as_str()).collect::<Vec<_>>(),
            vec!["cargo test", "cargo clippy"]
        );
        assert_eq!(m.done[0].description, "All validation commands succeed");
        assert_eq!(m.done.len(), 3);
    }

    #[test]
    fn no_test_plan_is_refused() {
        let input = packet(&["x"], &["# only a comment", "  "], &["src/"]);
        assert!(matches!(plan(&input), Err(PluginError::InvalidInput(m)) if m.contains("TEST_PLAN")));
    }

    #[test]
    fn tiny_context_window_is_refused_and_budgets_respect_the_window() {
        let mut input = packet(&["lexer.rs handles tabs"], &["cargo test"], &["src/"]);
        input.context_window = 900;
        assert!(matches!(plan(&input), Err(PluginError::InvalidInput(_))));
        input.context_window = 1500;
        input.workspace_files[0].size_bytes = 1_000_000;
        let mts = plan(&input).unwrap();
        assert_eq!(mts[0].token_budget, 988);
    }

    fn row(clause: &str, surfaces: &[&str]) -> ClauseRow {
        ClauseRow {
            clause: clause.into(),
            code_surfaces: surfaces.iter().map(|s| s.to_string()).collect(),
            tests: vec![],
        }
    }

    #[test]
    fn shared_files_make_dependencies_on_the_latest_earlier_mt_per_file() {
        let mut input = packet(&["x"], &["cargo test lexer", "cargo test"], &["src/"]);
        input.packet.clause_rows = vec![
            row("Lexer tokens", &["src/lexer.rs"]),
            row("Parser entry", &["src/parser/mod.rs"]),
            row("Lexer and parser agree", &["src/lexer.rs", "src/parser/mod.rs"]),
        ];
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        let deps: Vec<Vec<String>> = mts.iter().map(|m| m.depends_on.clone()).collect();
        assert_eq!(deps, vec![vec![], vec![], vec!["MT-001".to_string(), "MT-002".to_string()]]);
        // MT-002's only file is one MT-003 changes itself, so it is not repeated as context.
        assert!(mts[2].files.read.is_empty());
    }

    #[test]
    fn hint_dependencies_map_to_generated_ids_and_unknown_ones_are_dropped() {
        let mut input = packet(&["x"], &["cargo test"], &["src/"]);
        let hint = |id: &str, surface: &str, deps: &[&str]| MtHint {
            mt_id: id.into(),
            clause: format!("work on {surface}"),
            code_surfaces: vec![surface.into()],
            expected_tests: vec!["cargo test".into()],
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
        };
        input.packet.mt_hints = vec![
            hint("MT-010", "src/lexer.rs", &["MT-999"]),
            hint("mt-020", "src/parser/expr.rs", &["MT-010"]),
        ];
        let mts = plan(&input).unwrap();
        assert_valid(&mts, &input);
        assert_eq!(mts[0].depends_on, Vec::<String>::new());
        assert_eq!(mts[1].depends_on, vec!["MT-001".to_string()]);
        assert_eq!(mts[1].files.read, vec!["src/lexer.rs".to_string()]);
    }

    #[test]
    fn planning_is_deterministic() {
        let input = input_from_json(REAL);
        let a = format!("{:?}", plan(&input).unwrap());
        let b = format!("{:?}", plan(&input).unwrap());
        assert_eq!(a, b);
    }
}
