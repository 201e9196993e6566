//! The console in a real browser: headless Chromium (Debian's `chromium` package) driven
//! over the DevTools protocol opens the console on a constructed state directory, checks
//! the job list, opens the gated job, finds the escalation and the FR-EVT-MT-015 event,
//! clicks "Continue" and checks the executor was asked to record the decision and resume.
//! Screenshots are saved under `$CARGO_TARGET_TMPDIR/mtx-console-browser/`.
//!
//! The test fails (it does not skip) when Chromium is missing: CI installs it.

mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{CONSENT, DONE, FakeActions, GATED, fixture, start};
use tungstenite::{Message, WebSocket};

/// Installs Debian's Chromium when the test runs as root on a machine with apt, so that
/// `cargo test` on a fresh machine needs no manual step. One install at a time: the
/// browser tests run in parallel.
fn install_chromium() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        if !root || !std::path::Path::new("/usr/bin/apt-get").exists() {
            return;
        }
        let quiet = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
        };
        let _ = quiet(&["update", "-qq"]);
        let _ = quiet(&["install", "-y", "-qq", "chromium"]);
    });
}

/// How long any one step may take before the test reports what the page showed.
const STEP_LIMIT: Duration = Duration::from_secs(60);

fn chromium_binary() -> PathBuf {
    let path =
        std::env::var_os("MTX_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.is_file() && std::env::var_os("MTX_CHROMIUM").is_none() {
        install_chromium();
    }
    assert!(
        path.is_file(),
        "Chromium is not installed at {} (set MTX_CHROMIUM to another binary): install Debian's \
         chromium package with `apt-get install -y chromium`, as .ci/run does",
        path.display()
    );
    path
}

/// A headless Chromium started for one test, killed when dropped.
struct Chromium {
    child: Child,
    ws_url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch() -> Chromium {
    let profile = tempfile::tempdir().unwrap();
    // The flags of a root sandbox on a closed network: no sandbox, no GPU, and none of
    // Chromium's own network traffic (which this machine refuses).
    let mut child = Command::new(chromium_binary())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            "--window-size=1280,900",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    let ws_url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    break url.trim().to_owned();
                }
                seen.push(line);
            }
            _ => panic!("chromium exited before its DevTools endpoint was up:\n{}", seen.join("\n")),
        }
    };
    // Keep draining stderr so Chromium never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines.by_ref() {});
    Chromium { child, ws_url, _profile: profile }
}

/// A DevTools protocol connection to one target.
struct Cdp {
    ws: WebSocket<TcpStream>,
    next_id: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").expect("a ws:// DevTools url");
        let host = rest.split('/').next().unwrap();
        let stream = TcpStream::connect(host).unwrap();
        stream.set_read_timeout(Some(STEP_LIMIT)).unwrap();
        let (ws, _) = tungstenite::client(url, stream).expect("DevTools websocket handshake");
        Cdp { ws, next_id: 1 }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({ "id": id, "method": method, "params": params });
        self.ws.send(Message::text(msg.to_string())).unwrap();
        loop {
            let reply = match self.ws.read().unwrap() {
                Message::Text(t) => serde_json::from_str::<Value>(t.as_str()).unwrap(),
                _ => continue,
            };
            if reply["id"] == id {
                assert!(reply["error"].is_null(), "{method} failed: {}", reply["error"]);
                return reply["result"].clone();
            }
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression} threw: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// Waits until `condition` (a JS expression) is true; on timeout, fails with the page text.
    fn wait_for(&mut self, what: &str, condition: &str) {
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            if self.eval(&format!("Boolean({condition})")) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let text = self.eval("document.body.innerText");
        panic!("the page never showed {what} ({condition}); it shows:\n{}", text.as_str().unwrap_or(""));
    }

    fn screenshot(&mut self, path: &Path) {
        // The whole page, not only the 1280x900 viewport.
        let size = self.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].clone();
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG image");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64 data") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mtx-console-browser")
}

