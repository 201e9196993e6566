//! mtx integration tests
