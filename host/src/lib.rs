//! mtx host library