#[test]
fn an_operator_inspects_a_gated_job_and_continues_it_in_chromium() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let chromium = launch();

    let mut browser = Cdp::connect(&chromium.ws_url);
    let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
    let target_id = target["targetId"].as_str().unwrap();
    let port = chromium.ws_url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let mut page = Cdp::connect(&format!("ws://{port}/devtools/page/{target_id}"));
    page.call("Page.enable", json!({}));
    page.call("Page.navigate", json!({ "url": format!("http://{}/#/jobs", console.addr) }));

    // Job History: the three jobs, with the gated one waiting at its gate.
    page.wait_for("the three jobs", "document.querySelectorAll('tr.job-row').length === 3");
    let list = page.eval("document.querySelector('#jobs').innerText");
    let list = list.as_str().unwrap();
    for id in [GATED, DONE, CONSENT] {
        assert!(list.contains(id), "{id} listed:\n{list}");
    }
    assert!(list.contains("gate: iteration_limit"), "{list}");
    assert!(list.contains("cloud consent"), "{list}");
    page.screenshot(&shots_dir().join("job-history.png"));

    // The gated job: its MT timeline coloured by level and outcome, the escalation, the
    // distillation candidate and the gate.
    page.eval(&format!("document.querySelector('tr.job-row[data-job=\"{GATED}\"] a').click()"));
    page.wait_for("the job page", "document.querySelector('#gate-continue')");
    page.wait_for("the MT timeline", "document.querySelectorAll('#timeline .iter').length === 4");
    assert_eq!(
        page.eval(
            "Array.from(document.querySelectorAll('#mt-MT-001 .iter')).map(b => b.className).join(' | ')"
        ),
        json!("iter lv-0 o-RETRY | iter lv-0 o-ESCALATE | iter lv-1 o-SUCCESS")
    );
    // One iteration's evidence: the prompt in the artifact viewer, with its sha256.
    page.eval("document.querySelector('#mt-MT-001 a.iter-link').click()");
    page.wait_for("the step files", "document.querySelector('#step-files')");
    page.eval(
        "Array.from(document.querySelectorAll('#step-files a')).find(a => a.innerText === 'prompt.txt').click()",
    );
    page.wait_for("the prompt", "document.querySelector('#artifact-text')");
    let prompt = page.eval("document.querySelector('#artifact-text').innerText");
    assert!(prompt.as_str().unwrap().contains("Implement parse_version"), "{prompt}");
    let sha = page.eval("document.querySelector('#artifact-sha').innerText");
    assert!(sha.as_str().unwrap().contains(&fx.prompt.sha256), "{sha}");
    page.eval(&format!("location.hash = '#/job/{GATED}'"));
    page.wait_for("the job page again", "document.querySelector('#escalations')");

    let escalation = page.eval("document.querySelector('#escalations').innerText");
    assert!(escalation.as_str().unwrap().contains("L0 qwen2.5-coder:7b"), "{escalation}");
    assert!(escalation.as_str().unwrap().contains("L1 qwen2.5-coder:14b"), "{escalation}");
    assert!(escalation.as_str().unwrap().contains("two consecutive failures"), "{escalation}");
    let problems = page.eval("document.querySelector('#problems').innerText");
    assert!(problems.as_str().unwrap().contains("gate deny"), "{problems}");
    let candidates = page.eval("document.querySelector('#candidates').innerText");
    assert!(candidates.as_str().unwrap().contains("rust, parsing"), "{candidates}");
    assert_eq!(page.eval("document.querySelector('#gate-reason').innerText"), json!("iteration_limit"));

    // The event stream, filtered to the distillation event.
    page.eval(&format!("location.hash = '#/job/{GATED}/events'"));
    page.wait_for("the FR-EVT-MT-015 row", "document.querySelector('tr.event[data-type=\"FR-EVT-MT-015\"]')");
    page.eval("document.querySelector('#filter-type').value = 'FR-EVT-MT-015'; document.querySelector('#filter-type').dispatchEvent(new Event('change'))");
    page.wait_for("only the FR-EVT-MT-015 row", "document.querySelectorAll('tr.event').length === 1 && document.querySelector('tr.event[data-type=\"FR-EVT-MT-015\"]')");

    // The ledger with its verified chain.
    page.eval(&format!("location.hash = '#/job/{GATED}/ledger'"));
    page.wait_for("the verified chain", "document.querySelector('#chain-status.ok')");

    // Continue the gated job.
    page.eval(&format!("location.hash = '#/job/{GATED}'"));
    page.wait_for("the Continue button", "document.querySelector('#gate-continue')");
    page.screenshot(&shots_dir().join("gated-job.png"));
    page.eval("document.querySelector('#gate-note').value = 'continue from the browser'");
    page.eval("document.querySelector('#gate-continue').click()");
    page.wait_for("the recorded decision", "document.querySelector('#gate-none')");
    assert_eq!(
        actions.calls(),
        [format!("gate {GATED} continue continue from the browser"), format!("resume {GATED}")]
    );
    let decisions = page.eval("document.querySelector('#decisions').innerText");
    assert!(decisions.as_str().unwrap().contains("continue"), "{decisions}");
    let shot = shots_dir().join("job-after-continue.png");
    page.screenshot(&shot);
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000, "a real screenshot");
}

#[test]
fn a_console_with_a_token_works_from_the_url_the_cli_prints() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), Some("tok/+ 1"), actions.clone());
    let chromium = launch();
    let mut browser = Cdp::connect(&chromium.ws_url);
    let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
    let port = chromium.ws_url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let mut page =
        Cdp::connect(&format!("ws://{port}/devtools/page/{}", target["targetId"].as_str().unwrap()));
    page.call("Page.enable", json!({}));

    // Without the token the console answers nothing.
    page.call("Page.navigate", json!({ "url": format!("http://{}/", console.addr) }));
    page.wait_for("the refusal", "document.body && document.body.innerText.includes('needs its token')");

    // With it (percent-encoded in the URL), the page, its API calls and its live stream work.
    page.call(
        "Page.navigate",
        json!({ "url": format!("http://{}/?token=tok%2F%2B%201#/job/{GATED}", console.addr) }),
    );
    page.wait_for("the job page", "document.querySelector('#gate-continue')");
    page.wait_for("the live stream", "document.querySelector('#live').innerText === 'live'");
    page.eval("document.querySelector('#gate-continue').click()");
    page.wait_for("the recorded decision", "document.querySelector('#gate-none')");
    assert_eq!(actions.calls(), [format!("gate {GATED} continue -"), format!("resume {GATED}")]);
}
