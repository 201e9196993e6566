/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "model-backend", path: "../../wit" });
}

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Backend;

impl PluginGuest for Backend {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "backend-replay".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "model backend".into(),
        }
    }
}

impl Guest for Backend {
    fn describe_model(model_id: String) -> Result<ModelProfile, ModelError> {
        Err(ModelError::Fatal(format!("backend-replay does not know model {model_id} yet")))
    }
    fn prepare_model(_current: Option<String>, _target: String, _strategy: String) -> Result<(), ModelError> {
        Ok(())
    }
    fn complete(request: ModelRequest) -> Result<ModelResponse, ModelError> {
        Err(ModelError::Fatal(format!("backend-replay is not implemented yet (model {})", request.model_id)))
    }
}

bindings::export!(Backend with_types_in bindings);
