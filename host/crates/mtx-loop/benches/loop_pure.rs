//! Benchmarks of the loop's pure steps (MTX-SPEC 13.5: context compilation < 500 ms
//! baseline, 2000 ms maximum; iteration overhead < 100 ms). Run with
//! `cargo bench -p mtx-loop`.
//!
//! Every figure is printed next to its ratio to a baseline measured in the same run:
//! SHA-256 over the same workspace bytes, the least work any compilation must do (every
//! source is hashed into the snapshot). Workspace: 10 read + 5 modify files of 40 to
//! 4,000 lines in memory, token budget 8192, so some files fit whole and some are cut to
//! chunks.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mtx_loop::{
    CompileInput, EditRules, LoopStatus, MemReader, compile_context, parse_completion, parse_edits,
    resolve_edits, verify_evidence,
};
use mtx_types::context::RetrievalConfig;
use mtx_types::{
    DeterminismMode, DoneCriterion, DoneVerification, FileAccessSpec, MicroTaskDefinition, RiskLevel,
    VerificationSpec, sha256_hex,
};

struct Stats {
    p50: Duration,
    p99: Duration,
}

fn sample(n: usize, mut f: impl FnMut()) -> Stats {
    let mut out: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    out.sort();
    let at = |q: f64| out[((out.len() as f64 - 1.0) * q).round() as usize];
    Stats { p50: at(0.50), p99: at(0.99) }
}

fn report(name: &str, s: &Stats, base: &Stats) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<36} p50 {:>8.3} ms ({:>7.2}x baseline)   p99 {:>8.3} ms ({:>7.2}x baseline)",
        ms(s.p50),
        s.p50.as_secs_f64() / base.p50.as_secs_f64(),
        ms(s.p99),
        s.p99.as_secs_f64() / base.p99.as_secs_f64()
    );
}

fn source_file(lines: usize, seed: usize) -> String {
    (1..=lines)
        .map(|i| match (i + seed) % 97 {
            0 => format!("pub fn parse_config_{i}(input: &str) -> Result<Config, Error> {{"),
            1 => "    merge the nested values with explicit lifetimes".to_string(),
            _ => format!("    let value_{i} = compute({i}, \"filler text for line {i}\");"),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn main() {
    let sizes = [40, 80, 120, 200, 300, 400, 600, 800, 1000, 1500, 2000, 2500, 3000, 3500, 4000];
    let paths: Vec<String> = (0..sizes.len()).map(|i| format!("src/mod_{i:02}.rs")).collect();
    let reader =
        MemReader::new(paths.iter().zip(sizes).enumerate().map(|(i, (p, n))| (p.clone(), source_file(n, i))));
    let mt = MicroTaskDefinition {
        mt_id: "MT-003".into(),
        name: "Implement nested config merging with lifetimes".into(),
        scope: "Add a ConfigMerger trait with merge() and recursive merging of nested config values".into(),
        files: FileAccessSpec { read: paths[..10].to_vec(), modify: paths[10..].to_vec(), create: vec![] },
        actions: vec![
            "Define a ConfigMerger trait with merge()".into(),
            "Add lifetime bounds for borrowed config".into(),
            "Handle recursive merge of nested values".into(),
            "Add unit tests for parse_config".into(),
        ],
        verify: vec![VerificationSpec::exit_0("cargo check --lib")],
        done: vec![
            DoneCriterion {
                description: "ConfigMerger trait defined with merge() method".into(),
                verification: DoneVerification::EvidenceRequired,
                verify_ref: None,
            },
            DoneCriterion {
                description: "crate compiles".into(),
                verification: DoneVerification::Automated,
                verify_ref: Some(0),
            },
        ],
        depends_on: vec![],
        token_budget: 8192,
        execution_tier: None,
        allowed_tools: Some(vec![]),
        retry_budget: Some(3),
        escalation_target: None,
        expected_output: None,
        task_tags: vec!["rust".into()],
        risk_level: RiskLevel::Medium,
        notes: Some("Prefer explicit lifetime bounds over elision.".into()),
        extra: Default::default(),
    };
    let status = LoopStatus {
        iteration: 2,
        max_iterations: 4,
        level: 0,
        max_level: 6,
        model_id: "qwen2.5-coder:7b".into(),
        total_mts: 5,
        ..Default::default()
    };
    let input = CompileInput {
        mt: &mt,
        status: &status,
        previous: None,
        retrieval: RetrievalConfig::default(),
        determinism: DeterminismMode::Replay,
    };

    let all_bytes: Vec<Vec<u8>> = reader.files.values().cloned().collect();
    let baseline = sample(200, || {
        for b in &all_bytes {
            black_box(sha256_hex(b));
        }
    });
    println!(
        "baseline: sha256 over {} KiB of workspace files",
        all_bytes.iter().map(Vec::len).sum::<usize>() / 1024
    );
    report("baseline sha256 of sources", &baseline, &baseline);

    let compiled = compile_context(&input, &reader).unwrap();
    println!(
        "compiled prompt: {} tokens of {}, sources {:?}",
        compiled.prompt_tokens,
        mt.token_budget,
        compiled.snapshot.sources.iter().map(|s| s.mode).collect::<Vec<_>>()
    );
    report(
        "compile_context (15 files)",
        &sample(200, || drop(black_box(compile_context(&input, &reader)))),
        &baseline,
    );

    // A response with three whole-file blocks and a claim, as a 7b model would write it.
    let mut response = String::from("I updated the files.\n");
    for p in &paths[10..13] {
        response.push_str(&format!("<file path=\"{p}\">\n{}</file>\n", source_file(400, 3)));
    }
    response.push_str(
        "<mt_complete>\nMT_ID: MT-003\nEVIDENCE:\n- \"ConfigMerger trait defined with merge() method\" -> src/mod_10.rs:1-40\n- \"crate compiles\" -> src/mod_11.rs:2-3\n</mt_complete>\n",
    );
    let parsed = parse_edits(&response);
    let signal = parse_completion(&response, "MT-003");
    assert!(signal.claimed_complete && parsed.edits.len() == 3);
    let iteration = sample(200, || {
        let parsed = parse_edits(&response);
        let resolved = resolve_edits(&parsed, &mt, &reader, &EditRules::default()).unwrap();
        let signal = parse_completion(&response, "MT-003");
        black_box((resolved, verify_evidence(&signal, &mt, &reader)));
    });
    report("parse+resolve edits, signal, evidence", &iteration, &baseline);
}
