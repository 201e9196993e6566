//! `validator-integrity`: the anti-gaming checks a test run alone cannot make
//! (MTX-SPEC 6.4 item 5, 10.14, 12.3 scenario 1), as a `validator` component.
//!
//! The checks live in [`checks`] over plain inputs plus the [`checks::Bus`] trait, so they
//! are tested natively with a fake bus; this file only reads the configuration and
//! forwards the tool-bus imports. It must never run a command: it only reads the files
//! the MT changed, through `engine.fs` / `read_files`.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "validator", path: "../../wit" });
}

mod checks;
mod markers;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::config;
use bindings::mtx::plugin::tool_bus::{self, EngineResult, PlannedOperation, ToolError};
use bindings::mtx::plugin::types::*;

struct Validator;

/// The real Tool Bus: the host's `tool-bus` imports.
struct HostBus;

impl checks::Bus for HostBus {
    fn submit(&self, op: &PlannedOperation) -> Result<EngineResult, ToolError> {
        tool_bus::submit(op)
    }

    fn read_artifact(&self, handle: &ArtifactHandle, max_bytes: u64) -> Result<Vec<u8>, ToolError> {
        tool_bus::read_artifact(handle, max_bytes)
    }
}

impl PluginGuest for Validator {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "validator-integrity".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "flags placeholders in changed lines, protected-file edits, evidence off the change, \
                          and changes outside scope"
                    .into(),
        }
    }
}

impl Guest for Validator {
    fn validate(input: ValidationInput) -> Result<ValidatorReport, PluginError> {
        let settings = checks::Settings::from_config(config::get)?;
        Ok(checks::validate(&HostBus, &input, &settings))
    }
}

bindings::export!(Validator with_types_in bindings);
