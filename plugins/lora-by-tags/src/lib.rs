//! `lora-by-tags`: picks the LoRA for an escalation level by the task-tag score of
//! MTX-SPEC 5.11, as a `lora-selector` component.
//!
//! The scoring and choice live in [`select`] as a pure function of the input; this file
//! only adapts it to the export. It must never read a clock: recency is judged against
//! the `now` the host recorded for the call.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "lora-selector", path: "../../wit" });
}

use mtx_guest_time as rfc3339;
mod select;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Selector;

impl PluginGuest for Selector {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "lora-by-tags".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "picks the LoRA whose training best matches the MT's task tags (MTX-SPEC 5.11)"
                .into(),
        }
    }
}

impl Guest for Selector {
    fn select(input: LoraSelectionInput) -> Result<LoraSelection, PluginError> {
        select::select(&input)
    }
}

bindings::export!(Selector with_types_in bindings);
