/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "escalation-policy", path: "../../wit" });
}

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Policy;

impl PluginGuest for Policy {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "escalation-default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "x".into(),
        }
    }
}

impl Guest for Policy {
    fn decide(input: DecisionInput) -> Result<EscalationDecision, PluginError> {
        let _ = input;
        Ok(EscalationDecision {
            decision: LoopDecision::Retry,
            failure_category: None,
            reason: "r".into(),
            recoverable_block: None,
        })
    }
    fn drop_back(input: DropBackInput) -> Result<DropBackDecision, PluginError> {
        let _ = input;
        Ok(DropBackDecision {
            action: DropBackAction::StayEscalated,
            target_level: None,
            reason: "x".into(),
            confidence: Confidence::Low,
        })
    }
}

bindings::export!(Policy with_types_in bindings);
