/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "mt-planner", path: "../../wit" });
}

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Planner;

impl PluginGuest for Planner {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "planner-default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "decomposes a work packet into micro-tasks".into(),
        }
    }
}

impl Guest for Planner {
    fn plan(input: PlannerInput) -> Result<Vec<MtDefinition>, PluginError> {
        let _ = input;
        Err(PluginError::Unsupported("planner-default is not implemented yet".into()))
    }
}

bindings::export!(Planner with_types_in bindings);
