//! One validation: a planned `engine.shell`/`exec` operation per verify spec, in order
//! (MTX-SPEC 10.11), the expectation check of 10.12, the single timeout retry of 11.2
//! item 3, and the zero-tests finding.
//!
//! Must never treat a spec as passed without an exit code from the engine, and never turn
//! a gate denial into anything but a failed spec that names the gate.

use serde_json::json;

use crate::bindings::mtx::plugin::tool_bus::{
    Determinism, EngineResult, OpStatus, PlannedOperation, ToolError,
};
use crate::bindings::mtx::plugin::types::{
    ArtifactHandle, Expectation, Finding, PluginError, ValidationInput, ValidatorReport, VerifySpec,
    VerifySpecResult,
};
use crate::exec_capability;
use crate::zero_tests::zero_tests;

/// 10.11 budget: `max_output_bytes`.
pub const MAX_OUTPUT_BYTES: u64 = 10_485_760;
/// 11.2 item 3 / 11.4: a retried validation timeout never exceeds this.
pub const MAX_TIMEOUT_MS: u32 = 300_000;
/// The zero-tests check reads at most this much stdout: the runner's summary lines come
/// early or are repeated per binary, and the guest's memory is capped.
const ZERO_TESTS_READ_BYTES: u64 = 4 * 1024 * 1024;

/// The host's Tool Bus as this validator uses it; a fake in tests.
pub trait Bus {
    fn submit(&self, op: &PlannedOperation) -> Result<EngineResult, ToolError>;
    fn read_artifact(&self, handle: &ArtifactHandle, max_bytes: u64) -> Result<Vec<u8>, ToolError>;
}

/// The plugin's configuration (the `config` table of its run-config entry), all keys optional.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `in_scope_paths`: JSON array passed to the sandbox as `params.in_scope_paths`;
    /// without it the MT's own files (read ∪ modify ∪ create) are passed.
    pub in_scope_paths: Option<Vec<String>>,
    /// `zero_tests_check`: `true` (default) or `false`.
    pub zero_tests_check: bool,
    /// `zero_tests_blocking`: whether a zero-tests finding on a blocking spec blocks (default `true`).
    pub zero_tests_blocking: bool,
    /// `zero_tests_patterns`: JSON array of extra stdout substrings that mean "no test ran".
    pub zero_tests_patterns: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            in_scope_paths: None,
            zero_tests_check: true,
            zero_tests_blocking: true,
            zero_tests_patterns: vec![],
        }
    }
}

impl Settings {
    pub fn from_config(get: impl Fn(&str) -> Option<String>) -> Result<Settings, PluginError> {
        let list = |key: &str| -> Result<Option<Vec<String>>, PluginError> {
            get(key)
                .map(|text| {
                    serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                        PluginError::BadConfig(format!("{key} must be a JSON array of strings: {e}"))
                    })
                })
                .transpose()
        };
        let flag = |key: &str, default: bool| -> Result<bool, PluginError> {
            match get(key).as_deref().map(str::trim) {
                None => Ok(default),
                Some("true") => Ok(true),
                Some("false") => Ok(false),
                Some(other) => {
                    Err(PluginError::BadConfig(format!("{key} must be true or false, not {other:?}")))
                }
            }
        };
        Ok(Settings {
            in_scope_paths: list("in_scope_paths")?,
            zero_tests_check: flag("zero_tests_check", true)?,
            zero_tests_blocking: flag("zero_tests_blocking", true)?,
            zero_tests_patterns: list("zero_tests_patterns")?.unwrap_or_default(),
        })
    }
}

/// Runs every verify spec in order and reports; `passed` = every blocking spec passed and
/// no blocking finding.
pub fn validate(bus: &dyn Bus, input: &ValidationInput, settings: &Settings) -> ValidatorReport {
    let scope = settings.in_scope_paths.clone().unwrap_or_else(|| mt_paths(input));
    let mut findings = Vec::new();
    let mut spec_results = Vec::with_capacity(input.mt.verify.len());
    for (index, spec) in input.mt.verify.iter().enumerate() {
        let index = index as u32;
        let (result, stdout) = run_spec(bus, index, spec, &scope);
        if settings.zero_tests_check
            && result.passed
            && matches!(spec.expect, Expectation::ExitZero | Expectation::Contains)
            && let Some(why) = stdout_for_zero_tests(bus, &result, stdout)
                .and_then(|out| zero_tests(&out, &settings.zero_tests_patterns))
        {
            findings.push(Finding {
                rule: "zero-tests".into(),
                file: None,
                line: None,
                message: format!("verify spec {index} `{}` ran no tests: {why}", spec.command),
                blocking: spec.blocking && settings.zero_tests_blocking,
            });
        }
        spec_results.push(result);
    }
    if input.mt.verify.is_empty() {
        findings.push(Finding {
            rule: "no-verify-specs".into(),
            file: None,
            line: None,
            message: format!("{} has no verify spec, so nothing proves it", input.mt.mt_id),
            blocking: true,
        });
    }
    let specs_ok = input.mt.verify.iter().zip(&spec_results).all(|(s, r)| !s.blocking || r.passed);
    let passed = specs_ok && !findings.iter().any(|f| f.blocking);
    ValidatorReport { passed, spec_results, findings }
}

