//! `escalation-default`: the loop decision of MTX-SPEC 5.6/5.7 and the smart drop-back
//! of 5.10 as an `escalation-policy` component.
//!
//! The decision logic lives in [`decide`], [`classify`] and [`drop_back`] as pure
//! functions over the record types of the WIT contract, so it is tested natively. This
//! file only adapts them to the exports; it must never read configuration or clocks
//! into a decision (the policy is a pure function of its input).

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "escalation-policy", path: "../../wit" });
}

mod classify;
mod decide;
mod drop_back;
use mtx_guest_time as rfc3339;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Policy;

impl PluginGuest for Policy {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "escalation-default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "loop decisions of MTX-SPEC 5.6/5.7 with failure categories, smart drop-back of 5.10".into(),
        }
    }
}

impl Guest for Policy {
    fn decide(input: DecisionInput) -> Result<EscalationDecision, PluginError> {
        decide::decide(&input)
    }

    fn drop_back(input: DropBackInput) -> Result<DropBackDecision, PluginError> {
        drop_back::drop_back(&input)
    }
}

bindings::export!(Policy with_types_in bindings);
