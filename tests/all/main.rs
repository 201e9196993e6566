//! mtx integration tests: one binary, one module per suite.

mod plugins;
