/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "validator", path: "../../wit" });
}

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Validator;

impl PluginGuest for Validator {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "validator-command".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "validator".into(),
        }
    }
}

impl Guest for Validator {
    fn validate(input: ValidationInput) -> Result<ValidatorReport, PluginError> {
        let _ = input;
        Err(PluginError::Unsupported("validator-command is not implemented yet".into()))
    }
}

bindings::export!(Validator with_types_in bindings);
