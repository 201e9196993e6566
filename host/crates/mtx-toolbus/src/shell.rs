//! `engine.shell` / `exec`: runs one verify command (MTX-SPEC 10.11, 10.12) without a
//! shell by default, in its own process group, with a scrubbed environment, the workspace
//! as cwd, no stdin, rlimits from the budget and, where available, Landlock.
//!
//! Output is read concurrently from both pipes with a byte cap per stream; the rest is
//! drained and discarded so a flood costs no memory. On timeout, and again after the main
//! child exits, the whole process group is killed, so forked children never outlive the
//! operation. This is the only place in mtx that spawns a process; it must never run a program
//! the gates did not resolve.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::bus::EngineCtx;
use crate::caps::tool_name;
use crate::gates::codes;
use crate::op::{EngineError, EngineResult, OpStatus, SandboxInfo, TerminalOutput};
use crate::sandbox::{Rlimit, SandboxConfig, restrict_current_thread, rlimits_for, writable_paths};

pub const ENGINE_SHELL_NONZERO_EXIT: &str = "ENGINE_SHELL_NONZERO_EXIT";
pub const ENGINE_SHELL_TERMINAL_ERROR: &str = "ENGINE_SHELL_TERMINAL_ERROR";

/// How long the pipes are still drained after the main child exited and its group was
/// killed; only a process that escaped the group (setsid) can hold them open longer.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Why a command string cannot run as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command is empty")]
    Empty,
    #[error("command {command:?} contains the shell metacharacter {found:?} and no shell is granted")]
    Metacharacter { command: String, found: String },
    #[error("command {command:?} cannot be split into words: {reason}")]
    Unparsable { command: String, reason: String },
}

impl CommandError {
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Metacharacter { .. } => codes::SHELL_METACHARACTER,
            _ => codes::PARAMS_INVALID,
        }
    }
}

/// A verify command as the gates resolved it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecPlan {
    /// The command string, verbatim.
    pub command: String,
    /// Its words (shell-words rules).
    pub words: Vec<String>,
    /// The first word as written.
    pub program_word: String,
    /// The tool name of 10.10.5 (basename, `.exe` stripped).
    pub tool: String,
    /// Set when the command needs a shell and the run config grants one.
    pub shell: Option<String>,
    /// Absolute path of the program (filled by G-CAP).
    pub program: Option<PathBuf>,
    /// Absolute path of the granted shell (filled by G-CAP).
    pub shell_path: Option<PathBuf>,
    /// Canonical working directory (filled by G-INTEGRITY).
    pub cwd: Option<PathBuf>,
    /// The child's whole environment (filled by G-CAP).
    pub env: Vec<(String, String)>,
    /// Wall-clock cap (filled by G-BUDGET).
    pub timeout_ms: u64,
}

/// The first shell metacharacter outside quotes (inside double quotes, `$` and backtick
/// still expand), or a newline anywhere. Globs count: without a shell they would not expand,
/// so the command would silently mean something else.
pub fn find_metacharacter(command: &str) -> Option<String> {
    #[derive(PartialEq)]
    enum Q {
        No,
        Single,
        Double,
    }
    let mut q = Q::No;
    let mut word_start = true;
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        if matches!(c, '\n' | '\r' | '\0') {
            return Some(c.escape_default().to_string());
        }
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::No;
                }
            }
            Q::Double => match c {
                '"' => q = Q::No,
                '\\' => {
                    chars.next();
                }
                '$' | '`' => return Some(c.to_string()),
                _ => {}
            },
            Q::No => {
                match c {
                    '\'' => q = Q::Single,
                    '"' => q = Q::Double,
                    '\\' => {
                        chars.next();
                    }
                    ';' | '&' | '|' | '<' | '>' | '(' | ')' | '`' | '$' | '*' | '?' | '[' | ']' | '{'
                    | '}' => {
                        return Some(c.to_string());
                    }
                    '~' | '#' if word_start => return Some(c.to_string()),
                    _ => {}
                }
                word_start = c.is_whitespace();
                continue;
            }
        }
        word_start = false;
    }
    None
}

