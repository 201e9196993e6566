//! The integrity checks of one iteration, each finding naming its file and line:
//!
//! - `placeholder` (blocking): a changed line carries a placeholder marker;
//! - `protected-file-modified` (blocking): a file in `protected-files` was changed;
//! - `scope-violation` / `change-outside-scope` (blocking): the host refused a write for
//!   scope, or a changed file is not in `files.modify` ∪ `files.create`;
//! - `evidence-outside-change` (warning) per evidence line that overlaps no changed line,
//!   and `evidence-misses-changes` (blocking) when none of them does;
//! - `read-failed` (blocking): a changed file could not be read, so it was not checked.
//!
//! It must never pass an MT whose changed files it could not read.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::bindings::mtx::plugin::tool_bus::{Determinism, EngineResult, PlannedOperation, ToolError};
use crate::bindings::mtx::plugin::types::{
    ArtifactHandle, ChangeKind, Finding, PluginError, ValidationInput, ValidatorReport,
};
use crate::markers;

/// `read_files` returns at most 1 MiB per file; a changed file larger than that is
/// checked on its first MiB only (the engine's own limit).
const MAX_FILE_BYTES: u64 = 1024 * 1024;
const MAX_OUTPUT_BYTES: u64 = 10_485_760;
const READ_TIMEOUT_MS: u64 = 30_000;

/// The host's Tool Bus as this validator uses it; a fake in tests.
pub trait Bus {
    fn submit(&self, op: &PlannedOperation) -> Result<EngineResult, ToolError>;
    fn read_artifact(&self, handle: &ArtifactHandle, max_bytes: u64) -> Result<Vec<u8>, ToolError>;
}

/// The plugin's configuration, all keys optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `extra_markers`: JSON array of further substrings that mark unfinished work.
    pub extra_markers: Vec<String>,
    /// `fs_read_capability`: the capability id requested for reads (default `fs.read`); set
    /// it to the exact id the job profile and the plugin's grants hold, e.g. `fs.read:src`.
    pub fs_read_capability: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { extra_markers: vec![], fs_read_capability: "fs.read".into() }
    }
}

impl Settings {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Settings, PluginError> {
        let extra_markers = match get("extra_markers") {
            None => vec![],
            Some(text) => serde_json::from_str(&text).map_err(|e| {
                PluginError::BadConfig(format!("extra_markers must be a JSON array of strings: {e}"))
            })?,
        };
        let fs_read_capability = get("fs_read_capability").unwrap_or_else(|| "fs.read".into());
        if !(fs_read_capability == "fs.read" || fs_read_capability.starts_with("fs.read:")) {
            return Err(PluginError::BadConfig(format!(
                "fs_read_capability must be fs.read or fs.read:<scope>, not {fs_read_capability:?}"
            )));
        }
        Ok(Settings { extra_markers, fs_read_capability })
    }
}

fn finding(rule: &str, file: Option<&str>, line: Option<u32>, message: String, blocking: bool) -> Finding {
    Finding { rule: rule.into(), file: file.map(String::from), line, message, blocking }
}

fn norm(path: &str) -> &str {
    path.trim().trim_start_matches("./")
}

pub fn validate(bus: &dyn Bus, input: &ValidationInput, settings: &Settings) -> ValidatorReport {
    let mut findings = Vec::new();
    scope(input, &mut findings);
    protected(input, &mut findings);
    placeholders(bus, input, settings, &mut findings);
    evidence(input, &mut findings);
    let passed = !findings.iter().any(|f| f.blocking);
    ValidatorReport { passed, spec_results: vec![], findings }
}

