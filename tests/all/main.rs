//! mtx integration tests: one binary, one module per suite.

mod default_plugins;
mod plugins;