/// Paths of the MT itself, sorted and deduplicated, when no scope was configured.
fn mt_paths(input: &ValidationInput) -> Vec<String> {
    let f = &input.mt.files;
    let mut paths: Vec<String> = f.read.iter().chain(&f.modify).chain(&f.create).cloned().collect();
    paths.sort();
    paths.dedup();
    paths
}

/// `exit_0`, `exit_nonzero`, `contains:<pattern>`, `not_contains:<pattern>`.
pub fn expected_text(spec: &VerifySpec) -> String {
    let pattern = spec.pattern.as_deref().unwrap_or("");
    match spec.expect {
        Expectation::ExitZero => "exit_0".into(),
        Expectation::ExitNonzero => "exit_nonzero".into(),
        Expectation::Contains => format!("contains:{pattern}"),
        Expectation::NotContains => format!("not_contains:{pattern}"),
    }
}

/// The 10.11 operation for one spec.
pub fn planned_operation(
    command: &str,
    capability: &str,
    timeout_ms: u32,
    scope: &[String],
) -> PlannedOperation {
    let params = json!({
        "command": command,
        "cwd": ".",
        "timeout_ms": timeout_ms,
        "env": {},
        "in_scope_paths": scope,
    });
    PlannedOperation {
        engine_id: "engine.shell".into(),
        engine_version_req: None,
        operation: "exec".into(),
        inputs: vec![],
        params_json: params.to_string(),
        capabilities_requested: vec![capability.to_string()],
        max_duration_ms: u64::from(timeout_ms),
        max_output_bytes: MAX_OUTPUT_BYTES,
        determinism: Determinism::D1,
        evidence_policy: Some("capture_stdout_stderr".into()),
    }
}

fn failed(index: u32, spec: &VerifySpec, error: String) -> VerifySpecResult {
    VerifySpecResult {
        spec_index: index,
        command: spec.command.clone(),
        expected: expected_text(spec),
        actual_exit_code: -1,
        passed: false,
        timed_out: false,
        stdout_ref: None,
        stderr_ref: None,
        duration_ms: 0,
        error: Some(error),
    }
}

