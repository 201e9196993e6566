//! Detects a test command whose output shows that no test ran (an anti-gaming check:
//! an `exit 0` from a filter that matches nothing proves nothing).
//!
//! Only output of known test runners is judged; output that says nothing about tests is
//! never reported. It must never flag a run where at least one test ran.

/// Output lines that on their own mean "no test ran".
const NO_TESTS: &[&str] = &[
    "no tests ran",
    "collected 0 items",
    "no tests to run",
    "no test files",
    "no tests found",
    "tests: 0 total",
];

/// Why the output shows zero tests, or `None` when it does not.
pub fn zero_tests(stdout: &str, extra_patterns: &[String]) -> Option<String> {
    let lower = stdout.to_ascii_lowercase();
    // cargo/libtest prints `running N tests` once per test binary (doc-tests included, often
    // with 0); zero tests means every binary ran none.
    let mut binaries = 0usize;
    let mut total = 0u64;
    for line in lower.lines().map(str::trim) {
        if let Some(n) =
            line.strip_prefix("running ").and_then(|r| r.strip_suffix(" tests").or(r.strip_suffix(" test")))
            && let Ok(n) = n.trim().parse::<u64>()
        {
            binaries += 1;
            total += n;
        }
    }
    if binaries > 0 {
        return (total == 0).then(|| format!("{binaries} test binaries reported `running 0 tests`"));
    }
    if let Some(p) = NO_TESTS.iter().find(|p| lower.contains(*p)) {
        return Some(format!("the output says `{p}`"));
    }
    if let Some(p) = extra_patterns.iter().find(|p| !p.is_empty() && stdout.contains(p.as_str())) {
        return Some(format!("the output contains the configured pattern `{p}`"));
    }
    // pytest/jest summaries: `0 passed` with no other count anywhere.
    let counts = summary_counts(&lower);
    if !counts.is_empty() && counts.iter().all(|(n, _)| *n == 0) && counts.iter().any(|(_, w)| *w == "passed")
    {
        return Some("the test summary counts 0 passed and nothing else".into());
    }
    None
}

/// `(n, word)` for every `<n> passed|failed|skipped|errors?` in the output.
fn summary_counts(lower: &str) -> Vec<(u64, &str)> {
    let words: Vec<&str> = lower.split(|c: char| c.is_whitespace() || c == ',' || c == ';').collect();
    let mut out = Vec::new();
    for pair in words.windows(2) {
        let word = pair[1].trim_matches(|c: char| !c.is_ascii_alphabetic());
        if matches!(word, "passed" | "failed" | "skipped" | "error" | "errors" | "xfailed" | "xpassed")
            && let Ok(n) = pair[0].parse::<u64>()
        {
            out.push((n, word));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_with_a_filter_matching_nothing() {
        let out = "running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 12 filtered out\n\n   Doc-tests x\n\nrunning 0 tests\n";
        assert!(zero_tests(out, &[]).is_some());
    }

    #[test]
    fn cargo_with_tests_in_one_binary_is_fine() {
        let out =
            "running 3 tests\ntest a ... ok\n\ntest result: ok. 3 passed; 0 failed\n\nrunning 0 tests\n";
        assert_eq!(zero_tests(out, &[]), None);
        assert_eq!(zero_tests("running 1 test\ntest a ... ok\n", &[]), None);
    }

    #[test]
    fn pytest_and_friends() {
        assert!(zero_tests("collected 0 items\n\n==== no tests ran in 0.01s ====\n", &[]).is_some());
        assert!(zero_tests("ok  \tpkg\t0.01s [no tests to run]\n", &[]).is_some());
        assert!(zero_tests("=== 0 passed in 0.01s ===\n", &[]).is_some());
        assert_eq!(zero_tests("=== 0 passed, 2 failed in 0.01s ===\n", &[]), None);
        assert_eq!(zero_tests("=== 4 passed in 0.01s ===\n", &[]), None);
    }

    #[test]
    fn unrelated_output_is_not_judged() {
        assert_eq!(zero_tests("Finished dev profile\n", &[]), None);
        assert_eq!(zero_tests("", &[]), None);
    }

    #[test]
    fn configured_patterns_count() {
        assert!(zero_tests("Ran 0 checks\n", &["Ran 0 checks".into()]).is_some());
    }
}
