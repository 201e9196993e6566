//! GateDecision (MTX-SPEC 3.18): the human's recorded answer at a gate or pause point.
//! A resume must read one; this module only describes it and never decides.

use serde::{Deserialize, Serialize};

/// `gate_reason` used for pause points.
pub const PAUSE_POINT_REASON: &str = "pause_point";

/// MTX-SPEC 3.18 GateDecision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateDecision {
    pub decision_id: String,
    pub job_id: String,
    pub wp_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mt_id: Option<String>,
    pub gate_reason: String,
    pub decision: GateChoice,
    pub actor: GateActor,
    pub decided_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GateChoice {
    Continue,
    Abort,
    Skip,
}

/// `actor` of a decision: only humans decide gates, so `kind` is always `human`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateActor {
    pub kind: ActorKind,
    pub user_id: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    #[default]
    Human,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_decision_round_trips_and_rejects_non_human_actors() {
        let v = serde_json::json!({
            "decision_id": "d", "job_id": "j", "wp_id": "WP", "gate_reason": "pause_point",
            "decision": "continue", "actor": {"kind": "human", "user_id": "u"}, "decided_at": "t"
        });
        let d: GateDecision = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(d.decision, GateChoice::Continue);
        assert_eq!(serde_json::to_value(&d).unwrap(), v);
        let mut bad = v;
        bad["actor"]["kind"] = "plugin".into();
        assert!(serde_json::from_value::<GateDecision>(bad).is_err());
    }
}
