//! The operator console of mtx (MTX-SPEC 15.3, AC-5): a local web UI and JSON API over a
//! state directory, for looking at a run instead of reading it.
//!
//! Pages (one embedded single-page app, no build step, no CDN): Job History with filters;
//! a job page with the MT waves, each MT's iterations as a timeline coloured by escalation
//! level and outcome, escalation records, distillation candidates and the hard-gate state;
//! the Flight Recorder stream with filters; the run ledger with its hash-chain status; an
//! artifact viewer. Gate and consent actions go through [`OperatorActions`], which the CLI
//! implements with the executor, so the console records exactly what `mtx gate` and
//! `mtx consent` record.
//!
//! Code map: [`views`] reads the state directory into JSON (9.9: the progress artifact,
//! the ledger and the FR, never a cache); `api` holds the HTTP handlers and the live
//! stream; `guard` the token, host and cross-site checks every request passes; `assets`
//! the embedded page.
//!
//! Invariant: the console never writes a record into the state directory itself; every
//! change is an [`OperatorActions`] call. (Opening the Job History index lets SQLite keep
//! its WAL files next to it; the console never creates the index.) It never spawns a process and never links the plugin
//! runtime (no dependency on mtx-plugin or mtx-executor).
//! Invariant: a console bound to a non-loopback address refuses to start without a token,
//! and then answers no request that lacks it.

mod api;
mod assets;
mod guard;
pub mod views;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use views::ViewError;

/// The user id the console passes to [`OperatorActions`]: the console knows no more of
/// the person at the browser than that they reached it (loopback, or with the token).
/// An implementation may record its own user id instead, as `mtx gate` does.
pub const CONSOLE_USER_ID: &str = "operator-console";

/// The decisions the console cannot make itself: recorded by the executor, exactly as the
/// CLI records them. Calls are made from a blocking thread, never from the async runtime.
pub trait OperatorActions: Send + Sync + 'static {
    /// Records a gate decision exactly as `mtx gate` does (ledger row + FR-EVT-MTX-002),
    /// returns the decision JSON.
    fn gate(
        &self,
        job_id: &str,
        decision: &str,
        note: Option<&str>,
        user_id: &str,
    ) -> Result<serde_json::Value, String>;
    /// Records a consent receipt exactly as `mtx consent` does, returns the receipt JSON.
    fn consent(
        &self,
        job_id: &str,
        approve: bool,
        note: Option<&str>,
        user_id: &str,
    ) -> Result<serde_json::Value, String>;
    /// Continues a paused job in the background (the console's "continue" = gate
    /// continue + resume).
    fn resume(&self, job_id: &str) -> Result<(), String>;
    /// Asks a running job to `skip` its active MT or to `cancel`, exactly as `mtx skip` /
    /// `mtx cancel` do; returns the request JSON.
    fn request(
        &self,
        job_id: &str,
        kind: &str,
        note: Option<&str>,
        user_id: &str,
    ) -> Result<serde_json::Value, String> {
        let _ = (job_id, note, user_id);
        Err(format!("this console does not accept `{kind}` requests to running jobs"))
    }
}

/// Where the console reads and listens.
#[derive(Clone)]
pub struct ConsoleConfig {
    pub state_dir: PathBuf,
    pub addr: SocketAddr,
    /// Required when `addr` is not loopback; then every request must carry it, as
    /// `Authorization: Bearer <token>` or `?token=<token>`.
    pub token: Option<String>,
}

impl std::fmt::Debug for ConsoleConfig {
    // The token is a secret: a logged config must not reveal it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleConfig")
            .field("state_dir", &self.state_dir)
            .field("addr", &self.addr)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("the console refuses to listen on non-loopback address {0} without a token")]
    TokenRequired(SocketAddr),
    #[error("the console token is empty")]
    EmptyToken,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Checks the address/token rule of the console.
fn check_config(config: &ConsoleConfig) -> Result<(), ConsoleError> {
    match config.token.as_deref() {
        Some("") => Err(ConsoleError::EmptyToken),
        None if !config.addr.ip().is_loopback() => Err(ConsoleError::TokenRequired(config.addr)),
        _ => Ok(()),
    }
}

/// The console's routes over `config.state_dir`, with every guard applied (for tests and
/// for embedding). Does not check the address rule; [`serve`] does.
pub fn router(config: ConsoleConfig, actions: Arc<dyn OperatorActions>) -> axum::Router {
    api::router(api::AppState::new(config, actions))
}

/// Listens on `config.addr` and serves until the task is dropped or the listener fails.
/// `ready` receives the bound address (useful with port 0) once the console accepts
/// connections.
pub async fn serve(
    config: ConsoleConfig,
    actions: Arc<dyn OperatorActions>,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    check_config(&config)?;
    let addr = config.addr;
    let listener =
        tokio::net::TcpListener::bind(addr).await.map_err(|source| ConsoleError::Bind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| ConsoleError::Bind { addr, source })?;
    tracing::info!(target: "mtx::console", %bound, state_dir = %config.state_dir.display(), "console listening");
    let app = router(config, actions);
    if let Some(tx) = ready {
        // The receiver may have gone away; the console still serves.
        let _ = tx.send(bound);
    }
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(addr: &str, token: Option<&str>) -> ConsoleConfig {
        ConsoleConfig {
            state_dir: PathBuf::from("/nonexistent"),
            addr: addr.parse().unwrap(),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn the_token_never_appears_in_debug_output() {
        let shown = format!("{:?}", config("0.0.0.0:1", Some("s3cr3t")));
        assert!(!shown.contains("s3cr3t") && shown.contains("[REDACTED]"), "{shown}");
    }

    #[test]
    fn a_non_loopback_address_needs_a_token() {
        assert!(check_config(&config("127.0.0.1:7878", None)).is_ok());
        assert!(check_config(&config("[::1]:7878", None)).is_ok());
        assert!(matches!(check_config(&config("0.0.0.0:7878", None)), Err(ConsoleError::TokenRequired(_))));
        assert!(matches!(
            check_config(&config("192.168.1.2:7878", None)),
            Err(ConsoleError::TokenRequired(_))
        ));
        assert!(check_config(&config("0.0.0.0:7878", Some("t0k3n"))).is_ok());
        assert!(matches!(check_config(&config("0.0.0.0:7878", Some(""))), Err(ConsoleError::EmptyToken)));
    }
}
