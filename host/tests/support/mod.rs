//! The `mtx` binary as the tests of this package run it: a fixed user, no colour, no
//! `MTX_STATE_DIR` from the caller's environment; the examples run into a given state
//! directory; the operator console started on a loopback port.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// The operator the CLI records (`MTX_USER`), whatever the machine's `$USER` is.
pub const CLI_USER: &str = "cli-operator";

pub fn mtx_command(args: &[&str], cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mtx"));
    cmd.args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .env("MTX_USER", CLI_USER)
        .env_remove("MTX_STATE_DIR");
    cmd
}

pub fn mtx(args: &[&str], cwd: &Path) -> Output {
    mtx_command(args, cwd).output().expect("running mtx")
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Runs an example with `--json` and returns (exit code, final summary, event types).
pub fn run_example(name: &str, state: &Path) -> (i32, Value, Vec<String>) {
    let example = repo_root().join("examples").join(name);
    let out =
        mtx(&["run", example.to_str().unwrap(), "--state-dir", state.to_str().unwrap(), "--json"], state);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let summary = lines.iter().rev().find(|v| v.get("exit_code").is_some()).cloned().unwrap_or_else(|| {
        panic!("no summary line; output was:\n{}", text(&out));
    });
    let events =
        lines.iter().filter_map(|v| v.get("event_type").and_then(Value::as_str).map(str::to_owned)).collect();
    (out.status.code().unwrap_or(-1), summary, events)
}

/// `mtx <args> --state-dir <state> --json`, which must succeed, parsed.
pub fn mtx_json(args: &[&str], state: &Path) -> Value {
    let mut all = args.to_vec();
    all.extend(["--state-dir", state.to_str().unwrap(), "--json"]);
    let out = mtx(&all, state);
    assert!(out.status.success(), "mtx {all:?}: {}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("mtx {all:?} printed no JSON ({e})"))
}

/// The recorded events of a job (`mtx events --json`).
pub fn job_events(job: &str, state: &Path) -> Vec<Value> {
    match mtx_json(&["events", job], state) {
        Value::Array(events) => events,
        other => panic!("mtx events printed {other}"),
    }
}

pub fn job_event_types(job: &str, state: &Path) -> Vec<String> {
    job_events(job, state).iter().map(|e| e["event_type"].as_str().unwrap().to_owned()).collect()
}

/// `mtx console` on a loopback port the system chooses, killed when dropped.
pub struct RunningConsole {
    child: Child,
    pub port: u16,
}

impl Drop for RunningConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl RunningConsole {
    pub fn start(state: &Path) -> RunningConsole {
        let mut child =
            mtx_command(&["console", "--addr", "127.0.0.1:0", "--state-dir", state.to_str().unwrap()], state)
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting mtx console");
        // The first line names the bound address: "mtx console on http://127.0.0.1:PORT/ ...".
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        std::thread::spawn(move || for _ in lines.by_ref() {});
        let port = first
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse().ok());
        match port {
            Some(port) => RunningConsole { child, port },
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("mtx console printed no address: {first:?}")
            }
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
