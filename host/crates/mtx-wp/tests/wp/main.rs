//! Integration tests of mtx-wp: real packets, grammar quirks, refusals, native packets,
//! MT-VAL rules and waves. Tests read fixtures from tests/fixtures (copied into temp
//! dirs where the folder layout matters) and never touch anything outside the crate.

mod mtval;
mod native;
mod quirks;
mod real_packets;
mod refusals;
mod scope_props;
mod support;
mod waves;
