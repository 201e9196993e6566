//! The console in a real browser: headless Chromium (Debian's `chromium` package) driven
//! over the DevTools protocol opens the console on a constructed state directory, checks
//! the job list, opens the gated job, finds the escalation and the FR-EVT-MT-015 event,
//! clicks "Continue" and checks the executor was asked to record the decision and resume.
//! Screenshots are saved under `$CARGO_TARGET_TMPDIR/mtx-console-browser/`.
//!
//! The test fails (it does not skip) when Chromium is missing: CI installs it. The same
//! browser on state directories of real example runs: the `mtx` package's
//! `tests/console_browser.rs`.

mod chromium;
mod support;

use std::path::PathBuf;

use chromium::Chromium;
use serde_json::json;
use support::{CONSENT, DONE, FakeActions, GATED, fixture, start};

fn shots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mtx-console-browser")
}

#[test]
fn an_operator_inspects_a_gated_job_and_continues_it_in_chromium() {
    let fx = fixture();
    let actions = FakeActions::new(fx.state_dir());
    let console = start(fx.state_dir(), None, actions.clone());
    let chromium = Chromium::launch();
    let mut page = chromium.new_page();
    page.navigate(&format!("http://{}/#/jobs", console.addr));

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
    // Resumed, the job runs again: no gate any more, and the page offers to skip its
    // active MT or to cancel it.
    page.wait_for(
        "the running job's actions",
        "document.querySelector('#request-panel') && !document.querySelector('#gate-continue')",
    );
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
    let chromium = Chromium::launch();
    let mut page = chromium.new_page();

    // Without the token the console answers nothing.
    page.navigate(&format!("http://{}/", console.addr));
    page.wait_for("the refusal", "document.body && document.body.innerText.includes('needs its token')");

    // With it (percent-encoded in the URL), the page, its API calls and its live stream work.
    page.navigate(&format!("http://{}/?token=tok%2F%2B%201#/job/{GATED}", console.addr));
    page.wait_for("the job page", "document.querySelector('#gate-continue')");
    page.wait_for("the live stream", "document.querySelector('#live').innerText === 'live'");
    page.eval("document.querySelector('#gate-continue').click()");
    page.wait_for("the recorded decision", "document.querySelector('#request-panel')");
    assert_eq!(actions.calls(), [format!("gate {GATED} continue -"), format!("resume {GATED}")]);

    // A request to the running job goes through the same token.
    page.eval("document.querySelector('#request-note').value = 'dup'");
    page.eval("document.querySelector('#request-skip').click()");
    let wanted = format!("request {GATED} skip dup");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !actions.calls().contains(&wanted) {
        assert!(
            std::time::Instant::now() < deadline,
            "the click never reached the console: {:?}",
            actions.calls()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
