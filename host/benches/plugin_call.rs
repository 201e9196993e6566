//! Cost of calling a small policy plugin, against a native Rust call doing the same
//! decision in the same run, and the cost of loading every built-in with an empty or a
//! populated compile cache.
//!
//! Measured, p50 and p99 of per-call wall time:
//! - `PluginHost::decide` with the host's own engine (pooling when the machine allows
//!   it): WASI context from grants, fresh store and instance, the call, canonical JSON
//!   and digests of input and output, and the record;
//! - a fresh store, instance and call alone, on the host's engine and on an engine with
//!   on-demand instance allocation built here with the same settings (the host has no
//!   switch for it);
//! - a warm call on one instance kept alive (the host always instantiates per call, so
//!   this uses the public bindings directly, for the ratio only);
//! - a native Rust trait call that makes the same decision.
//!
//! The policy is the `good-policy` fixture when `MTX_BENCH_POLICY` names its component
//! (fixtures are not built for the bench profile), else the built-in
//! `escalation-default`, whose native equivalent is not written here; the native row then
//! still shows the cost of the trivial decision. Run:
//! `cargo bench -p mtx --bench plugin_call`.
//!
//! Never a timed assertion: it prints numbers and exits 0.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mtx::plugin::bindings::{config_iface, host as host_bindings, log_iface, policy, types};
use mtx::plugin::{CallContext, HostOptions, NullRecorder, PluginHost, PluginSpec, World};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Store data for the calls made here without the host: WASI with nothing granted.
struct BenchState {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl BenchState {
    fn new() -> Self {
        BenchState { wasi: WasiCtxBuilder::new().build(), table: ResourceTable::new() }
    }
}

impl WasiView for BenchState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl types::Host for BenchState {}

impl log_iface::Host for BenchState {
    fn log(&mut self, _level: log_iface::Level, _message: String, _fields: Vec<log_iface::Field>) {}
}

impl config_iface::Host for BenchState {
    fn get(&mut self, _key: String) -> Option<String> {
        None
    }
    fn entries(&mut self) -> Vec<(String, String)> {
        Vec::new()
    }
}

fn policy_pre(engine: &Engine, bytes: &[u8]) -> policy::EscalationPolicyPre<BenchState> {
    let mut linker = Linker::<BenchState>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    host_bindings::mtx::plugin::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    log_iface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    config_iface::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    let component = Component::new(engine, bytes).unwrap();
    policy::EscalationPolicyPre::new(linker.instantiate_pre(&component).unwrap()).unwrap()
}

/// The same settings as the host's engine, with on-demand instance allocation.
fn on_demand_engine() -> Engine {
    let mut config = Config::new();
    config.epoch_interruption(true).memory_init_cow(true).wasm_component_model(true);
    Engine::new(&config).unwrap()
}

fn fresh_call(
    engine: &Engine,
    pre: &policy::EscalationPolicyPre<BenchState>,
    input: &types::DecisionInput,
) -> types::EscalationDecision {
    let mut store = Store::new(engine, BenchState::new());
    store.set_epoch_deadline(1 << 40);
    let instance = pre.instantiate(&mut store).unwrap();
    instance.call_decide(&mut store, input).unwrap().unwrap()
}

/// The decision `good-policy` makes, as a native trait object.
trait Policy {
    fn decide(&self, input: &types::DecisionInput) -> types::EscalationDecision;
}

struct NativeGoodPolicy;

impl Policy for NativeGoodPolicy {
    fn decide(&self, input: &types::DecisionInput) -> types::EscalationDecision {
        if input.validation_passed == Some(true) {
            types::EscalationDecision {
                decision: types::LoopDecision::Complete,
                failure_category: None,
                reason: "validation passed".into(),
                recoverable_block: None,
            }
        } else {
            types::EscalationDecision {
                decision: types::LoopDecision::Retry,
                failure_category: Some(types::FailureCategory::Unknown),
                reason: "validation did not pass".into(),
                recoverable_block: None,
            }
        }
    }
}

fn decision_input() -> types::DecisionInput {
    types::DecisionInput {
        mt_id: "MT-001".into(),
        task_tags: vec!["rust".into()],
        iteration: 1,
        effective_max_iterations: 3,
        level: 0,
        max_level: 4,
        claimed_complete: true,
        malformed_claim: false,
        blocked: false,
        blocked_reason: None,
        validation_ran: true,
        validation_passed: Some(true),
        evidence_verified: Some(true),
        spec_outcomes: vec![],
        scope_violations: vec![],
        missing_references: vec![],
        model_error: None,
        context_overflow: false,
        operator_skip: false,
        false_completion_streak: 0,
        failure_streak: 0,
        history: vec![],
    }
}

struct Sample {
    p50: Duration,
    p99: Duration,
    n: usize,
}

/// Times `n` runs of `f` (after `n / 10` warm-up runs); each sample covers `batch` calls.
fn measure(n: usize, batch: usize, mut f: impl FnMut()) -> Sample {
    for _ in 0..n / 10 {
        f();
    }
    let mut times: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed() / batch as u32
        })
        .collect();
    times.sort();
    Sample { p50: times[n / 2], p99: times[(n * 99 / 100).min(n - 1)], n }
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{ns} ns")
    } else if ns < 10_000_000 {
        format!("{:.1} us", ns as f64 / 1e3)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn row(name: &str, s: &Sample, baseline: &Sample) {
    println!(
        "| {name} | {} | {} | {} | {:.0}x |",
        fmt(s.p50),
        fmt(s.p99),
        s.n,
        s.p50.as_secs_f64() / baseline.p50.as_secs_f64()
    );
}

fn main() {
    let (name, bytes, native_matches) = match std::env::var_os("MTX_BENCH_POLICY") {
        Some(path) => {
            let path = PathBuf::from(path);
            let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path.display().to_string(), bytes, true)
        }
        None => (
            "builtin:escalation-default".to_owned(),
            mtx::plugin::builtins::get("escalation-default").expect("built-in policy").to_vec(),
            false,
        ),
    };
    let input = decision_input();
    let host = PluginHost::new(HostOptions::default(), Arc::new(NullRecorder)).unwrap();
    let spec = PluginSpec::file("bench-policy.wasm", "escalation_policy", World::EscalationPolicy);
    let plugin = host.load_bytes(&spec, &bytes).unwrap();
    let expected = host.decide(&plugin, &input, &CallContext::default()).unwrap();

    let native: &dyn Policy = &NativeGoodPolicy;
    let native_s = measure(2000, 1000, || {
        black_box(native.decide(black_box(&input)));
    });
    if native_matches {
        assert_eq!(native.decide(&input), expected, "the native policy makes the plugin's decision");
    }

    let ctx = CallContext::default();
    let host_s = measure(2000, 1, || {
        black_box(host.decide(&plugin, black_box(&input), &ctx).unwrap());
    });

    let pooled_pre = policy_pre(host.engine(), &bytes);
    let pooled_s = measure(2000, 1, || {
        black_box(fresh_call(host.engine(), &pooled_pre, black_box(&input)));
    });

    let on_demand = on_demand_engine();
    let on_demand_pre = policy_pre(&on_demand, &bytes);
    let on_demand_s = measure(2000, 1, || {
        black_box(fresh_call(&on_demand, &on_demand_pre, black_box(&input)));
    });

    let mut store = Store::new(host.engine(), BenchState::new());
    store.set_epoch_deadline(1 << 40);
    let warm = pooled_pre.instantiate(&mut store).unwrap();
    let warm_s = measure(5000, 10, || {
        black_box(warm.call_decide(&mut store, black_box(&input)).unwrap().unwrap());
    });

    println!("policy: {name}; host engine pooling: {}", host.pooling());
    if !native_matches {
        println!("(native row is good-policy's decision, not escalation-default's: set MTX_BENCH_POLICY)");
    }
    println!("| Call | p50 | p99 | samples | p50 / native |");
    println!("|---|---|---|---|---|");
    row("native Rust trait call (same decision)", &native_s, &native_s);
    row("warm call on one live instance", &warm_s, &native_s);
    row("fresh store + instance + call, host engine (pooling)", &pooled_s, &native_s);
    row("fresh store + instance + call, on-demand engine", &on_demand_s, &native_s);
    row("`PluginHost::decide` (fresh instance, grants, digests, record)", &host_s, &native_s);
    println!(
        "pooling vs on-demand fresh call: {:.2}x; PluginHost::decide vs warm call: {:.0}x",
        on_demand_s.p50.as_secs_f64() / pooled_s.p50.as_secs_f64(),
        host_s.p50.as_secs_f64() / warm_s.p50.as_secs_f64()
    );

    bench_cache();
}

