//! Assigns a failure category (MTX-SPEC 3.9.3) to an iteration that did not succeed.
//!
//! Categories come from evidence in the decision input only: compiler diagnostics in
//! the stderr/stdout tails of failed specs, earlier passes recorded in `history`, scope
//! refusals, timeouts, context overflow and unresolved references. It must never invent
//! a category the evidence does not support: anything unexplained is `unknown`.

use std::collections::BTreeSet;

use crate::bindings::mtx::plugin::types::{DecisionInput, FailureCategory, ModelErrorKind, SpecOutcome};

/// More distinct error locations than this in one file count as "many locations".
const MANY_LOCATIONS: usize = 3;

/// Compiler diagnostics found in the output of the failed specs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diagnostics {
    /// Error headers (`error[E0425]: ...`, `error: ...`) that are real compile errors.
    pub errors: usize,
    /// Distinct `(file, line)` locations of those errors.
    pub locations: BTreeSet<(String, u32)>,
    /// Errors that say a name, method, module or import does not exist.
    pub unresolved: usize,
}

impl Diagnostics {
    fn files(&self) -> BTreeSet<&str> {
        self.locations.iter().map(|(f, _)| f.as_str()).collect()
    }
}

/// Wording of rustc/cargo and Python errors that mean "this does not exist".
const UNRESOLVED_WORDING: &[&str] = &[
    "cannot find",
    "no method named",
    "unresolved import",
    "failed to resolve",
    "no function or associated item named",
    "no field `",
    "modulenotfounderror",
    "importerror",
    "has no attribute",
    "attributeerror",
    "nameerror",
];

/// Summary lines cargo prints after the real errors; counting them would double every error.
const CARGO_SUMMARIES: &[&str] = &[
    "error: could not compile",
    "error: aborting due to",
    "error: test failed",
    "error: failed to compile",
    "error: build failed",
];

/// Collects compiler errors from rustc/cargo output (and Python tracebacks' error lines).
pub fn diagnostics(outcomes: &[SpecOutcome]) -> Diagnostics {
    let mut d = Diagnostics::default();
    for o in outcomes.iter().filter(|o| !o.passed) {
        for text in [&o.stderr_tail, &o.stdout_tail] {
            scan(text, &mut d);
        }
    }
    d
}

fn scan(text: &str, d: &mut Diagnostics) {
    // Locations belong to the most recent header; a warning header ends an error's block.
    let mut in_error = false;
    let mut python_file: Option<(String, u32)> = None;
    for raw in text.lines() {
        let line = raw.trim_start();
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("error[e") || (lower.starts_with("error:") && !is_summary(&lower)) {
            in_error = true;
            d.errors += 1;
            if is_unresolved(&lower) {
                d.unresolved += 1;
            }
        } else if lower.starts_with("warning") || lower.starts_with("error:") {
            in_error = false;
        } else if let Some(loc) = line.strip_prefix("--> ") {
            if in_error && let Some(at) = rust_location(loc) {
                d.locations.insert(at);
            }
        } else if let Some(at) = python_location(line) {
            python_file = Some(at);
        } else if let Some(kind) = python_error(line) {
            d.errors += 1;
            if is_unresolved(&kind.to_ascii_lowercase()) {
                d.unresolved += 1;
            }
            if let Some(at) = python_file.take() {
                d.locations.insert(at);
            }
        }
    }
}

fn is_summary(lower: &str) -> bool {
    CARGO_SUMMARIES.iter().any(|s| lower.starts_with(s))
}

fn is_unresolved(lower: &str) -> bool {
    UNRESOLVED_WORDING.iter().any(|w| lower.contains(w))
}

/// `src/lib.rs:12:5` -> (`src/lib.rs`, 12).
fn rust_location(loc: &str) -> Option<(String, u32)> {
    let mut parts = loc.trim().rsplitn(3, ':');
    let _col = parts.next()?;
    let line = parts.next()?.parse().ok()?;
    let file = parts.next()?;
    Some((file.to_string(), line))
}

