//! Headless Chromium (Debian's `chromium` package) driven over the DevTools protocol, for
//! the console's browser tests. One copy, used by mtx-console's `tests/browser.rs` (a
//! constructed state directory) and by the `mtx` package's `tests/console_browser.rs`
//! (state directories of real example runs), which includes this file with `#[path]`.
//!
//! A missing Chromium fails the test, it never skips it: as root on a machine with apt
//! the browser is installed on first use; elsewhere the failure says how to install it.

#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket};

/// How long any one step may take before the test reports what the page showed.
pub const STEP_LIMIT: Duration = Duration::from_secs(60);

/// The eight bytes every PNG file starts with.
pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// Installs Debian's Chromium when the test runs as root on a machine with apt, so that
/// `cargo test` on a fresh machine needs no manual step. One install at a time: the tests
/// of one binary share the `Once`, and apt waits for the dpkg lock another test binary
/// (or another `cargo test`) holds instead of failing on it.
fn install_chromium() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let root = Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false);
        if !root || !Path::new("/usr/bin/apt-get").exists() {
            return;
        }
        let quiet = |args: &[&str]| {
            Command::new("apt-get")
                .args(["-o", "DPkg::Lock::Timeout=600"])
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

fn chromium_binary() -> PathBuf {
    let chosen = std::env::var_os("MTX_CHROMIUM");
    let path = chosen.clone().map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    if !path.is_file() && chosen.is_none() {
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
pub struct Chromium {
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

impl Chromium {
    pub fn launch() -> Chromium {
        let profile = tempfile::tempdir().unwrap();
        // The flags of a root sandbox on a closed network: no sandbox, no GPU, and none of
        // Chromium's own network traffic (which such a machine refuses).
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

    /// A new tab on `about:blank`, connected, with page events enabled.
    pub fn new_page(&self) -> Cdp {
        let mut browser = Cdp::connect(&self.ws_url);
        let target = browser.call("Target.createTarget", json!({ "url": "about:blank" }));
        let target_id = target["targetId"].as_str().expect("a target id");
        let host = self.ws_url.trim_start_matches("ws://").split('/').next().unwrap();
        let mut page = Cdp::connect(&format!("ws://{host}/devtools/page/{target_id}"));
        page.call("Page.enable", json!({}));
        page
    }
}

/// A DevTools protocol connection to one target.
pub struct Cdp {
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

    pub fn call(&mut self, method: &str, params: Value) -> Value {
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

    pub fn navigate(&mut self, url: &str) {
        self.call("Page.navigate", json!({ "url": url }));
    }

    /// The value of a JS expression (promises awaited); fails the test if it throws.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression} threw: {}", r["exceptionDetails"]);
        r["result"]["value"].clone()
    }

    /// The `innerText` of the first element matching a CSS selector; fails if there is none.
    pub fn text(&mut self, selector: &str) -> String {
        let sel = serde_json::to_string(selector).unwrap();
        let v = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); return e ? e.innerText : null; }})()"
        ));
        match v.as_str() {
            Some(s) => s.to_owned(),
            None => panic!("no element matches {selector}; the page shows:\n{}", self.page_text()),
        }
    }

    /// Clicks the first element matching a CSS selector; fails if there is none.
    pub fn click(&mut self, selector: &str) {
        let sel = serde_json::to_string(selector).unwrap();
        let clicked = self.eval(&format!(
            "(() => {{ const e = document.querySelector({sel}); if (!e) return false; e.click(); return true; }})()"
        ));
        assert_eq!(
            clicked,
            json!(true),
            "nothing to click at {selector}; the page shows:\n{}",
            self.page_text()
        );
    }

    fn page_text(&mut self) -> String {
        self.eval("document.body ? document.body.innerText : ''").as_str().unwrap_or("").to_owned()
    }

    /// Waits until `condition` (a JS expression) is true; on timeout, fails with the page text.
    pub fn wait_for(&mut self, what: &str, condition: &str) {
        let deadline = Instant::now() + STEP_LIMIT;
        while Instant::now() < deadline {
            if self.eval(&format!("Boolean({condition})")) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the page never showed {what} ({condition}); it shows:\n{}", self.page_text());
    }

    /// Saves a PNG of the whole page (not only the 1280x900 viewport) at `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let size = self.call("Page.getLayoutMetrics", json!({}))["cssContentSize"].clone();
        let clip = json!({ "x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1 });
        let shot = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "clip": clip, "captureBeyondViewport": true }),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        assert!(png.starts_with(PNG_SIGNATURE), "a PNG image");
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
