//! Builders shared by the unit tests of this crate.

use crate::types::{
    DoneCriterion, DoneVerification, FileAccessSpec, MicroTaskDefinition, RiskLevel, VerificationSpec,
};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// An MT with the given file lists, one `cargo check` verify spec and two done criteria
/// (one automated, one evidence_required).
pub fn mt_with_files(read: &[&str], modify: &[&str], create: &[&str]) -> MicroTaskDefinition {
    MicroTaskDefinition {
        mt_id: "MT-001".into(),
        name: "Add the parser".into(),
        scope: "Implement parse_config in src/a.rs".into(),
        files: FileAccessSpec { read: strings(read), modify: strings(modify), create: strings(create) },
        actions: strings(&["Write parse_config", "Add a unit test"]),
        verify: vec![VerificationSpec::exit_0("cargo check")],
        done: vec![
            DoneCriterion {
                description: "crate compiles".into(),
                verification: DoneVerification::Automated,
                verify_ref: Some(0),
            },
            DoneCriterion {
                description: "parse_config returns the parsed value".into(),
                verification: DoneVerification::EvidenceRequired,
                verify_ref: None,
            },
        ],
        depends_on: Vec::new(),
        token_budget: 2048,
        execution_tier: None,
        allowed_tools: Some(Vec::new()),
        retry_budget: Some(3),
        escalation_target: None,
        expected_output: None,
        task_tags: Vec::new(),
        risk_level: RiskLevel::Low,
        notes: None,
        extra: Default::default(),
    }
}
