//! Support for the `default_plugins` suite: real packets as planner input, a Tool Bus over a
//! temp workspace behind the validator port, and a loopback chat-completions server.
//!
//! Everything stays inside temp dirs and `127.0.0.1`; nothing here reads the network,
//! `$HOME`, or files outside the crate's fixtures and the test's own temp dirs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mtx::executor::convert;
use mtx::executor::toolport::ValidatorPort;
use mtx::plugin::ToolBusPort;
use mtx::plugin::bindings::types;
use mtx::store::ArtifactStore;
use mtx::toolbus::plugin::{PluginCallContext, PluginToolBus};
use mtx::toolbus::{CapabilityProfile, RecordingObserver, ToolBus, ToolBusConfig};
use mtx::wp::WorkPacket;
use tempfile::TempDir;

/// The real Work Packets copied into `tests/fixtures/packets` (see its SOURCE.md).
pub fn real_packets() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/packets");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().contains(".packet.")))
        .collect();
    paths.sort();
    paths
}

/// The planner input the executor would build for `wp` over a workspace holding exactly
/// its in-scope paths, each with a synthetic size.
pub fn planner_input_for(wp: &WorkPacket, context_window: u32) -> types::PlannerInput {
    let workspace_files = wp
        .in_scope_paths
        .iter()
        .enumerate()
        .map(|(i, path)| types::WorkspaceFile { path: path.clone(), size_bytes: 800 + 400 * i as u64 })
        .collect();
    types::PlannerInput { packet: convert::work_packet(wp), workspace_files, context_window }
}

/// Tools the validator tests' job profile may run.
pub const TOOLS: &[&str] = &["true", "false", "echo"];

/// A Tool Bus over a temp workspace, with the job's verify commands and a profile that
/// allows [`TOOLS`] and workspace reads.
pub struct BusFixture {
    pub ws: TempDir,
    _state: TempDir,
    pub bus: Arc<ToolBus>,
    pub observer: Arc<RecordingObserver>,
    profile: CapabilityProfile,
}

impl BusFixture {
    pub fn new(verify_commands: &[&str]) -> Self {
        let ws = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut grants: Vec<String> = TOOLS.iter().map(|t| format!("proc.exec:{t}")).collect();
        grants.push("fs.read".into());
        let profile = CapabilityProfile { id: "coder".into(), grants, consents: Vec::new() };
        let mut config = ToolBusConfig::new(ws.path(), profile.clone());
        config.verify_commands = verify_commands.iter().map(|c| (*c).to_owned()).collect();
        config.path = Some("/usr/local/bin:/usr/bin:/bin".into());
        let observer = Arc::new(RecordingObserver::default());
        let store = ArtifactStore::open(state.path()).unwrap();
        let bus = Arc::new(ToolBus::new(config, store, observer.clone()).unwrap());
        BusFixture { ws, _state: state, bus, observer, profile }
    }

    /// Writes `content` to the workspace file `rel`.
    pub fn write(&self, rel: &str, content: &str) {
        let path = self.ws.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }

    /// The port a validator call of `plugin` uses, acting within the job's profile as the
    /// executor's validators do.
    pub fn port(&self, plugin: &str) -> Arc<dyn ToolBusPort> {
        Arc::new(ValidatorPort {
            bus: Arc::new(PluginToolBus::new(
                self.bus.clone(),
                PluginCallContext {
                    plugin_name: plugin.into(),
                    grants: self.profile.clone(),
                    job_id: "job-1".into(),
                    mt_id: Some("MT-001".into()),
                    trace_id: "trace-1".into(),
                },
            )),
            evidence: Arc::default(),
        })
    }
}

/// How the loopback chat-completions server answers its one request.
pub struct Reply {
    pub status: &'static str,
    pub body: String,
    /// Time the server waits before it answers.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: String) -> Self {
        Reply { status: "200 OK", body, delay: Duration::ZERO }
    }

    pub fn status(status: &'static str, body: &str) -> Self {
        Reply { status, body: body.to_owned(), delay: Duration::ZERO }
    }
}

/// A chat-completions reply body with `content` and the given token usage.
pub fn completion_body(content: &str, prompt_tokens: u64, completion_tokens: u64) -> String {
    serde_json::json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    })
    .to_string()
}

/// What the loopback server received: the request head and body.
pub struct Received {
    pub head: String,
    pub body: String,
}

/// A loopback HTTP server that speaks just enough of the chat-completions protocol to
/// answer one request with a scripted [`Reply`].
pub struct ChatServer {
    pub addr: SocketAddr,
    handle: JoinHandle<Received>,
}

impl ChatServer {
    pub fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let received = read_request(&mut stream);
            std::thread::sleep(reply.delay);
            let response = format!(
                "HTTP/1.1 {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                reply.status,
                reply.body.len(),
                reply.body
            );
            // After a timeout the client is gone; a failed write is the expected outcome then.
            let _ = stream.write_all(response.as_bytes());
            received
        });
        ChatServer { addr, handle }
    }

    /// The `base_url` of the server's OpenAI-compatible API.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.addr.port())
    }

    /// The request the server received.
    pub fn received(self) -> Received {
        self.handle.join().expect("the loopback chat server finished")
    }
}

fn read_request(stream: &mut TcpStream) -> Received {
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed the connection before the request head ended");
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let header = |wanted: &str| {
        head.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case(wanted).then(|| value.trim().to_ascii_lowercase())
        })
    };
    let mut rest = data.split_off(head_end);
    let mut fill = |rest: &mut Vec<u8>| {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the client closed the connection before the request body ended");
        rest.extend_from_slice(&buf[..n]);
    };
    let body = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !rest.windows(5).any(|w| w == b"0\r\n\r\n") {
            fill(&mut rest);
        }
        dechunk(&rest)
    } else {
        let length = header("content-length").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
        while rest.len() < length {
            fill(&mut rest);
        }
        rest.truncate(length);
        rest
    };
    Received { head, body: String::from_utf8_lossy(&body).into_owned() }
}

/// The payload of a complete chunked body.
fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size =
            usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).expect("a hex chunk size");
        if size == 0 {
            return body;
        }
        let start = line_end + 2;
        body.extend_from_slice(&data[start..start + size]);
        data = &data[start + size + 2..];
    }
}
