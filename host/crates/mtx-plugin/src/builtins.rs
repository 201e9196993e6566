//! The default plugins embedded in the `mtx` binary by host/build.rs.

mod generated {
    include!(concat!(env!("OUT_DIR"), "/builtins.rs"));
}

/// Component bytes of a built-in plugin.
pub fn get(name: &str) -> Option<&'static [u8]> {
    generated::BUILTINS.iter().find(|(n, _)| *n == name).map(|(_, bytes)| *bytes)
}

/// Names of every built-in plugin, sorted.
pub fn names() -> Vec<&'static str> {
    generated::BUILTINS.iter().map(|(n, _)| *n).collect()
}

/// Test fixture components built next to the host (empty in release builds).
#[doc(hidden)]
pub mod fixtures {
    include!(concat!(env!("OUT_DIR"), "/fixtures.rs"));

    /// Path of a fixture component by crate name.
    pub fn path(name: &str) -> Option<&'static str> {
        FIXTURES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }
}
