//! The one wasmtime `Engine` of a process: pooling allocator, epoch interruption driven by
//! a ticker thread, and an on-disk cache of compiled components.
//!
//! Invariant: the host never runs guest code without an epoch deadline (set per call in
//! `host.rs`) and a memory limiter.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Granularity of CPU deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Hard ceiling on any plugin's linear memory; per-plugin limits sit below it.
pub const MAX_PLUGIN_MEMORY: usize = 1 << 30;

/// Instances that may be alive at once (a call holds one for its duration).
const POOL_INSTANCES: u32 = 64;

/// Builds the engine: pooling when the machine can reserve the address space for it,
/// on-demand allocation otherwise (some CI sandboxes limit virtual memory).
pub fn build_engine() -> anyhow::Result<(Engine, bool)> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 8)
        .total_memories(POOL_INSTANCES * 2)
        .total_tables(POOL_INSTANCES * 8)
        .max_memories_per_component(4)
        .max_core_instances_per_component(16)
        .max_memory_size(MAX_PLUGIN_MEMORY);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => {
            spawn_epoch_ticker(&engine);
            Ok((engine, true))
        }
        Err(pooling_error) => {
            tracing::warn!(
                "pooling allocator unavailable ({pooling_error:#}); using on-demand instance allocation"
            );
            let engine = Engine::new(&base_config())?;
            spawn_epoch_ticker(&engine);
            Ok((engine, false))
        }
    }
}

fn base_config() -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true).memory_init_cow(true).wasm_component_model(true);
    config
}

/// Advances the engine's epoch on a dedicated OS thread, so a guest spinning inside an
/// async executor still sees time pass. The thread holds only a weak handle and ends
/// when the engine is dropped.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("mtx-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch ticker thread");
}

/// Epoch ticks for a deadline (at least one).
pub fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// Compiles `wasm`, reusing a compiled artifact from `cache_dir` when one exists for the
/// same bytes and engine settings. The cache directory must be private to this user:
/// a compiled artifact is trusted code.
pub fn compile_cached(
    engine: &Engine,
    wasm: &[u8],
    digest: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let Some(dir) = cache_dir else { return Component::new(engine, wasm) };
    let path = cache_path(engine, digest, dir);
    if path.exists() {
        // SAFETY: the file was written by this host (write to temp + rename) into a
        // directory only this user can write; a file from another wasmtime version or
        // configuration is rejected by `deserialize_file` without being run.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => return Ok(component),
            Err(e) => {
                tracing::debug!("stale compiled component {} ({e:#}); recompiling", path.display());
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let bytes = engine.precompile_component(wasm)?;
    if let Err(e) = store_compiled(&path, &bytes) {
        tracing::warn!("could not cache compiled component at {}: {e}", path.display());
    }
    // SAFETY: `bytes` was produced just now by `precompile_component` on this engine.
    unsafe { Component::deserialize(engine, &bytes) }
}

fn cache_path(engine: &Engine, digest: &str, dir: &Path) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    dir.join(format!("{digest}-{:016x}.cwasm", hasher.finish()))
}

fn store_compiled(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
