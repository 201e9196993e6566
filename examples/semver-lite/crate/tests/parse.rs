use semver_lite::{Identifier, ParseError, Version};

fn v(s: &str) -> Version {
    s.parse().unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn err(s: &str) -> ParseError {
    match s.parse::<Version>() {
        Ok(v) => panic!("{s:?} should not parse, got {v:?}"),
        Err(e) => e,
    }
}

fn alpha(s: &str) -> Identifier {
    Identifier::AlphaNumeric(s.to_string())
}

#[test]
fn parse_core_only() {
    let x = v("10.20.30");
    assert_eq!((x.major, x.minor, x.patch), (10, 20, 30));
    assert!(x.pre.is_empty() && x.build.is_empty());
}

#[test]
fn parse_pre_release_and_build() {
    let x = v("1.0.0-alpha.1+build.5");
    assert_eq!(x.pre, vec![alpha("alpha"), Identifier::Numeric(1)]);
    assert_eq!(x.build, vec!["build".to_string(), "5".to_string()]);
    assert_eq!(
        v("1.0.0-0.3.7").pre,
        vec![Identifier::Numeric(0), Identifier::Numeric(3), Identifier::Numeric(7)]
    );
}

#[test]
fn parse_hyphens_belong_to_identifiers() {
    assert_eq!(v("1.0.0-x-y-z.--").pre, vec![alpha("x-y-z"), alpha("--")]);
    let x = v("1.0.0+build-7.exp-sha.5114f85");
    assert!(x.pre.is_empty(), "a hyphen after + is build metadata, not a pre-release");
    assert_eq!(x.build, vec!["build-7", "exp-sha", "5114f85"]);
    assert_eq!(v("1.0.0-rc-1+build-1").pre, vec![alpha("rc-1")]);
}

#[test]
fn parse_rejects_leading_zeros() {
    assert_eq!(err("01.2.3"), ParseError::LeadingZero("01".into()));
    assert_eq!(err("1.2.3-alpha.01"), ParseError::LeadingZero("01".into()));
    assert_eq!(v("1.2.3-0a").pre, vec![alpha("0a")], "0a is alphanumeric, so the zero is fine");
    assert_eq!(v("1.2.3+001").build, vec!["001"], "build identifiers may have leading zeros");
}

#[test]
fn parse_rejects_bad_identifiers() {
    assert_eq!(err("1.2"), ParseError::BadCore("1.2".into()));
    assert_eq!(err("1.2.3-"), ParseError::BadIdentifier("".into()));
    assert_eq!(err("1.2.3-alpha..1"), ParseError::BadIdentifier("".into()));
    assert_eq!(err("1.2.3+"), ParseError::BadIdentifier("".into()));
    assert_eq!(err("1.2.3-al$pha"), ParseError::BadIdentifier("al$pha".into()));
}

#[test]
fn parse_display_round_trips() {
    for s in ["0.0.0", "1.0.0-alpha.1", "1.0.0-x-y-z.--+b.1", "2.3.4+001"] {
        assert_eq!(v(s).to_string(), s);
    }
}
