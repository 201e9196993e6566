use semver_lite::Version;

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn assert_ascending(chain: &[&str]) {
    for pair in chain.windows(2) {
        assert!(v(pair[0]) < v(pair[1]), "{} < {} expected", pair[0], pair[1]);
        assert!(v(pair[1]) > v(pair[0]), "{} > {} expected", pair[1], pair[0]);
    }
}

#[test]
fn precedence_of_the_core() {
    assert_ascending(&["1.0.0", "2.0.0", "2.1.0", "2.1.1", "10.0.0"]);
}

#[test]
fn precedence_pre_release_before_release() {
    assert_ascending(&["1.0.0-alpha", "1.0.0"]);
    assert_ascending(&["1.0.0-rc.1", "1.0.0", "1.0.1-0"]);
}

#[test]
fn precedence_of_the_semver_spec_example() {
    assert_ascending(&[
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]);
}

#[test]
fn precedence_numeric_identifiers_compare_as_numbers_and_sort_first() {
    assert_ascending(&["1.0.0-alpha.2", "1.0.0-alpha.10"]);
    assert_ascending(&["1.0.0-2", "1.0.0-10", "1.0.0-a"]);
    assert_ascending(&["1.0.0-rc.1", "1.0.0-rc.1.1"]);
}

#[test]
fn precedence_ignores_build_metadata() {
    assert_eq!(v("1.0.0+a"), v("1.0.0+b"));
    assert_eq!(v("1.0.0-rc.1+linux"), v("1.0.0-rc.1"));
    assert_ne!(v("1.0.0-rc.1"), v("1.0.0"));
}