/// Runs one spec; also returns stdout when it was read for a pattern check.
fn run_spec(
    bus: &dyn Bus,
    index: u32,
    spec: &VerifySpec,
    scope: &[String],
) -> (VerifySpecResult, Option<Vec<u8>>) {
    let needs_pattern = matches!(spec.expect, Expectation::Contains | Expectation::NotContains);
    if needs_pattern && spec.pattern.as_deref().is_none_or(str::is_empty) {
        let e = format!("verify spec {index} expects {} but has no pattern", expected_text(spec));
        return (failed(index, spec, e), None);
    }
    let Some(capability) = exec_capability::capability(&spec.command) else {
        let e =
            format!("no tool name can be derived from command {:?}, so it was not submitted", spec.command);
        return (failed(index, spec, e), None);
    };
    let mut timeout = spec.timeout_ms;
    let mut spent_ms = 0u64;
    let mut attempt = submit(bus, &spec.command, &capability, timeout, scope);
    // 11.2 item 3: one re-run with the timeout doubled (capped) after a validation timeout.
    let mut retry_note = None;
    if let Ok(r) = &attempt
        && r.terminal.as_ref().is_some_and(|t| t.timed_out)
    {
        let doubled = timeout.saturating_mul(2).min(MAX_TIMEOUT_MS);
        if doubled > timeout {
            spent_ms += r.terminal.as_ref().map_or(0, |t| t.duration_ms);
            retry_note = Some(format!("timed out after {timeout} ms, re-run with {doubled} ms"));
            timeout = doubled;
            attempt = submit(bus, &spec.command, &capability, timeout, scope);
        }
    }
    let result = match attempt {
        Ok(r) => r,
        Err(ToolError::Denied(d)) => {
            return (failed(index, spec, format!("denied by {}: {}", d.gate, d.reason)), None);
        }
        Err(ToolError::Invalid(m)) => {
            return (failed(index, spec, format!("tool bus refused the operation: {m}")), None);
        }
        Err(ToolError::NoSuchArtifact(m)) => {
            return (failed(index, spec, format!("tool bus: no such artifact: {m}")), None);
        }
    };
    let Some(terminal) = result.terminal else {
        let errors: Vec<String> =
            result.errors.iter().map(|e| format!("{}: {}", e.code, e.message)).collect();
        let what = if result.status == OpStatus::Denied {
            "denied by engine.shell"
        } else {
            "engine.shell ran nothing"
        };
        let detail = if errors.is_empty() { "no terminal output".to_string() } else { errors.join("; ") };
        return (failed(index, spec, format!("{what}: {detail}")), None);
    };
    // 10.12 step 3: evidence is [stdout, stderr, terminal_output].
    let stdout_ref = result.evidence.first().cloned();
    let stderr_ref = result.evidence.get(1).cloned();
    let mut out = VerifySpecResult {
        spec_index: index,
        command: spec.command.clone(),
        expected: expected_text(spec),
        actual_exit_code: if terminal.timed_out { -1 } else { terminal.exit_code },
        passed: false,
        timed_out: terminal.timed_out,
        stdout_ref: stdout_ref.clone(),
        stderr_ref,
        duration_ms: spent_ms + terminal.duration_ms,
        error: None,
    };
    let mut stdout_bytes = None;
    let verdict: Result<bool, String> = match spec.expect {
        Expectation::ExitZero => Ok(terminal.exit_code == 0 && !terminal.timed_out),
        Expectation::ExitNonzero => Ok(terminal.exit_code != 0 || terminal.timed_out),
        Expectation::Contains | Expectation::NotContains if terminal.timed_out => {
            Err(format!("timed out after {timeout} ms; partial stdout is not judged"))
        }
        Expectation::Contains | Expectation::NotContains => {
            let pattern = spec.pattern.as_deref().unwrap_or_default();
            match read_stdout(bus, stdout_ref.as_ref(), MAX_OUTPUT_BYTES) {
                Err(e) => Err(e),
                Ok(bytes) => {
                    let found = contains(&bytes, pattern.as_bytes());
                    stdout_bytes = Some(bytes);
                    let wanted = spec.expect == Expectation::Contains;
                    if found != wanted && terminal.truncated_bytes > 0 {
                        Err(format!(
                            "stdout was truncated by {} bytes; the pattern check is unreliable",
                            terminal.truncated_bytes
                        ))
                    } else {
                        Ok(found == wanted)
                    }
                }
            }
        }
    };
    match verdict {
        Ok(p) => out.passed = p,
        Err(e) => out.error = Some(e),
    }
    if terminal.timed_out && out.error.is_none() {
        out.error = Some(match &retry_note {
            Some(note) => format!("{note}, and timed out again"),
            None => format!("timed out after {timeout} ms"),
        });
    }
    (out, stdout_bytes)
}

fn submit(
    bus: &dyn Bus,
    command: &str,
    capability: &str,
    timeout_ms: u32,
    scope: &[String],
) -> Result<EngineResult, ToolError> {
    bus.submit(&planned_operation(command, capability, timeout_ms, scope))
}

fn read_stdout(bus: &dyn Bus, handle: Option<&ArtifactHandle>, max: u64) -> Result<Vec<u8>, String> {
    let handle = handle.ok_or("the engine returned no stdout artifact")?;
    bus.read_artifact(handle, max).map_err(|e| match e {
        ToolError::Denied(d) => format!("reading stdout was denied by {}: {}", d.gate, d.reason),
        ToolError::Invalid(m) | ToolError::NoSuchArtifact(m) => format!("stdout artifact unreadable: {m}"),
    })
}