fn scope(input: &ValidationInput, findings: &mut Vec<Finding>) {
    for path in &input.scope_violations {
        findings.push(finding(
            "scope-violation",
            Some(path),
            None,
            format!("the host refused a write to {path}: it is outside the MT's scope"),
            true,
        ));
    }
    let files = &input.mt.files;
    let allowed: BTreeSet<&str> = files.modify.iter().chain(&files.create).map(|p| norm(p)).collect();
    for changed in &input.changed_files {
        let path = norm(&changed.path);
        if !allowed.contains(path) {
            findings.push(finding(
                "change-outside-scope",
                Some(path),
                changed.changed_lines.first().copied(),
                format!(
                    "{path} changed but is in neither files.modify nor files.create of {}",
                    input.mt.mt_id
                ),
                true,
            ));
        }
    }
}

/// A protected entry covers the path itself and, as a directory, everything beneath it.
fn protected(input: &ValidationInput, findings: &mut Vec<Finding>) {
    for changed in &input.changed_files {
        let path = norm(&changed.path);
        let hit = input
            .protected_files
            .iter()
            .map(|p| norm(p).trim_end_matches('/'))
            .find(|p| path == *p || path.strip_prefix(*p).is_some_and(|rest| rest.starts_with('/')));
        if let Some(entry) = hit {
            findings.push(finding(
                "protected-file-modified",
                Some(path),
                changed.changed_lines.first().copied(),
                format!("{path} is a protected test oracle ({entry}) that this MT does not own"),
                true,
            ));
        }
    }
}

