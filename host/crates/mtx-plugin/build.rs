//! Builds every guest component under `plugins/` for `wasm32-wasip2` and embeds the
//! default set into the `mtx` binary as built-in plugins.
//!
//! The guests form their own cargo workspace and are built by a nested cargo with its
//! own target directory under `OUT_DIR`, so the nested build never waits on the outer
//! build's lock. Host flags (`RUSTFLAGS`, `CARGO_ENCODED_RUSTFLAGS`) are cleared because
//! they are meant for the host target, not for wasm.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

struct Guest {
    name: String,
    /// Default plugins are embedded; fixtures are only built for test profiles.
    builtin: bool,
}

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    // This crate is host/crates/mtx-plugin; the workspace root is three levels up.
    let root = manifest_dir
        .ancestors()
        .nth(3)
        .expect("host/crates/mtx-plugin sits inside the workspace root")
        .to_owned();
    // MTX_PLUGINS_DIR builds the guests from another checkout of plugins/ (next to its
    // own wit/), for working on the host against a known-good set of guests.
    // An empty value (`MTX_PLUGINS_DIR=`) counts as unset.
    let plugins = env::var_os("MTX_PLUGINS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("plugins"));
    println!("cargo:rerun-if-env-changed=MTX_PLUGINS_DIR");

    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    if let Some(parent) = plugins.parent() {
        println!("cargo:rerun-if-changed={}", parent.join("wit").display());
    }
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-env-changed=MTX_SKIP_GUEST_BUILD");

    // Fixtures (hostile and test guests) are for the test suite; a release build of the
    // CLI embeds only the default plugins and skips them to save build time.
    let with_fixtures = env::var("PROFILE").map(|p| p != "release").unwrap_or(true);
    let guests = discover(&plugins, with_fixtures);

    if env::var_os("MTX_SKIP_GUEST_BUILD").is_some() {
        // For editors and quick `cargo check` runs: no guests, empty tables.
        write_tables(&out_dir, &[], &out_dir);
        return;
    }

    ensure_target();
    let guest_target = out_dir.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&plugins)
        .args(["build", "--release", "--target", TARGET])
        .env("CARGO_TARGET_DIR", &guest_target)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET");
    for g in &guests {
        cmd.args(["--package", &g.name]);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("could not start cargo to build guest plugins: {e}"));
    if !status.success() {
        panic!(
            "building the guest plugins under {} for {TARGET} failed (see the errors above); \
             if the target is missing, install it with `rustup target add {TARGET}`",
            plugins.display()
        );
    }
    write_tables(&out_dir, &guests, &guest_target.join(TARGET).join("release"));
}

/// Default plugins are `plugins/<role>-<name>/`, fixtures are `plugins/fixtures/<name>/`.
fn discover(plugins: &Path, with_fixtures: bool) -> Vec<Guest> {
    let mut guests = Vec::new();
    let mut scan = |dir: &Path, builtin: bool| {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let dir_name = entry.file_name().to_string_lossy().into_owned();
            if builtin && !dir_name.contains('-') {
                continue;
            }
            if let Some(name) = fs::read_to_string(&manifest).ok().as_deref().and_then(package_name) {
                guests.push(Guest { name, builtin });
            }
        }
    };
    scan(plugins, true);
    if with_fixtures {
        scan(&plugins.join("fixtures"), false);
    }
    guests.sort_by(|a, b| a.name.cmp(&b.name));
    guests
}

fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest.trim_start().strip_prefix('=')?.trim();
            return Some(value.trim_matches('"').to_owned());
        }
    }
    None
}

/// Makes sure the wasm target's standard library is installed for the toolchain in use.
/// `rust-toolchain.toml` lists it, but rustup only honours that list when it installs
/// the toolchain from the file, so a pre-installed toolchain may lack it.
fn ensure_target() {
    if target_installed() {
        return;
    }
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Ok(toolchain) = env::var("RUSTUP_TOOLCHAIN") {
        cmd.args(["--toolchain", &toolchain]);
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    if !ok || !target_installed() {
        panic!(
            "the {TARGET} target is not installed for this toolchain and `rustup target add {TARGET}` failed; install it and build again"
        );
    }
}

fn target_installed() -> bool {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(out) = Command::new(rustc).args(["--print", "target-libdir", "--target", TARGET]).output() else {
        return false;
    };
    // `rustc` prints the would-be directory even when the target is absent.
    out.status.success() && Path::new(String::from_utf8_lossy(&out.stdout).trim()).exists()
}

fn write_tables(out_dir: &Path, guests: &[Guest], wasm_dir: &Path) {
    let mut builtins = String::from("/// Default plugins embedded in the binary: (name, component bytes).\n");
    builtins.push_str("pub static BUILTINS: &[(&str, &[u8])] = &[\n");
    let mut fixtures = String::from("/// Test fixture components built next to the host: (name, path).\n");
    fixtures.push_str("pub static FIXTURES: &[(&str, &str)] = &[\n");
    for g in guests {
        let wasm = wasm_dir.join(format!("{}.wasm", g.name.replace('-', "_")));
        if g.builtin {
            writeln!(builtins, "    ({:?}, include_bytes!({:?})),", g.name, wasm.display().to_string())
                .unwrap();
        } else {
            writeln!(fixtures, "    ({:?}, {:?}),", g.name, wasm.display().to_string()).unwrap();
        }
    }
    builtins.push_str("];\n");
    fixtures.push_str("];\n");
    fs::write(out_dir.join("builtins.rs"), builtins).expect("write builtins.rs");
    fs::write(out_dir.join("fixtures.rs"), fixtures).expect("write fixtures.rs");
}