fn stdout_for_zero_tests(
    bus: &dyn Bus,
    result: &VerifySpecResult,
    already: Option<Vec<u8>>,
) -> Option<String> {
    let bytes = match already {
        Some(b) => b,
        None => read_stdout(bus, result.stdout_ref.as_ref(), ZERO_TESTS_READ_BYTES).ok()?,
    };
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;

    use super::*;
    use crate::bindings::mtx::plugin::tool_bus::{GateDenial, TerminalOutput};
    use crate::bindings::mtx::plugin::types::{
        CompletionSignal, DoneCriterion, ExecutionTier, ExpectedOutput, FileAccess, MtDefinition, RiskLevel,
    };

    /// A scripted Tool Bus: answers each submit from a queue and serves stdout by path.
    #[derive(Default)]
    struct FakeBus {
        answers: RefCell<Vec<Result<EngineResult, ToolError>>>,
        submitted: RefCell<Vec<PlannedOperation>>,
        artifacts: HashMap<String, Vec<u8>>,
    }

    impl Bus for FakeBus {
        fn submit(&self, op: &PlannedOperation) -> Result<EngineResult, ToolError> {
            self.submitted.borrow_mut().push(op.clone());
            self.answers.borrow_mut().remove(0)
        }
        fn read_artifact(&self, handle: &ArtifactHandle, max: u64) -> Result<Vec<u8>, ToolError> {
            let mut b = self
                .artifacts
                .get(&handle.path)
                .cloned()
                .ok_or(ToolError::NoSuchArtifact(handle.path.clone()))?;
            b.truncate(max as usize);
            Ok(b)
        }
    }

    fn handle(path: &str) -> ArtifactHandle {
        ArtifactHandle {
            artifact_id: path.into(),
            path: path.into(),
            sha256: "0".repeat(64),
            size_bytes: None,
            media_type: None,
        }
    }

    fn ran(exit: i32, timed_out: bool, stdout_path: &str) -> Result<EngineResult, ToolError> {
        Ok(EngineResult {
            op_id: "op".into(),
            status: if exit == 0 && !timed_out { OpStatus::Succeeded } else { OpStatus::Failed },
            outputs: vec![handle("terminal")],
            evidence: vec![handle(stdout_path), handle("stderr"), handle("terminal")],
            errors: vec![],
            terminal: Some(TerminalOutput {
                exit_code: if timed_out { -1 } else { exit },
                timed_out,
                truncated_bytes: 0,
                duration_ms: 7,
            }),
            result_ref: None,
        })
    }

    fn bus(answers: Vec<Result<EngineResult, ToolError>>, stdout: &[(&str, &str)]) -> FakeBus {
        FakeBus {
            answers: RefCell::new(answers),
            submitted: RefCell::new(vec![]),
            artifacts: stdout.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect(),
        }
    }

    fn spec(command: &str, expect: Expectation, pattern: Option<&str>, blocking: bool) -> VerifySpec {
        VerifySpec {
            command: command.into(),
            expect,
            pattern: pattern.map(String::from),
            timeout_ms: 60_000,
            blocking,
        }
    }

    fn input(verify: Vec<VerifySpec>) -> ValidationInput {
        ValidationInput {
            job_id: "job".into(),
            wp_id: "WP-1".into(),
            step_id: "MT-001-001-01".into(),
            iteration: 1,
            mt: MtDefinition {
                mt_id: "MT-001".into(),
                name: "n".into(),
                scope: "s".into(),
                files: FileAccess { read: vec!["b.rs".into()], modify: vec!["a.rs".into()], create: vec![] },
                actions: vec!["a".into()],
                verify,
                done: vec![DoneCriterion {
                    description: "d".into(),
                    verification: crate::bindings::mtx::plugin::types::DoneVerification::Automated,
                    verify_ref: Some(0),
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
                evidence: vec![],
                blocked: false,
                blocked_reason: None,
                blocked_need: None,
                malformed: false,
                claimed_mt_id: None,
                evidence_verified: Some(true),
                parse_warnings: vec![],
            },
            changed_files: vec![],
            protected_files: vec![],
            scope_violations: vec![],
        }
    }

    #[test]
    fn plans_the_10_11_operation() {
        let b = bus(vec![ran(0, false, "out")], &[("out", "running 2 tests\n")]);
        let r = validate(
            &b,
            &input(vec![spec("cargo test config::merger", Expectation::ExitZero, None, true)]),
            &Settings::default(),
        );
        assert!(r.passed);
        let op = &b.submitted.borrow()[0];
        assert_eq!((op.engine_id.as_str(), op.operation.as_str()), ("engine.shell", "exec"));
        assert_eq!(op.capabilities_requested, vec!["proc.exec:cargo".to_string()]);
        assert_eq!((op.max_duration_ms, op.max_output_bytes), (60_000, 10_485_760));
        assert_eq!(op.determinism, Determinism::D1);
        assert_eq!(op.evidence_policy.as_deref(), Some("capture_stdout_stderr"));
        let params: serde_json::Value = serde_json::from_str(&op.params_json).unwrap();
        assert_eq!(
            params,
            json!({"command": "cargo test config::merger", "cwd": ".", "timeout_ms": 60000, "env": {}, "in_scope_paths": ["a.rs", "b.rs"]})
        );
        assert_eq!(r.spec_results[0].expected, "exit_0");
        assert_eq!(r.spec_results[0].stdout_ref.as_ref().unwrap().path, "out");
    }

    #[test]
    fn configured_scope_is_passed_to_the_sandbox() {
        let b = bus(vec![ran(0, false, "out")], &[("out", "")]);
        let s = Settings { in_scope_paths: Some(vec!["src".into()]), ..Settings::default() };
        validate(&b, &input(vec![spec("true", Expectation::ExitZero, None, true)]), &s);
        let params: serde_json::Value = serde_json::from_str(&b.submitted.borrow()[0].params_json).unwrap();
        assert_eq!(params["in_scope_paths"], json!(["src"]));
    }

    #[test]
    fn exit_expectations() {
        let b = bus(vec![ran(1, false, "o"), ran(1, false, "o"), ran(0, false, "o")], &[("o", "")]);
        let r = validate(
            &b,
            &input(vec![
                spec("false", Expectation::ExitZero, None, true),
                spec("false", Expectation::ExitNonzero, None, true),
                spec("true", Expectation::ExitNonzero, None, false),
            ]),
            &Settings::default(),
        );
        let passed: Vec<bool> = r.spec_results.iter().map(|s| s.passed).collect();
        assert_eq!(passed, vec![false, true, false]);
        assert_eq!(r.spec_results[0].actual_exit_code, 1);
        assert!(!r.passed);
    }

    #[test]
    fn non_blocking_failures_do_not_fail_the_report() {
        let b = bus(vec![ran(0, false, "o"), ran(2, false, "o")], &[("o", "")]);
        let r = validate(
            &b,
            &input(vec![
                spec("true", Expectation::ExitZero, None, true),
                spec("lint", Expectation::ExitZero, None, false),
            ]),
            &Settings::default(),
        );
        assert!(!r.spec_results[1].passed);
        assert!(r.passed);
    }

    #[test]
    fn pattern_checks_read_stdout() {
        let b = bus(
            vec![ran(0, false, "o1"), ran(0, false, "o1"), ran(0, false, "o1")],
            &[("o1", "all good: 3 passed\n")],
        );
        let r = validate(
            &b,
            &input(vec![
                spec("t", Expectation::Contains, Some("3 passed"), true),
                spec("t", Expectation::NotContains, Some("FAILED"), true),
                spec("t", Expectation::Contains, Some("nope"), true),
            ]),
            &Settings::default(),
        );
        let passed: Vec<bool> = r.spec_results.iter().map(|s| s.passed).collect();
        assert_eq!(passed, vec![true, true, false]);
        assert_eq!(r.spec_results[0].expected, "contains:3 passed");
        assert_eq!(r.spec_results[1].expected, "not_contains:FAILED");
    }

    #[test]
    fn missing_pattern_or_stdout_fails_with_an_error() {
        let b = bus(vec![ran(0, false, "gone")], &[]);
        let r = validate(
            &b,
            &input(vec![
                spec("t", Expectation::Contains, None, true),
                spec("t", Expectation::Contains, Some("x"), true),
            ]),
            &Settings::default(),
        );
        assert_eq!(b.submitted.borrow().len(), 1, "a spec without pattern is not run");
        assert!(r.spec_results[0].error.as_deref().unwrap().contains("no pattern"));
        assert!(r.spec_results[1].error.as_deref().unwrap().contains("stdout artifact unreadable"));
        assert!(r.spec_results.iter().all(|s| !s.passed));
    }

    #[test]
    fn gate_denial_is_a_failed_spec_naming_the_gate() {
        let denial = ToolError::Denied(GateDenial {
            gate: "G-CAP".into(),
            code: "HSK-4001".into(),
            reason: "proc.exec:rm not granted".into(),
        });
        let b = bus(vec![Err(denial)], &[]);
        let r = validate(
            &b,
            &input(vec![spec("rm -rf x", Expectation::ExitZero, None, true)]),
            &Settings::default(),
        );
        let s = &r.spec_results[0];
        assert_eq!((s.passed, s.actual_exit_code), (false, -1));
        assert_eq!(s.error.as_deref(), Some("denied by G-CAP: proc.exec:rm not granted"));
        assert!(!r.passed);
    }

    #[test]
    fn underivable_tool_is_never_submitted() {
        let b = bus(vec![], &[]);
        let r = validate(
            &b,
            &input(vec![spec("'unterminated", Expectation::ExitZero, None, true)]),
            &Settings::default(),
        );
        assert!(b.submitted.borrow().is_empty());
        assert!(!r.passed);
    }

    #[test]
    fn timeout_is_retried_once_with_double_the_time() {
        let b = bus(vec![ran(0, true, "o"), ran(0, false, "o")], &[("o", "running 1 test\n")]);
        let r = validate(
            &b,
            &input(vec![spec("cargo test", Expectation::ExitZero, None, true)]),
            &Settings::default(),
        );
        let subs = b.submitted.borrow();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[1].max_duration_ms, 120_000);
        assert!(subs[1].params_json.contains("\"timeout_ms\":120000"));
        assert!(r.passed);
        assert_eq!(r.spec_results[0].duration_ms, 14);
    }

    #[test]
    fn a_second_timeout_fails_and_the_cap_holds() {
        let b = bus(vec![ran(0, true, "o"), ran(0, true, "o")], &[("o", "")]);
        let mut s = spec("cargo test", Expectation::ExitZero, None, true);
        s.timeout_ms = 200_000;
        let r = validate(&b, &input(vec![s.clone()]), &Settings::default());
        assert_eq!(b.submitted.borrow()[1].max_duration_ms, 300_000);
        let res = &r.spec_results[0];
        assert!(res.timed_out && !res.passed);
        assert_eq!(res.actual_exit_code, -1);
        assert!(res.error.as_deref().unwrap().contains("timed out again"));
        // Already at the cap: no second run.
        let b2 = bus(vec![ran(0, true, "o")], &[("o", "")]);
        s.timeout_ms = 300_000;
        validate(&b2, &input(vec![s]), &Settings::default());
        assert_eq!(b2.submitted.borrow().len(), 1);
    }

    #[test]
    fn engine_failure_without_terminal_output_fails() {
        let mut res = ran(0, false, "o").unwrap();
        res.terminal = None;
        res.status = OpStatus::Denied;
        res.errors = vec![crate::bindings::mtx::plugin::tool_bus::EngineError {
            code: "SBOX_POLICY_DENIED".into(),
            message: "landlock unavailable".into(),
        }];
        let b = bus(vec![Ok(res)], &[]);
        let r =
            validate(&b, &input(vec![spec("true", Expectation::ExitZero, None, true)]), &Settings::default());
        assert_eq!(
            r.spec_results[0].error.as_deref(),
            Some("denied by engine.shell: SBOX_POLICY_DENIED: landlock unavailable")
        );
    }

    #[test]
    fn zero_tests_is_a_blocking_finding() {
        let out = "running 0 tests\ntest result: ok. 0 passed; 0 failed; 5 filtered out\n";
        let b = bus(vec![ran(0, false, "o")], &[("o", out)]);
        let r = validate(
            &b,
            &input(vec![spec("cargo test nomatch", Expectation::ExitZero, None, true)]),
            &Settings::default(),
        );
        assert!(r.spec_results[0].passed);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].rule, "zero-tests");
        assert!(r.findings[0].blocking);
        assert!(!r.passed);
        let off = Settings { zero_tests_check: false, ..Settings::default() };
        let b = bus(vec![ran(0, false, "o")], &[("o", out)]);
        assert!(
            validate(&b, &input(vec![spec("cargo test nomatch", Expectation::ExitZero, None, true)]), &off)
                .passed
        );
    }

    #[test]
    fn settings_parse_and_bad_config_is_refused() {
        let cfg = |k: &str| match k {
            "in_scope_paths" => Some(r#"["src","tests"]"#.to_string()),
            "zero_tests_blocking" => Some("false".to_string()),
            _ => None,
        };
        let s = Settings::from_config(cfg).unwrap();
        assert_eq!(s.in_scope_paths, Some(vec!["src".into(), "tests".into()]));
        assert!(!s.zero_tests_blocking && s.zero_tests_check);
        let bad = |k: &str| (k == "zero_tests_check").then(|| "yes".to_string());
        assert!(matches!(Settings::from_config(bad), Err(PluginError::BadConfig(_))));
        let bad = |k: &str| (k == "zero_tests_patterns").then(|| "nope".to_string());
        assert!(matches!(Settings::from_config(bad), Err(PluginError::BadConfig(_))));
    }
}
