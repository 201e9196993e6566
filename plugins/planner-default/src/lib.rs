//! `planner-default`: decomposes a parsed Work Packet into MT definitions (MTX-SPEC 3.6,
//! section 4, 14.6, 14.7), as an `mt-planner` component.
//!
//! The decomposition lives in [`plan`] (with [`paths`] and [`words`]) as a pure,
//! deterministic function of the input; this file only forwards the export. It must never
//! read a clock or randomness: the same packet always gives the same MTs.

/// Generated WIT bindings, kept in one module so the rest of the crate uses plain names.
#[allow(clippy::too_many_arguments)]
mod bindings {
    wit_bindgen::generate!({ world: "mt-planner", path: "../../wit" });
}

mod paths;
mod plan;
mod words;

use bindings::Guest;
use bindings::exports::mtx::plugin::plugin::Guest as PluginGuest;
use bindings::mtx::plugin::types::*;

struct Planner;

impl PluginGuest for Planner {
    fn metadata() -> PluginMetadata {
        PluginMetadata {
            name: "planner-default".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "one MT per deliverable of the packet (hints, clause rows, implementation order, done-means)"
                    .into(),
        }
    }
}

impl Guest for Planner {
    fn plan(input: PlannerInput) -> Result<Vec<MtDefinition>, PluginError> {
        plan::plan(&input)
    }
}

bindings::export!(Planner with_types_in bindings);
