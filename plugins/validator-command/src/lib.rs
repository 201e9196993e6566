//! `validator-command`: runs an MT's verify commands through the Tool Bus and evaluates
//! their expectations (MTX-SPEC 10.11, 10.12, 11.2 item 3), as a `validator` component.
//!
//! Everything that decides lives in [`run`], [`exec_capability`] and [`zero_tests`],
//! written against the small [`run::Bus`] trait so it is tested natively with a fake bus.
//! This file only reads the configuration and forwards the two tool-bus imports. It must
//! never run anything itself: every command is a planned operation the host gates.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "validator", path: "../../wit" });
}

mod exec_capability;
mod run;
mod zero_tests;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::config;
use bindings::mtx::plugin::tool_bus::{self, EngineResult, PlannedOperation, ToolError};
use bindings::mtx::plugin::types::*;

struct Validator;

/// The real Tool Bus: the host's `tool-bus` imports.
struct HostBus;

impl run::Bus for HostBus {
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
            name: "validator-command".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "runs the MT's verify commands through the Tool Bus and checks their expectations"
                .into(),
        }
    }
}

impl Guest for Validator {
    fn validate(input: ValidationInput) -> Result<ValidatorReport, PluginError> {
        let settings = run::Settings::from_config(config::get)?;
        Ok(run::validate(&HostBus, &input, &settings))
    }
}

bindings::export!(Validator with_types_in bindings);
