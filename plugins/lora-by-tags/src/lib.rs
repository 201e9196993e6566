/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "lora-selector", path: "../../wit" });
}

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Selector;

impl PluginGuest for Selector {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "lora-by-tags".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "picks a LoRA by task-tag match".into(),
        }
    }
}

impl Guest for Selector {
    fn select(input: LoraSelectionInput) -> Result<LoraSelection, PluginError> {
        let _ = input;
        Ok(LoraSelection {
            lora_id: None,
            scores: Vec::new(),
            rationale: "scoring not implemented yet: no LoRA".into(),
        })
    }
}

bindings::export!(Selector with_types_in bindings);
