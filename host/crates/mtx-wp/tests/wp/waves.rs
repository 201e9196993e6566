//! C-WAVE-1: execution waves from the dependency DAG (MTX-SPEC 5.2 step 3).

use mtx_types::MicroTaskDefinition;
use mtx_wp::compute_waves;

use crate::support::fixture;

fn base() -> MicroTaskDefinition {
    let text = std::fs::read_to_string(fixture("mtval").join("valid.json")).unwrap();
    let defs: Vec<MicroTaskDefinition> = serde_json::from_str(&text).unwrap();
    defs[0].clone()
}

fn mt(id: &str, deps: &[&str]) -> MicroTaskDefinition {
    MicroTaskDefinition {
        mt_id: id.to_string(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..base()
    }
}

#[test]
fn c_wave_1_diamond_gives_three_sorted_waves() {
    // Given out of order on purpose: waves are sorted by mt_id, not input order.
    let defs = [
        mt("MT-004", &["MT-003", "MT-002"]),
        mt("MT-003", &["MT-001"]),
        mt("MT-002", &["MT-001"]),
        mt("MT-001", &[]),
    ];
    let waves = compute_waves(&defs).unwrap();
    assert_eq!(waves, vec![vec!["MT-001"], vec!["MT-002", "MT-003"], vec!["MT-004"]]);
}

#[test]
fn c_wave_1_a_cycle_is_an_error_naming_it() {
    let defs = [mt("MT-001", &[]), mt("MT-002", &["MT-001", "MT-003"]), mt("MT-003", &["MT-002"])];
    let err = compute_waves(&defs).unwrap_err();
    assert_eq!(err.cycle, ["MT-002", "MT-003", "MT-002"]);
    assert_eq!(err.to_string(), "MT-VAL-004 dependency cycle: MT-002 -> MT-003 -> MT-002");
}

#[test]
fn independent_mts_share_the_first_wave() {
    let defs = [mt("MT-002", &[]), mt("MT-001", &[])];
    assert_eq!(compute_waves(&defs).unwrap(), vec![vec!["MT-001", "MT-002"]]);
}
