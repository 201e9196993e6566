//! `backend-replay`: a `model-backend` that plays recorded responses from a cassette,
//! for reproducible runs, examples and tests without a model server.
//!
//! The cassette is JSON text in the config key `cassette` (the host reads the file the run
//! config names), parsed on every call because each call gets a fresh instance. The lookup
//! lives in [`cassette`]; it must never invent a response: a missing entry is an error.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "model-backend", path: "../../wit", additional_derives: [PartialEq] });
}

mod cassette;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::config;
use bindings::mtx::plugin::types::*;

use cassette::Cassette;

struct Backend;

fn load() -> Result<Cassette, ModelError> {
    let text = config::get("cassette").ok_or_else(|| {
        ModelError::Fatal("backend-replay needs the config key `cassette` (the cassette's JSON text)".into())
    })?;
    Cassette::parse(&text)
}

impl PluginGuest for Backend {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "backend-replay".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "plays recorded model responses from a cassette (mtx.cassette@1)".into(),
        }
    }
}

impl Guest for Backend {
    fn describe_model(model_id: String) -> Result<ModelProfile, ModelError> {
        load()?.describe(&model_id)
    }

    /// Nothing to load: the cassette is the model. Only checks the target is known.
    fn prepare_model(_current: Option<String>, target: String, _strategy: String) -> Result<(), ModelError> {
        load()?.describe(&target).map(|_| ())
    }

    fn complete(request: ModelRequest) -> Result<ModelResponse, ModelError> {
        load()?.complete(&request)
    }
}

bindings::export!(Backend with_types_in bindings);