/// `File "pkg/mod.py", line 3, in <module>` -> (`pkg/mod.py`, 3).
fn python_location(line: &str) -> Option<(String, u32)> {
    let rest = line.strip_prefix("File \"")?;
    let (file, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(", line ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    Some((file.to_string(), digits.parse().ok()?))
}

/// Python errors that are compile-like (syntax) or name resolution failures; runtime
/// failures such as `AssertionError` are test failures, not compile errors.
const PYTHON_ERRORS: &[&str] = &[
    "SyntaxError",
    "IndentationError",
    "TabError",
    "NameError",
    "ImportError",
    "ModuleNotFoundError",
    "AttributeError",
];

/// The final line of a Python traceback: `SyntaxError: ...`, `NameError: ...`.
fn python_error(line: &str) -> Option<&str> {
    let (kind, _) = line.split_once(':')?;
    PYTHON_ERRORS.contains(&kind).then_some(kind)
}

/// The category of an iteration that did not succeed, most specific evidence first.
///
/// Order, as the host's fallback classification (mtx-loop `classify_failure`) has it: a
/// scope refusal is a policy breach whatever else happened; timeouts and context overflow
/// explain missing output; unresolved names are a kind of compile error, so they come
/// before plain compile errors. One deliberate difference: compile errors are checked
/// before regressions, because a build that breaks makes every earlier-passing test fail,
/// and calling that a logic regression would keep the MT escalated (5.10 rule 3.2) for
/// what is usually a local syntax slip.
pub fn categorize(input: &DecisionInput) -> FailureCategory {
    if !input.scope_violations.is_empty() {
        return FailureCategory::ScopeViolation;
    }
    let spec_timed_out = input.spec_outcomes.iter().any(|o| o.timed_out);
    if spec_timed_out || input.model_error == Some(ModelErrorKind::Timeout) {
        return FailureCategory::TimeoutExceeded;
    }
    if input.context_overflow || input.model_error == Some(ModelErrorKind::ContextOverflow) {
        return FailureCategory::ContextOverflow;
    }
    let diags = diagnostics(&input.spec_outcomes);
    if !input.missing_references.is_empty() || diags.unresolved > 0 {
        return FailureCategory::HallucinationApi;
    }
    if diags.errors > 0 {
        let files = diags.files().len();
        let many = diags.locations.len() > MANY_LOCATIONS;
        return if files > 1 || many {
            FailureCategory::SyntaxErrorSystemic
        } else {
            FailureCategory::SyntaxErrorIsolated
        };
    }
    if regressed(input) {
        return FailureCategory::LogicErrorRegression;
    }
    // No claim, a block, or done criteria without valid evidence (3.9.3).
    let evidence_failed = input.evidence_verified == Some(false);
    if !input.claimed_complete || input.malformed_claim || input.blocked || evidence_failed {
        return FailureCategory::IncompleteImplementation;
    }
    FailureCategory::Unknown
}

/// A spec that passed in an earlier iteration of this MT fails now.
fn regressed(input: &DecisionInput) -> bool {
    let passed_before: BTreeSet<u32> =
        input.history.iter().flat_map(|h| h.passed_specs.iter().copied()).collect();
    input.spec_outcomes.iter().any(|o| !o.passed && passed_before.contains(&o.spec_index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::mtx::plugin::types::IterationSummary;
    use crate::decide::tests::{failed_spec, input};

    const ONE_ERROR: &str = "   Compiling demo v0.1.0\nerror[E0308]: mismatched types\n  --> src/lib.rs:10:5\n   |\n10 |     1u8\n   |     ^^^ expected `u32`\n\nerror: could not compile `demo` (lib) due to 1 previous error\n";

    #[test]
    fn one_compile_error_is_isolated() {
        let d = diagnostics(&[failed_spec(0, ONE_ERROR)]);
        assert_eq!(d.errors, 1);
        assert_eq!(d.locations.len(), 1);
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, ONE_ERROR)];
        assert_eq!(categorize(&i), FailureCategory::SyntaxErrorIsolated);
    }

    #[test]
    fn errors_in_two_files_are_systemic() {
        let text = "error[E0308]: mismatched types\n --> src/a.rs:1:1\nerror[E0599]: wrong\n --> src/b.rs:2:2\nerror: aborting due to 2 previous errors\n";
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, text)];
        assert_eq!(categorize(&i), FailureCategory::SyntaxErrorSystemic);
    }

    #[test]
    fn many_locations_in_one_file_are_systemic() {
        let text: String =
            (1..=4).map(|n| format!("error[E0308]: mismatched types\n --> src/a.rs:{n}:1\n")).collect();
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, &text)];
        assert_eq!(categorize(&i), FailureCategory::SyntaxErrorSystemic);
    }

    #[test]
    fn warnings_locations_do_not_count() {
        let text = "warning: unused variable\n --> src/other.rs:3:3\nerror[E0308]: mismatched types\n --> src/a.rs:1:1\n";
        let d = diagnostics(&[failed_spec(0, text)]);
        assert_eq!(d.locations.len(), 1);
    }

    #[test]
    fn unresolved_names_are_hallucinations() {
        let text = "error[E0425]: cannot find function `frobnicate` in this scope\n --> src/a.rs:1:1\n";
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, text)];
        assert_eq!(categorize(&i), FailureCategory::HallucinationApi);
        let mut j = input();
        j.claimed_complete = true;
        j.missing_references = vec!["src/nope.rs".into()];
        assert_eq!(categorize(&j), FailureCategory::HallucinationApi);
    }

    #[test]
    fn python_tracebacks_are_read() {
        let text = "Traceback (most recent call last):\n  File \"pkg/m.py\", line 3, in <module>\nModuleNotFoundError: No module named 'nope'\n";
        let d = diagnostics(&[failed_spec(0, text)]);
        assert_eq!((d.errors, d.unresolved), (1, 1));
        assert!(d.locations.contains(&("pkg/m.py".to_string(), 3)));
    }

    #[test]
    fn passing_spec_output_is_ignored() {
        let mut ok = failed_spec(0, ONE_ERROR);
        ok.passed = true;
        assert_eq!(diagnostics(&[ok]), Diagnostics::default());
    }

    #[test]
    fn an_earlier_pass_now_failing_is_a_regression() {
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(1, "test foo ... FAILED\n")];
        i.history = vec![IterationSummary {
            iteration: 1,
            level: 0,
            claimed_complete: true,
            validation_passed: Some(false),
            failure_category: None,
            blocked_reason: None,
            passed_specs: vec![1],
        }];
        assert_eq!(categorize(&i), FailureCategory::LogicErrorRegression);
    }

    #[test]
    fn scope_outranks_timeout_which_outranks_overflow() {
        let mut i = input();
        let mut spec = failed_spec(0, ONE_ERROR);
        spec.timed_out = true;
        i.spec_outcomes = vec![spec];
        i.context_overflow = true;
        assert_eq!(categorize(&i), FailureCategory::TimeoutExceeded);
        i.scope_violations = vec!["x".into()];
        assert_eq!(categorize(&i), FailureCategory::ScopeViolation);
    }

    #[test]
    fn compile_errors_outrank_regressions() {
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, ONE_ERROR)];
        i.history = vec![IterationSummary {
            iteration: 1,
            level: 0,
            claimed_complete: true,
            validation_passed: Some(true),
            failure_category: None,
            blocked_reason: None,
            passed_specs: vec![0],
        }];
        assert_eq!(categorize(&i), FailureCategory::SyntaxErrorIsolated);
    }

    #[test]
    fn scope_timeout_and_overflow_categories() {
        let mut i = input();
        i.scope_violations = vec!["/etc/passwd".into()];
        assert_eq!(categorize(&i), FailureCategory::ScopeViolation);
        let mut t = input();
        let mut spec = failed_spec(0, "");
        spec.timed_out = true;
        t.spec_outcomes = vec![spec];
        assert_eq!(categorize(&t), FailureCategory::TimeoutExceeded);
        let mut m = input();
        m.model_error = Some(ModelErrorKind::Timeout);
        assert_eq!(categorize(&m), FailureCategory::TimeoutExceeded);
        let mut c = input();
        c.context_overflow = true;
        assert_eq!(categorize(&c), FailureCategory::ContextOverflow);
    }

    #[test]
    fn no_claim_is_incomplete_and_unexplained_claim_is_unknown() {
        assert_eq!(categorize(&input()), FailureCategory::IncompleteImplementation);
        let mut i = input();
        i.claimed_complete = true;
        i.spec_outcomes = vec![failed_spec(0, "assertion failed\n")];
        assert_eq!(categorize(&i), FailureCategory::Unknown);
        i.malformed_claim = true;
        assert_eq!(categorize(&i), FailureCategory::IncompleteImplementation);
        i.malformed_claim = false;
        i.evidence_verified = Some(false);
        assert_eq!(categorize(&i), FailureCategory::IncompleteImplementation);
    }
}