/// Splits a command into argv, or selects the granted shell when it needs one.
pub fn parse_command(command: &str, shell_program: Option<&str>) -> Result<ExecPlan, CommandError> {
    if command.trim().is_empty() {
        return Err(CommandError::Empty);
    }
    let meta = find_metacharacter(command);
    let shell = match (&meta, shell_program) {
        (None, _) => None,
        (Some(found), None) => {
            return Err(CommandError::Metacharacter { command: command.to_owned(), found: found.clone() });
        }
        // A newline or NUL is never a verify command, shell or not.
        (Some(found), Some(_)) if found.starts_with('\\') => {
            return Err(CommandError::Metacharacter { command: command.to_owned(), found: found.clone() });
        }
        (Some(_), Some(sh)) => Some(sh.to_owned()),
    };
    let words = shell_words::split(command)
        .map_err(|e| CommandError::Unparsable { command: command.to_owned(), reason: e.to_string() })?;
    let program_word = words.first().cloned().ok_or(CommandError::Empty)?;
    Ok(ExecPlan {
        command: command.to_owned(),
        tool: tool_name(&program_word).unwrap_or_default(),
        program_word,
        words,
        shell,
        ..ExecPlan::default()
    })
}

/// What one run produced.
#[derive(Debug, Clone)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit code; -1 on timeout; 128 + signal for a signal death.
    pub exit_code: i32,
    pub timed_out: bool,
    pub truncated_bytes: u64,
    pub duration_ms: u64,
    pub sandbox: SandboxInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the sandbox policy requires landlock, which is not enforced here ({0})")]
    SandboxRequired(String),
    #[error("spawning {program} failed: {source}")]
    Spawn { program: String, source: std::io::Error },
    #[error("waiting for the child failed: {0}")]
    Wait(std::io::Error),
    #[error("the exec plan is incomplete: {0}")]
    Incomplete(&'static str),
}

/// Limits of one run.
#[derive(Debug, Clone)]
pub struct RunLimits {
    pub timeout: Duration,
    /// Byte cap per captured stream.
    pub stream_cap: u64,
    pub rlimits: Vec<Rlimit>,
}

