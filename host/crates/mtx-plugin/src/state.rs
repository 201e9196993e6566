//! The data of one plugin call's `Store`: a WASI context built from grants alone, the
//! HTTP allow-list, the memory limiter, and the host side of the `log`, `config` and
//! `tool-bus` interfaces.
//!
//! A fresh `HostState` is built for every call and dropped after it, so nothing a plugin
//! does survives into the next call.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::bindings::{config_iface, log_iface, tool_bus, types};
use crate::recorder::{GrantUse, PluginLog, PluginRecorder};

/// Most log lines one call may record; later lines are counted, not kept.
pub const MAX_LOG_LINES: usize = 256;
/// Longest log message kept, in bytes.
pub const MAX_LOG_BYTES: usize = 4096;

/// A memory growth past the plugin's limit, surfaced as a typed error.
#[derive(Debug, thiserror::Error)]
#[error("plugin tried to grow linear memory to {desired} bytes (limit {limit})")]
pub struct MemoryLimitExceeded {
    pub desired: usize,
    pub limit: usize,
}

/// Caps linear memory per call; tables and instance counts get fixed, generous bounds.
pub struct MemoryLimiter {
    pub max_memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            return Err(MemoryLimitExceeded { desired, limit: self.max_memory_bytes }.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        32
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        8
    }
}

/// The host side of the WIT `tool-bus` interface. The Tool Bus implements it; a call
/// without a Tool Bus (every world but `validator`) gets [`NoToolBus`].
pub trait ToolBusPort: Send + Sync {
    fn submit(
        &self,
        plugin: &str,
        op: tool_bus::PlannedOperation,
    ) -> Result<tool_bus::EngineResult, tool_bus::ToolError>;
    fn read_artifact(
        &self,
        plugin: &str,
        handle: &types::ArtifactHandle,
        max_bytes: u64,
    ) -> Result<Vec<u8>, tool_bus::ToolError>;
}

/// Refuses every operation: the default for calls that were given no Tool Bus.
pub struct NoToolBus;

impl ToolBusPort for NoToolBus {
    fn submit(
        &self,
        _plugin: &str,
        _op: tool_bus::PlannedOperation,
    ) -> Result<tool_bus::EngineResult, tool_bus::ToolError> {
        Err(tool_bus::ToolError::Denied(tool_bus::GateDenial {
            gate: "G-CAP".into(),
            code: "NO_TOOL_BUS".into(),
            reason: "this call was given no Tool Bus".into(),
        }))
    }
    fn read_artifact(
        &self,
        _plugin: &str,
        handle: &types::ArtifactHandle,
        _max_bytes: u64,
    ) -> Result<Vec<u8>, tool_bus::ToolError> {
        Err(tool_bus::ToolError::NoSuchArtifact(handle.path.clone()))
    }
}

/// Who is calling, for the records the host writes during the call.
#[derive(Clone)]
pub struct CallIdentity {
    pub plugin: Arc<str>,
    pub digest: Arc<str>,
    pub recorder: Arc<dyn PluginRecorder>,
}

pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) http: WasiHttpCtx,
    pub(crate) hooks: AllowListHooks,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    pub(crate) toolbus: Arc<dyn ToolBusPort>,
    pub(crate) identity: CallIdentity,
    pub(crate) logs_kept: usize,
    pub(crate) logs_dropped: u64,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.hooks }
    }
}

impl types::Host for HostState {}

impl log_iface::Host for HostState {
    fn log(&mut self, level: log_iface::Level, message: String, fields: Vec<log_iface::Field>) {
        if self.logs_kept >= MAX_LOG_LINES {
            self.logs_dropped += 1;
            return;
        }
        self.logs_kept += 1;
        let level = match level {
            log_iface::Level::Trace => "trace",
            log_iface::Level::Debug => "debug",
            log_iface::Level::Info => "info",
            log_iface::Level::Warn => "warn",
            log_iface::Level::Error => "error",
        };
        let record = PluginLog {
            plugin: self.identity.plugin.to_string(),
            level: level.to_owned(),
            message: truncate(message, MAX_LOG_BYTES),
            fields: fields
                .into_iter()
                .take(32)
                .map(|f| (truncate(f.key, 128), truncate(f.value, MAX_LOG_BYTES)))
                .collect(),
        };
        tracing::debug!(target: "mtx::plugin", plugin = %record.plugin, level, message = %record.message);
        self.identity.recorder.plugin_log(&record);
    }
}

impl config_iface::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
    fn entries(&mut self) -> Vec<(String, String)> {
        self.config.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl tool_bus::Host for HostState {
    fn submit(
        &mut self,
        op: tool_bus::PlannedOperation,
    ) -> Result<tool_bus::EngineResult, tool_bus::ToolError> {
        self.toolbus.submit(&self.identity.plugin, op)
    }
    fn read_artifact(
        &mut self,
        handle: types::ArtifactHandle,
        max_bytes: u64,
    ) -> Result<Vec<u8>, tool_bus::ToolError> {
        self.toolbus.read_artifact(&self.identity.plugin, &handle, max_bytes)
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// An allowed HTTP destination from a `net.http` grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAllow {
    pub host: String,
    pub port: Option<u16>,
}

/// Outgoing HTTP policy of one call: requests go out only to granted hosts, and never
/// outlive the call's deadline. The check runs before any connection is made.
pub struct AllowListHooks {
    pub(crate) allowed: Vec<HttpAllow>,
    pub(crate) identity: CallIdentity,
    pub(crate) deadline: Instant,
}

impl AllowListHooks {
    /// Whether `uri` is covered by a grant; returns the grant text used, or why not.
    pub fn check(&self, uri: &http::Uri) -> Result<String, String> {
        let Some(host) = uri.host() else { return Err("the request has no host".into()) };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        if self.allowed.is_empty() {
            return Err("the plugin has no net.http grant".into());
        }
        for allow in &self.allowed {
            if allow.host == host && allow.port.is_none_or(|p| p == port) {
                return Ok(match allow.port {
                    Some(p) => format!("net.http:{}:{p}", allow.host),
                    None => format!("net.http:{}", allow.host),
                });
            }
        }
        Err(format!("no net.http grant covers {host}:{port}"))
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture = Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl WasiHttpHooks for AllowListHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        drop(fut);
        let target = format!("{} {}", request.method(), request.uri());
        let verdict = self.check(request.uri());
        let (capability, allowed, detail) = match &verdict {
            Ok(grant) => (grant.clone(), true, target.clone()),
            Err(reason) => ("net.http".to_owned(), false, format!("{target}: {reason}")),
        };
        self.identity.recorder.grant_use(&GrantUse {
            plugin: self.identity.plugin.to_string(),
            digest: self.identity.digest.to_string(),
            capability,
            detail,
            allowed,
        });
        if !allowed {
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        }
        // Requests never outlive the call: every timeout is capped by what is left of it.
        let left = self.deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
        let cap = |t: Option<Duration>| Some(t.map_or(left, |t| t.min(left)));
        let options = RequestOptions {
            connect_timeout: cap(options.and_then(|o| o.connect_timeout)),
            first_byte_timeout: cap(options.and_then(|o| o.first_byte_timeout)),
            between_bytes_timeout: cap(options.and_then(|o| o.between_bytes_timeout)),
        };
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, Some(options)).await?;
            Ok((response.map(BodyExt::boxed_unsync), Box::new(io) as IoFuture))
        })
    }
}