fn placeholders(bus: &dyn Bus, input: &ValidationInput, settings: &Settings, findings: &mut Vec<Finding>) {
    let targets: Vec<(&str, &[u32])> = input
        .changed_files
        .iter()
        .filter(|c| c.kind != ChangeKind::Deleted && !c.changed_lines.is_empty())
        .map(|c| (norm(&c.path), c.changed_lines.as_slice()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let paths: Vec<&str> = targets.iter().map(|(p, _)| *p).collect();
    let contents = match read_files(bus, &paths, &settings.fs_read_capability) {
        Ok(c) => c,
        Err(e) => {
            findings.push(finding(
                "read-failed",
                None,
                None,
                format!(
                    "the changed files could not be read, so they were not checked for placeholders: {e}"
                ),
                true,
            ));
            return;
        }
    };
    for (path, lines) in targets {
        let Some(text) = contents.get(path) else {
            findings.push(finding(
                "read-failed",
                Some(path),
                None,
                format!("{path} was not in the read report, so it was not checked for placeholders"),
                true,
            ));
            continue;
        };
        let all: Vec<&str> = text.lines().collect();
        for &n in lines {
            let Some(line) = n.checked_sub(1).and_then(|i| all.get(i as usize)) else { continue };
            if let Some(marker) = markers::find(line, &settings.extra_markers) {
                let shown: String = line.trim().chars().take(120).collect();
                findings.push(finding(
                    "placeholder",
                    Some(path),
                    Some(n),
                    format!("line {n} of {path} adds the placeholder `{marker}`: {shown}"),
                    true,
                ));
            }
        }
    }
}

/// The `engine.fs` / `read_files` operation for `paths`.
pub fn read_operation(paths: &[&str], capability: &str) -> PlannedOperation {
    PlannedOperation {
        engine_id: "engine.fs".into(),
        engine_version_req: None,
        operation: "read_files".into(),
        inputs: vec![],
        params_json: json!({ "paths": paths, "max_bytes_per_file": MAX_FILE_BYTES }).to_string(),
        capabilities_requested: vec![capability.to_string()],
        max_duration_ms: READ_TIMEOUT_MS,
        max_output_bytes: MAX_OUTPUT_BYTES,
        determinism: Determinism::D3,
        evidence_policy: None,
    }
}

/// Reads the files through the Tool Bus. The engine returns the read report first and then
/// one content artifact per file; contents are matched to paths by the report's sha256.
fn read_files(bus: &dyn Bus, paths: &[&str], capability: &str) -> Result<BTreeMap<String, String>, String> {
    let result = bus.submit(&read_operation(paths, capability)).map_err(|e| match e {
        ToolError::Denied(d) => format!("denied by {}: {}", d.gate, d.reason),
        ToolError::Invalid(m) => format!("tool bus refused the read: {m}"),
        ToolError::NoSuchArtifact(m) => format!("no such artifact: {m}"),
    })?;
    if !result.errors.is_empty() {
        let errs: Vec<String> = result.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect();
        return Err(errs.join("; "));
    }
    let report_handle = result.outputs.first().ok_or("the read returned no report")?;
    let report =
        bus.read_artifact(report_handle, MAX_OUTPUT_BYTES).map_err(|e| format!("read report: {e:?}"))?;
    let report: Value =
        serde_json::from_slice(&report).map_err(|e| format!("read report is not JSON: {e}"))?;
    let mut out = BTreeMap::new();
    for entry in report["files"].as_array().into_iter().flatten() {
        let (Some(path), Some(sha)) = (entry["path"].as_str(), entry["sha256"].as_str()) else { continue };
        let Some(handle) = result.outputs.iter().skip(1).find(|h| h.sha256 == sha) else {
            return Err(format!("no content artifact for {path}"));
        };
        let bytes =
            bus.read_artifact(handle, MAX_FILE_BYTES).map_err(|e| format!("content of {path}: {e:?}"))?;
        out.insert(norm(path).to_string(), String::from_utf8_lossy(&bytes).into_owned());
    }
    Ok(out)
}

/// `src/a.rs:10-42` or `src/a.rs:7` (6.2 item 10), backticks removed.
fn parse_location(location: &str) -> Option<(String, u32, u32)> {
    let loc = location.trim().replace('`', "");
    let (path, range) = loc.rsplit_once(':')?;
    let (start, end) = match range.split_once('-') {
        Some((s, e)) => (s.trim().parse().ok()?, e.trim().parse().ok()?),
        None => {
            let n = range.trim().parse().ok()?;
            (n, n)
        }
    };
    (!path.is_empty() && start >= 1 && start <= end).then(|| (norm(path).to_string(), start, end))
}

fn evidence(input: &ValidationInput, findings: &mut Vec<Finding>) {
    let c = &input.completion;
    if !c.claimed_complete || c.evidence.is_empty() {
        return;
    }
    let changed: BTreeMap<&str, &[u32]> =
        input.changed_files.iter().map(|f| (norm(&f.path), f.changed_lines.as_slice())).collect();
    let any_changed_line = changed.values().any(|l| !l.is_empty());
    let mut overlapping = 0usize;
    for ev in &c.evidence {
        let Some((path, start, end)) = parse_location(&ev.evidence_location) else {
            findings.push(finding(
                "evidence-unparseable",
                None,
                None,
                format!(
                    "evidence for {:?} has no file:line location: {:?}",
                    ev.criterion, ev.evidence_location
                ),
                false,
            ));
            continue;
        };
        let hits =
            changed.get(path.as_str()).is_some_and(|lines| lines.iter().any(|l| (start..=end).contains(l)));
        if hits {
            overlapping += 1;
        } else {
            findings.push(finding(
                "evidence-outside-change",
                Some(&path),
                Some(start),
                format!(
                    "evidence for {:?} cites {path}:{start}-{end}, which this MT did not change",
                    ev.criterion
                ),
                false,
            ));
        }
    }
    if overlapping == 0 && any_changed_line {
        findings.push(finding(
            "evidence-misses-changes",
            None,
            None,
            format!("none of the {} evidence lines cites a line this MT changed", c.evidence.len()),
            true,
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::bindings::mtx::plugin::tool_bus::{GateDenial, OpStatus};
    use crate::bindings::mtx::plugin::types::{
        ChangedFile, CompletionEvidence, CompletionSignal, DoneCriterion, DoneVerification, ExecutionTier,
        Expectation, ExpectedOutput, FileAccess, MtDefinition, RiskLevel, VerifySpec,
    };

    /// A fake `engine.fs`: serves files from a map, shaped like the real engine's result.
    struct FakeFs {
        files: HashMap<String, String>,
        deny: bool,
        submitted: RefCell<Vec<PlannedOperation>>,
        artifacts: RefCell<HashMap<String, Vec<u8>>>,
    }

    fn fs(files: &[(&str, &str)]) -> FakeFs {
        FakeFs {
            files: files.iter().map(|(p, t)| (p.to_string(), t.to_string())).collect(),
            deny: false,
            submitted: RefCell::new(vec![]),
            artifacts: RefCell::new(HashMap::new()),
        }
    }

    fn handle(path: &str, sha: &str) -> ArtifactHandle {
        ArtifactHandle {
            artifact_id: path.into(),
            path: path.into(),
            sha256: sha.into(),
            size_bytes: None,
            media_type: None,
        }
    }

    impl Bus for FakeFs {
        fn submit(&self, op: &PlannedOperation) -> Result<EngineResult, ToolError> {
            self.submitted.borrow_mut().push(op.clone());
            if self.deny {
                return Err(ToolError::Denied(GateDenial {
                    gate: "G-CAP".into(),
                    code: "x".into(),
                    reason: "no fs.read grant".into(),
                }));
            }
            let params: Value = serde_json::from_str(&op.params_json).unwrap();
            let mut outputs = vec![handle("report", "r")];
            let mut entries = vec![];
            // Contents are stored in reverse order, so matching by position would be wrong.
            for (i, p) in params["paths"].as_array().unwrap().iter().enumerate().rev() {
                let p = p.as_str().unwrap();
                let sha = format!("sha{i}");
                self.artifacts.borrow_mut().insert(format!("c{i}"), self.files[p].clone().into_bytes());
                outputs.push(handle(&format!("c{i}"), &sha));
                entries.push(json!({"path": p, "sha256": sha}));
            }
            self.artifacts
                .borrow_mut()
                .insert("report".into(), json!({"files": entries}).to_string().into_bytes());
            Ok(EngineResult {
                op_id: "op".into(),
                status: OpStatus::Succeeded,
                outputs,
                evidence: vec![],
                errors: vec![],
                terminal: None,
                result_ref: None,
            })
        }
        fn read_artifact(&self, h: &ArtifactHandle, _max: u64) -> Result<Vec<u8>, ToolError> {
            self.artifacts.borrow().get(&h.path).cloned().ok_or(ToolError::NoSuchArtifact(h.path.clone()))
        }
    }

    fn changed(path: &str, lines: &[u32]) -> ChangedFile {
        ChangedFile { path: path.into(), kind: ChangeKind::Modified, changed_lines: lines.to_vec() }
    }

    fn evidence_line(location: &str) -> CompletionEvidence {
        CompletionEvidence { criterion: "it works".into(), evidence_location: location.into() }
    }

    fn input(changed_files: Vec<ChangedFile>, evidence: Vec<CompletionEvidence>) -> ValidationInput {
        ValidationInput {
            job_id: "job".into(),
            wp_id: "WP-1".into(),
            step_id: "s".into(),
            iteration: 1,
            mt: MtDefinition {
                mt_id: "MT-001".into(),
                name: "n".into(),
                scope: "s".into(),
                files: FileAccess {
                    read: vec!["README.md".into()],
                    modify: vec!["src/a.rs".into()],
                    create: vec!["src/new.rs".into()],
                },
                actions: vec!["a".into()],
                verify: vec![VerifySpec {
                    command: "cargo test".into(),
                    expect: Expectation::ExitZero,
                    pattern: None,
                    timeout_ms: 1000,
                    blocking: true,
                }],
                done: vec![DoneCriterion {
                    description: "d".into(),
                    verification: DoneVerification::EvidenceRequired,
                    verify_ref: None,
                }],
                depends_on: vec![],
                token_budget: 1000,
                execution_tier: ExecutionTier::LocalSmall,
                allowed_tools: vec![],
                retry_budget: 3,
                escalation_target: None,
                expected_output: ExpectedOutput::Patch,
                task_tags: vec![],
                risk_level: RiskLevel::Low,
                notes: None,
            },
            completion: CompletionSignal {
                claimed_complete: true,
                evidence,
                blocked: false,
                blocked_reason: None,
                blocked_need: None,
                malformed: false,
                claimed_mt_id: Some("MT-001".into()),
                evidence_verified: Some(true),
                parse_warnings: vec![],
            },
            changed_files,
            protected_files: vec!["tests/oracle.rs".into(), "fixtures/".into()],
            scope_violations: vec![],
        }
    }

    fn rules(r: &ValidatorReport) -> Vec<(&str, Option<&str>, Option<u32>, bool)> {
        r.findings.iter().map(|f| (f.rule.as_str(), f.file.as_deref(), f.line, f.blocking)).collect()
    }

    const A: &str = "fn a() {}\n// TODO: finish\nfn b() { todo!() }\n// old TODO kept\n";

    #[test]
    fn clean_change_passes() {
        let bus = fs(&[("src/a.rs", "fn a() {}\nfn b() {}\n")]);
        let r = validate(
            &bus,
            &input(vec![changed("src/a.rs", &[2])], vec![evidence_line("src/a.rs:1-2")]),
            &Settings::default(),
        );
        assert!(r.passed, "{:?}", r.findings);
        assert!(r.findings.is_empty());
        let op = &bus.submitted.borrow()[0];
        assert_eq!((op.engine_id.as_str(), op.operation.as_str()), ("engine.fs", "read_files"));
        assert_eq!(op.capabilities_requested, vec!["fs.read".to_string()]);
        let params: Value = serde_json::from_str(&op.params_json).unwrap();
        assert_eq!(params["paths"], json!(["src/a.rs"]));
    }

    #[test]
    fn placeholders_on_changed_lines_are_blocking_with_file_and_line() {
        let bus = fs(&[("src/a.rs", A), ("src/new.rs", "// FIXME\n")]);
        let r = validate(
            &bus,
            &input(
                vec![changed("src/a.rs", &[2, 3]), changed("./src/new.rs", &[1])],
                vec![evidence_line("src/a.rs:2-3")],
            ),
            &Settings::default(),
        );
        assert_eq!(
            rules(&r),
            vec![
                ("placeholder", Some("src/a.rs"), Some(2), true),
                ("placeholder", Some("src/a.rs"), Some(3), true),
                ("placeholder", Some("src/new.rs"), Some(1), true),
            ]
        );
        assert!(!r.passed);
    }

    #[test]
    fn unchanged_lines_and_deleted_files_are_not_scanned() {
        let bus = fs(&[("src/a.rs", A)]);
        let mut gone = changed("src/new.rs", &[1]);
        gone.kind = ChangeKind::Deleted;
        let r = validate(
            &bus,
            &input(vec![changed("src/a.rs", &[1]), gone], vec![evidence_line("src/a.rs:1")]),
            &Settings::default(),
        );
        assert!(r.passed, "{:?}", r.findings);
    }

    #[test]
    fn protected_files_are_blocking() {
        let bus = fs(&[("tests/oracle.rs", "x\n"), ("fixtures/data/a.json", "{}\n"), ("src/a.rs", "ok\n")]);
        let r = validate(
            &bus,
            &input(
                vec![
                    changed("tests/oracle.rs", &[1]),
                    changed("fixtures/data/a.json", &[1]),
                    changed("src/a.rs", &[1]),
                ],
                vec![evidence_line("src/a.rs:1-1")],
            ),
            &Settings::default(),
        );
        let protected: Vec<_> = rules(&r).into_iter().filter(|f| f.0 == "protected-file-modified").collect();
        assert_eq!(protected.len(), 2);
        assert!(!r.passed);
    }

    #[test]
    fn changes_outside_modify_and_create_are_blocking() {
        let bus = fs(&[("README.md", "x\n"), ("src/a.rs", "ok\n")]);
        let mut i = input(
            vec![changed("README.md", &[1]), changed("src/a.rs", &[1])],
            vec![evidence_line("src/a.rs:1")],
        );
        i.scope_violations = vec!["../etc/passwd".into()];
        let r = validate(&bus, &i, &Settings::default());
        assert_eq!(
            rules(&r),
            vec![
                ("scope-violation", Some("../etc/passwd"), None, true),
                ("change-outside-scope", Some("README.md"), Some(1), true)
            ]
        );
    }

    #[test]
    fn evidence_off_the_change_warns_and_none_on_it_blocks() {
        let bus = fs(&[("src/a.rs", "a\nb\nc\nd\n")]);
        let r = validate(
            &bus,
            &input(
                vec![changed("src/a.rs", &[3, 4])],
                vec![evidence_line("src/a.rs:1-2"), evidence_line("`src/a.rs:4`")],
            ),
            &Settings::default(),
        );
        assert_eq!(rules(&r), vec![("evidence-outside-change", Some("src/a.rs"), Some(1), false)]);
        assert!(r.passed);
        let r = validate(
            &bus,
            &input(
                vec![changed("src/a.rs", &[3, 4])],
                vec![evidence_line("src/a.rs:1-2"), evidence_line("README.md:1-9")],
            ),
            &Settings::default(),
        );
        assert_eq!(
            rules(&r),
            vec![
                ("evidence-outside-change", Some("src/a.rs"), Some(1), false),
                ("evidence-outside-change", Some("README.md"), Some(1), false),
                ("evidence-misses-changes", None, None, true),
            ]
        );
        assert!(!r.passed);
    }

    #[test]
    fn unparseable_evidence_is_a_warning() {
        let bus = fs(&[("src/a.rs", "a\n")]);
        let r = validate(
            &bus,
            &input(
                vec![changed("src/a.rs", &[1])],
                vec![evidence_line("src/a.rs:1"), evidence_line("somewhere")],
            ),
            &Settings::default(),
        );
        assert_eq!(rules(&r), vec![("evidence-unparseable", None, None, false)]);
    }

    #[test]
    fn unreadable_files_block() {
        let mut bus = fs(&[("src/a.rs", "a\n")]);
        bus.deny = true;
        let r = validate(
            &bus,
            &input(vec![changed("src/a.rs", &[1])], vec![evidence_line("src/a.rs:1")]),
            &Settings::default(),
        );
        assert_eq!(rules(&r), vec![("read-failed", None, None, true)]);
        assert!(r.findings[0].message.contains("denied by G-CAP"));
    }

    #[test]
    fn extra_markers_come_from_config() {
        let s = Settings::from_config(|k| {
            (k == "extra_markers").then(|| r#"["NotImplementedError"]"#.to_string())
        })
        .unwrap();
        let bus = fs(&[("src/a.rs", "raise NotImplementedError\n")]);
        let r =
            validate(&bus, &input(vec![changed("src/a.rs", &[1])], vec![evidence_line("src/a.rs:1")]), &s);
        assert_eq!(rules(&r), vec![("placeholder", Some("src/a.rs"), Some(1), true)]);
        assert!(matches!(Settings::from_config(|_| Some("x".into())), Err(PluginError::BadConfig(_))));
        let scoped =
            Settings::from_config(|k| (k == "fs_read_capability").then(|| "fs.read:src".to_string()))
                .unwrap();
        let bus = fs(&[("src/a.rs", "ok\n")]);
        validate(&bus, &input(vec![changed("src/a.rs", &[1])], vec![evidence_line("src/a.rs:1")]), &scoped);
        assert_eq!(bus.submitted.borrow()[0].capabilities_requested, vec!["fs.read:src".to_string()]);
    }
}
