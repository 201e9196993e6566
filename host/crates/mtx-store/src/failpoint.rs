//! Named crash points for the crash tests of MTX-SPEC 13.4 ("a job runner that can kill
//! the process at chosen points").
//!
//! `failpoint("ledger.append.after")` does nothing unless the environment variable
//! `MTX_FAILPOINTS` names that point. The variable is a comma-separated list of
//! `name` or `name:N` entries; `name` (or `name:1`) kills the process on the first hit,
//! `name:N` on the N-th hit. The kill is `SIGKILL` sent to the own process, not a panic:
//! no destructor, no buffered write and no unwinding may run, exactly like `kill -9`.
//!
//! The points are compiled into normal builds on purpose. The crash tests re-execute
//! their own test binary, which links the ordinary library build, so a cargo feature
//! would have to be enabled for every build of the crate anyway; the environment
//! variable is the switch. It is read once, and when it is unset a failpoint costs one
//! initialised-once check. A production deployment never sets it.
//!
//! The points (keep this list in step with the calls):
//!
//! | name | where |
//! |---|---|
//! | `ledger.append.before` | run ledger, before the record is written |
//! | `ledger.append.torn` | run ledger, after half of the record is written and synced (leaves a torn line; with a journal, a torn journal frame) |
//! | `ledger.append.after` | run ledger, after the record is written and fsynced |
//! | `events.append.before` | Flight Recorder, before the event is written |
//! | `events.append.torn` | Flight Recorder, after half of the event is written and synced (with a journal, half of its frame) |
//! | `events.append.after` | Flight Recorder, after the event is written and fsynced |
//! | `progress.rename.before` | progress artifact, temp file synced, before the rename |
//! | `progress.rename.after` | progress artifact, after the exchange of names (its directory sync started) |
//! | `journal.synced` | job journal, synced, before the files and appends its frames hold are written |
//! | `executor.response.stored` | executor, model response stored in the step directory, before the ledger records the step |
//! | `executor.edits.applying` | executor, after the `write_files` operation returned, before its outcome is used |
//! | `executor.validation.running` | executor, after each validator plugin returned, before the validation result is recorded |
//!
//! This module must never be used to inject errors into production paths: it only kills.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Every failpoint name the store calls, for documentation checks and test drivers.
pub const FAILPOINTS: &[&str] = &[
    "ledger.append.before",
    "ledger.append.torn",
    "ledger.append.after",
    "events.append.before",
    "events.append.torn",
    "events.append.after",
    "progress.rename.before",
    "progress.rename.after",
    "journal.synced",
];

struct Armed {
    /// name -> (hit on which to kill, hits so far)
    points: Mutex<HashMap<String, (u64, AtomicU64)>>,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

fn parse(spec: &str) -> HashMap<String, (u64, AtomicU64)> {
    let mut points = HashMap::new();
    for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, nth) = match entry.rsplit_once(':') {
            Some((name, n)) => (name, n.parse::<u64>().unwrap_or(1).max(1)),
            None => (entry, 1),
        };
        points.insert(name.to_owned(), (nth, AtomicU64::new(0)));
    }
    points
}

fn armed() -> &'static Option<Armed> {
    ARMED.get_or_init(|| {
        let spec = std::env::var("MTX_FAILPOINTS").ok()?;
        let points = parse(&spec);
        if points.is_empty() {
            return None;
        }
        Some(Armed { points: Mutex::new(points) })
    })
}

/// Returns whether the named point is armed and this is the hit it waits for.
fn should_fire(name: &str) -> bool {
    let Some(armed) = armed() else { return false };
    let points = armed.points.lock().unwrap_or_else(|p| p.into_inner());
    match points.get(name) {
        Some((nth, hits)) => hits.fetch_add(1, Ordering::Relaxed) + 1 == *nth,
        None => false,
    }
}

/// Kills the current process with `SIGKILL` when `MTX_FAILPOINTS` arms `name` for this hit.
pub fn failpoint(name: &str) {
    if should_fire(name) {
        kill_self();
    }
}

/// Runs `before_kill` and then kills the process when the point fires; used where the
/// crash must leave a specific partial state behind (a torn line).
pub(crate) fn failpoint_with(name: &str, before_kill: impl FnOnce()) {
    if should_fire(name) {
        before_kill();
        kill_self();
    }
}

fn kill_self() -> ! {
    // SAFETY: getpid and kill have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    // SIGKILL cannot be caught; if delivery is somehow delayed, never continue past the point.
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_entries_parse_with_and_without_a_count() {
        let points = parse("ledger.append.after, events.append.before:3,,x:0");
        assert_eq!(points["ledger.append.after"].0, 1);
        assert_eq!(points["events.append.before"].0, 3);
        assert_eq!(points["x"].0, 1, "a zero count means the first hit");
        assert_eq!(points.len(), 3);
    }

    #[test]
    fn unarmed_points_do_nothing() {
        // The test process never sets MTX_FAILPOINTS for unit tests; reaching the next
        // line proves the point did not kill us.
        if std::env::var_os("MTX_FAILPOINTS").is_none() {
            for name in FAILPOINTS {
                failpoint(name);
            }
        }
        assert!(!FAILPOINTS.is_empty());
    }
}
