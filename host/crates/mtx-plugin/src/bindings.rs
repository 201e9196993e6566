//! Every `bindgen!` of the plugin contract lives here; the rest of the host uses the
//! re-exported names.
//!
//! The host-provided interfaces (`types`, `log`, `config`, `tool-bus`) are generated
//! once from the never-instantiated `host-interfaces` world and mapped into each plugin
//! world with `with:`, so each host trait is implemented exactly once.

pub mod host {
    wasmtime::component::bindgen!({
        path: "../../../wit",
        world: "mtx:plugin/host-interfaces",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
    });
}

macro_rules! plugin_world {
    ($module:ident, $world:literal) => {
        plugin_world!($module, $world, {});
    };
    ($module:ident, $world:literal, { $($extra:tt)* }) => {
        pub mod $module {
            wasmtime::component::bindgen!({
                path: "../../../wit",
                world: $world,
                with: {
                    "mtx:plugin/types": crate::bindings::host::mtx::plugin::types,
                    "mtx:plugin/log": crate::bindings::host::mtx::plugin::log,
                    "mtx:plugin/config": crate::bindings::host::mtx::plugin::config,
                    $($extra)*
                },
            });
        }
    };
}

plugin_world!(planner, "mtx:plugin/mt-planner");
plugin_world!(backend, "mtx:plugin/model-backend");
plugin_world!(selector, "mtx:plugin/lora-selector");
plugin_world!(policy, "mtx:plugin/escalation-policy");
plugin_world!(validator, "mtx:plugin/validator", {
    "mtx:plugin/tool-bus": crate::bindings::host::mtx::plugin::tool_bus,
});

pub use host::mtx::plugin::config as config_iface;
pub use host::mtx::plugin::log as log_iface;
pub use host::mtx::plugin::tool_bus;
pub use host::mtx::plugin::types;
