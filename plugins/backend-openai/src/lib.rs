//! `backend-openai`: a `model-backend` for OpenAI-compatible chat-completions servers
//! (Ollama, vLLM, LoRAX, llama.cpp server) over WASI HTTP.
//!
//! Request building ([`request`]), response and error mapping ([`response`], [`http`]) and
//! configuration ([`settings`]) are plain modules tested natively; this file wires them to
//! the exports and the log import. It reaches only the hosts the run config grants.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "model-backend", path: "../../wit" });
}

mod http;
mod request;
mod response;
mod settings;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::log::{self, Field, Level};
use bindings::mtx::plugin::{config, types::*};

use settings::Settings;

struct Backend;

fn settings() -> Result<Settings, ModelError> {
    Settings::from_config(config::get)
}

/// The API key from the environment variable the config names; the run config must grant
/// `env:<NAME>` for the host to expose it.
fn api_key(settings: &Settings) -> Result<Option<String>, ModelError> {
    let Some(name) = settings.api_key_env.as_deref() else { return Ok(None) };
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(ModelError::Fatal(format!(
            "api_key_env names {name}, but it is not set for the plugin (the run config must grant env:{name})"
        ))),
    }
}

impl PluginGuest for Backend {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "backend-openai".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "OpenAI-compatible chat-completions client (Ollama, vLLM, LoRAX, llama.cpp) over WASI HTTP"
                    .into(),
        }
    }
}

impl Guest for Backend {
    fn describe_model(model_id: String) -> Result<ModelProfile, ModelError> {
        settings()?.describe(&model_id)
    }

    /// A no-op: the supported servers load a model (and adapter) on demand at the first
    /// request naming it. Only checks that the target model is configured.
    fn prepare_model(_current: Option<String>, target: String, _strategy: String) -> Result<(), ModelError> {
        settings()?.describe(&target).map(|_| ())
    }

    fn complete(request: ModelRequest) -> Result<ModelResponse, ModelError> {
        let settings = settings()?;
        let key = api_key(&settings)?;
        let call = request::build(&settings, &request, key.as_deref())?;
        let (status, body) = http::send(&call)?;
        let parsed = response::map(status, &body, request.prompt.len())?;
        if parsed.usage_estimated {
            log::log(
                Level::Warn,
                "the server returned no token usage; estimated as bytes/4",
                &[
                    Field { key: "model".into(), value: request.model_id.clone() },
                    Field {
                        key: "prompt_tokens".into(),
                        value: parsed.response.usage.prompt_tokens.to_string(),
                    },
                    Field {
                        key: "completion_tokens".into(),
                        value: parsed.response.usage.completion_tokens.to_string(),
                    },
                ],
            );
        }
        Ok(parsed.response)
    }
}

bindings::export!(Backend with_types_in bindings);
