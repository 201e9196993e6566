//! Support for the mtx integration tests: temp workspaces, scripted runs, assertions.

pub mod default_plugins;
pub mod plugins;