/// `PluginHost::new` + `load` of every built-in: empty cache dir vs populated one.
fn bench_cache() {
    let names = mtx::plugin::builtins::names();
    let root = tempfile::tempdir().unwrap();
    let load_all = |cache: PathBuf| {
        let host = PluginHost::new(HostOptions { cache_dir: Some(cache) }, Arc::new(NullRecorder)).unwrap();
        for name in &names {
            let world = match name.split_once('-').map(|(role, _)| role) {
                Some("planner") => World::MtPlanner,
                Some("backend") => World::ModelBackend,
                Some("lora") => World::LoraSelector,
                Some("escalation") => World::EscalationPolicy,
                Some("validator") => World::Validator,
                _ => panic!("built-in {name} has no known role prefix"),
            };
            host.load(&PluginSpec::builtin(name, "bench", world)).unwrap();
        }
    };
    let mut cold = Vec::new();
    for i in 0..3 {
        let dir = root.path().join(format!("cold-{i}"));
        let start = Instant::now();
        load_all(dir);
        cold.push(start.elapsed());
    }
    let warm_dir = root.path().join("cold-0");
    let mut warm = Vec::new();
    for _ in 0..10 {
        let start = Instant::now();
        load_all(warm_dir.clone());
        warm.push(start.elapsed());
    }
    cold.sort();
    warm.sort();
    println!();
    println!("load of all {} built-ins ({}), PluginHost::new included:", names.len(), names.join(", "));
    println!("| Compile cache | p50 | max | samples |");
    println!("|---|---|---|---|");
    println!(
        "| empty (cold) | {} | {} | {} |",
        fmt(cold[cold.len() / 2]),
        fmt(cold[cold.len() - 1]),
        cold.len()
    );
    println!(
        "| populated (warm) | {} | {} | {} |",
        fmt(warm[warm.len() / 2]),
        fmt(warm[warm.len() - 1]),
        warm.len()
    );
    println!("cold / warm: {:.1}x", cold[cold.len() / 2].as_secs_f64() / warm[warm.len() / 2].as_secs_f64());
}