fn build_command(plan: &ExecPlan, rlimits: &[Rlimit]) -> Result<Command, RunError> {
    let cwd = plan.cwd.as_ref().ok_or(RunError::Incomplete("cwd"))?;
    let mut cmd = match (&plan.shell, &plan.shell_path) {
        (Some(shell), Some(path)) => {
            let mut c = Command::new(path);
            c.arg0(shell).arg("-c").arg(&plan.command);
            c
        }
        (Some(_), None) => return Err(RunError::Incomplete("shell path")),
        (None, _) => {
            let program = plan.program.as_ref().ok_or(RunError::Incomplete("program"))?;
            let mut c = Command::new(program);
            c.arg0(&plan.program_word).args(&plan.words[1..]);
            c
        }
    };
    cmd.env_clear()
        .envs(plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if !rlimits.is_empty() {
        let limits: Vec<(i32, u64)> = rlimits.iter().map(|r| (r.resource, r.value)).collect();
        // SAFETY: the closure runs in the forked child before exec; it only calls
        // setrlimit, which is async-signal-safe, on data captured before the fork, and
        // allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (resource, value) in &limits {
                    let lim =
                        libc::rlimit { rlim_cur: *value as libc::rlim_t, rlim_max: *value as libc::rlim_t };
                    if libc::setrlimit(*resource as _, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns children on behalf of one bus. With Landlock enabled it owns a dedicated thread
/// that restricted itself once (Landlock binds the calling thread and its descendants, for
/// good) and then spawns every child of the bus, so the ruleset is built once per bus and
/// no host thread is ever restricted. The thread ends when the spawner is dropped.
pub struct Spawner {
    tx: Option<mpsc::Sender<SpawnRequest>>,
    wanted: bool,
    require: bool,
    enforced: bool,
    status: String,
    writable: Vec<String>,
}

impl Spawner {
    pub fn new(workspace_root: &std::path::Path, cfg: &SandboxConfig) -> Self {
        let mut sp = Spawner {
            tx: None,
            wanted: cfg.landlock,
            require: cfg.require_landlock,
            enforced: false,
            status: "disabled".into(),
            writable: Vec::new(),
        };
        if !cfg.landlock {
            return sp;
        }
        // The whole workspace is writable even when cwd is a subdirectory of it.
        let writable = writable_paths(workspace_root, cfg);
        sp.writable = writable.iter().map(|p| p.display().to_string()).collect();
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let (status_tx, status_rx) = mpsc::channel();
        let started = std::thread::Builder::new().name("mtx-toolbus-spawner".into()).spawn(move || {
            let status = restrict_current_thread(&writable);
            let _ = status_tx.send(status);
            for (mut cmd, reply) in rx {
                let _ = reply.send(cmd.spawn());
            }
        });
        match started {
            Ok(_) => {
                let (enforced, status) =
                    status_rx.recv().unwrap_or((false, "error: the spawner thread stopped".into()));
                sp.enforced = enforced;
                sp.status = status;
                sp.tx = Some(tx);
            }
            Err(e) => sp.status = format!("error: spawner thread: {e}"),
        }
        sp
    }

    /// Whether Landlock confines the children of this spawner.
    pub fn landlock_enforced(&self) -> bool {
        self.enforced
    }

    fn spawn(&self, mut cmd: Command, program: &str) -> Result<Child, RunError> {
        if self.require && !self.enforced {
            return Err(RunError::SandboxRequired(self.status.clone()));
        }
        let spawn_err = |source| RunError::Spawn { program: program.to_owned(), source };
        match &self.tx {
            // Landlock was wanted and is (or was attempted to be) in force on the thread.
            Some(tx) => {
                let (reply_tx, reply_rx) = mpsc::channel();
                tx.send((cmd, reply_tx))
                    .map_err(|_| spawn_err(std::io::Error::other("the spawner thread stopped")))?;
                reply_rx
                    .recv()
                    .map_err(|_| spawn_err(std::io::Error::other("the spawner thread stopped")))?
                    .map_err(spawn_err)
            }
            None => cmd.spawn().map_err(spawn_err),
        }
    }

    fn info(&self, plan: &ExecPlan, limits: &RunLimits) -> SandboxInfo {
        SandboxInfo {
            landlock: self.enforced,
            landlock_status: if self.wanted { self.status.clone() } else { "disabled".into() },
            writable_paths: if self.enforced { self.writable.clone() } else { Vec::new() },
            rlimits: limits
                .rlimits
                .iter()
                .map(|r| (r.name.to_owned(), Value::from(r.value)))
                .collect::<Map<_, _>>(),
            process_group: true,
            env_scrubbed: true,
            stdin_null: true,
            exec_mode: match &plan.shell {
                Some(s) => format!("shell:{s}"),
                None => "argv".into(),
            },
        }
    }
}

fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1; no pointers.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Whether the child has exited, without reaping it: while it is an unreaped zombie its
/// pid, and so its process-group id, cannot be handed to another process.
fn exited_unreaped(pid: u32) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes only into `info`; WNOWAIT leaves the child waitable, WNOHANG
    // makes the call return at once.
    let rc = unsafe {
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    // SAFETY: after a successful waitid, si_pid is initialised (0 when nothing changed).
    rc == 0 && unsafe { info.si_pid() } != 0
}

fn kill_group(pgid: u32) {
    // SAFETY: killpg only sends a signal. The group id is our child's pid, its own group
    // leader (process_group(0)); callers kill only while the leader is unreaped, so the
    // id still names the child's group.
    unsafe {
        libc::killpg(pgid as libc::pid_t, libc::SIGKILL);
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: fcntl on an fd we own; F_GETFL/F_SETFL take and return plain ints.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
}

/// A captured stream: bytes up to the cap, the rest counted and dropped.
struct Sink<R> {
    src: Option<R>,
    buf: Vec<u8>,
    cap: u64,
    dropped: u64,
}

impl<R: Read + AsRawFd> Sink<R> {
    /// Reads what is available. Returns false once the stream is closed.
    fn pump(&mut self, scratch: &mut [u8]) -> bool {
        let Some(src) = self.src.as_mut() else { return false };
        loop {
            match src.read(scratch) {
                Ok(0) => {
                    self.src = None;
                    return false;
                }
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.buf.len() as u64) as usize;
                    let keep = n.min(room);
                    self.buf.extend_from_slice(&scratch[..keep]);
                    self.dropped += (n - keep) as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.src = None;
                    return false;
                }
            }
        }
    }
}

fn exit_code_of(status: ExitStatus) -> i32 {
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Runs a resolved plan to completion (or to its timeout) and captures its output.
pub fn run(plan: &ExecPlan, limits: &RunLimits, spawner: &Spawner) -> Result<Captured, RunError> {
    let started = Instant::now();
    let program = plan.program.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
    let sandbox = spawner.info(plan, limits);
    let mut child = spawner.spawn(build_command(plan, &limits.rlimits)?, &program)?;
    let pid = child.id();
    let deadline = started + limits.timeout;
    let mut out = Sink { src: child.stdout.take(), buf: Vec::new(), cap: limits.stream_cap, dropped: 0 };
    let mut err = Sink { src: child.stderr.take(), buf: Vec::new(), cap: limits.stream_cap, dropped: 0 };
    for fd in [out.src.as_ref().map(|s| s.as_raw_fd()), err.src.as_ref().map(|s| s.as_raw_fd())]
        .into_iter()
        .flatten()
    {
        set_nonblocking(fd);
    }
    let pidfd = pidfd_open(pid);
    let mut scratch = vec![0u8; 64 * 1024];
    let mut status: Option<ExitStatus> = None;
    let mut timed_out = false;
    let mut drain_until: Option<Instant> = None;
    loop {
        if status.is_none() {
            if exited_unreaped(pid) {
                // Forked children of the command die with it (12.3 scenario 2). The group
                // is killed before the leader is reaped, so its id cannot have been reused.
                kill_group(pid);
                status = Some(child.wait().map_err(RunError::Wait)?);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            } else if Instant::now() >= deadline {
                kill_group(pid);
                timed_out = true;
                status = Some(child.wait().map_err(RunError::Wait)?);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            }
        }
        let open = out.src.is_some() || err.src.is_some();
        if status.is_some() && (!open || drain_until.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(3);
        for s in [out.src.as_ref().map(|s| s.as_raw_fd()), err.src.as_ref().map(|s| s.as_raw_fd())]
            .into_iter()
            .flatten()
        {
            fds.push(libc::pollfd { fd: s, events: libc::POLLIN, revents: 0 });
        }
        let have_pidfd = status.is_none() && pidfd.is_some();
        if let (true, Some(p)) = (have_pidfd, pidfd.as_ref()) {
            fds.push(libc::pollfd { fd: p.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        let until = drain_until.unwrap_or(deadline);
        let mut wait_ms =
            until.saturating_duration_since(Instant::now()).as_millis().min(i32::MAX as u128) as i32;
        if status.is_none() && pidfd.is_none() {
            // Without a pidfd the exit is only seen by polling.
            wait_ms = wait_ms.min(5);
        }
        if !fds.is_empty() {
            // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for the call.
            let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(RunError::Wait(e));
                }
            }
        } else if status.is_none() {
            std::thread::sleep(Duration::from_millis(wait_ms.clamp(0, 5) as u64));
        }
        out.pump(&mut scratch);
        err.pump(&mut scratch);
    }
    let status = status.ok_or(RunError::Incomplete("exit status"))?;
    Ok(Captured {
        exit_code: if timed_out { -1 } else { exit_code_of(status) },
        timed_out,
        truncated_bytes: out.dropped + err.dropped,
        duration_ms: started.elapsed().as_millis() as u64,
        stdout: out.buf,
        stderr: err.buf,
        sandbox,
    })
}

/// The engine entry point: run, then store stdout, stderr and `terminal_output.json` as
/// evidence and return the terminal output as the exported output.
pub(crate) fn execute(ctx: &EngineCtx<'_>, plan: &ExecPlan) -> EngineResult {
    let limits = RunLimits {
        timeout: Duration::from_millis(plan.timeout_ms.max(1)),
        stream_cap: ctx.budget.max_output_bytes.unwrap_or(10_485_760),
        rlimits: rlimits_for(ctx.budget),
    };
    let mut result = ctx.empty_result();
    let spawner = ctx.spawner.get_or_init(|| Spawner::new(ctx.workspace_root, ctx.sandbox));
    let captured = match run(plan, &limits, spawner) {
        Ok(c) => c,
        Err(e) => {
            let (status, code) = match &e {
                RunError::SandboxRequired(_) => (OpStatus::Denied, codes::SBOX_POLICY_DENIED),
                _ => (OpStatus::Failed, codes::SBOX_RUNTIME_ERROR),
            };
            result.status = status;
            result.errors.push(EngineError::new(ENGINE_SHELL_TERMINAL_ERROR, e.to_string()));
            result.errors.push(EngineError::new(code, e.to_string()));
            return ctx.finish(result);
        }
    };
    let store = |kind: &str, bytes: &[u8], media: &str| ctx.put(kind, bytes, media);
    let stdout = store("stdout", &captured.stdout, "application/octet-stream");
    let stderr = store("stderr", &captured.stderr, "application/octet-stream");
    let (stdout_ref, stderr_ref) = match (stdout, stderr) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            result.status = OpStatus::Failed;
            result
                .errors
                .push(EngineError::new(ENGINE_SHELL_TERMINAL_ERROR, format!("storing evidence failed: {e}")));
            return ctx.finish(result);
        }
    };
    let terminal = TerminalOutput {
        command: plan.command.clone(),
        cwd: plan.cwd.as_ref().map(|c| c.display().to_string()).unwrap_or_default(),
        exit_code: captured.exit_code,
        timed_out: captured.timed_out,
        cancelled: false,
        truncated_bytes: captured.truncated_bytes,
        duration_ms: captured.duration_ms,
        stdout_ref: stdout_ref.clone(),
        stderr_ref: stderr_ref.clone(),
    };
    let json = serde_json::to_vec_pretty(&terminal).unwrap_or_default();
    let terminal_ref = match ctx.put("terminal_output", &json, "application/json") {
        Ok(h) => h,
        Err(e) => {
            result.status = OpStatus::Failed;
            result
                .errors
                .push(EngineError::new(ENGINE_SHELL_TERMINAL_ERROR, format!("storing evidence failed: {e}")));
            return ctx.finish(result);
        }
    };
    result.outputs = vec![terminal_ref.clone()];
    result.evidence = vec![stdout_ref, stderr_ref, terminal_ref];
    result.provenance.sandbox = Some(captured.sandbox.clone());
    if captured.timed_out {
        result.status = OpStatus::Failed;
        result.errors.push(EngineError::new(
            codes::SBOX_TIMEOUT,
            format!(
                "command {:?} exceeded its {} ms timeout and its process group was killed",
                plan.command, plan.timeout_ms
            ),
        ));
    } else if captured.exit_code != 0 {
        result.status = OpStatus::Failed;
        result.errors.push(EngineError::new(
            ENGINE_SHELL_NONZERO_EXIT,
            format!("command {:?} exited with code {}", plan.command, captured.exit_code),
        ));
    } else {
        result.status = OpStatus::Succeeded;
    }
    result.terminal = Some(terminal);
    ctx.finish(result)
}
