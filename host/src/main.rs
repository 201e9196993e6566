//! The `mtx` command line: parses flags, calls the library, maps errors to exit codes
//! (0 completed, 1 internal error, 2 bad usage or input, 3 paused for an operator,
//! 4 job failed). It never touches wasmtime types.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mtx::commands::{self, CliError, Output, RunArgs};

#[derive(Parser)]
#[command(
    name = "mtx",
    version,
    about = "Run a Work Packet as a bounded, auditable loop of micro-tasks on small local models",
    long_about = "mtx plans a Work Packet into micro-tasks and runs each as a bounded loop: a fresh \
prompt per iteration, a model call, strict parsing of the completion claim, edits applied only \
inside the task's files, validation commands that decide what is true, and escalation up a \
model/LoRA ladder to a human gate. Every decision that a team may swap is a sandboxed \
WebAssembly component; every command and write passes the Tool Bus gates; every step is \
recorded ahead in a hash-chained Flight Recorder and run ledger.\n\n\
Exit codes: 0 completed, 1 internal error, 2 bad usage or invalid input, 3 paused awaiting an \
operator, 4 job failed. Set RUST_LOG=mtx=debug for tracing; NO_COLOR disables colour.",
    after_help = "Examples:\n  mtx run examples/wordfreq\n  mtx jobs\n  mtx show <JOB_ID>\n  mtx gate <JOB_ID> --decision continue --note \"reviewed\"\n  mtx resume <JOB_ID>"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Plan and run a Work Packet.
    #[command(
        after_help = "Examples:\n  mtx run examples/wordfreq\n  mtx run path/to/WP-1-Foo.md --workspace ~/src/foo --config mtx.toml\n\n\
A directory holding `crate/` (as the examples do) is copied to a scratch workspace under the state dir; \
the source is never changed. Without --config, `mtx.toml` next to the packet is used when present."
    )]
    Run {
        /// The Work Packet: a packet file (.md, packet.json, .toml/.json native form) or a directory holding one.
        wp: PathBuf,
        /// The code base to work on (default: the current directory, or a scratch copy for examples).
        #[arg(long)]
        workspace: Option<PathBuf>,
        /// The run configuration (default: mtx.toml next to the packet, else built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Where jobs are recorded (default: <workspace>/.mtx, or ./.mtx for examples).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Print every Flight Recorder event as a JSON line, then a JSON summary.
        #[arg(long)]
        json: bool,
    },
    /// Continue a paused or crashed job from exactly where it stopped.
    #[command(
        after_help = "Examples:\n  mtx resume 019a...\n\nA paused job needs a recorded decision first (`mtx gate` or `mtx consent`)."
    )]
    Resume {
        job_id: String,
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Ask a running job to skip its active MT at the MT's next decision.
    #[command(after_help = "Examples:\n  mtx skip 019a... --note \"covered by MT-004\"")]
    Skip {
        job_id: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Ask a running job to stop at its next check; it ends `cancelled`.
    #[command(after_help = "Examples:\n  mtx cancel 019a... --note \"wrong packet\"")]
    Cancel {
        job_id: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Record an operator's decision on a job waiting at a hard gate or pause point.
    #[command(
        after_help = "Examples:\n  mtx gate 019a... --decision continue --note \"raised the limit after review\"\n  mtx gate 019a... --decision skip"
    )]
    Gate {
        job_id: String,
        /// continue, skip or abort.
        #[arg(long)]
        decision: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Approve or deny sending a prompt to a cloud model (shows the projection plan first).
    #[command(
        after_help = "Examples:\n  mtx consent 019a... --approve\n  mtx consent 019a... --deny --note \"contains customer data\""
    )]
    Consent {
        job_id: String,
        #[arg(long, conflicts_with = "deny", required_unless_present = "deny")]
        approve: bool,
        #[arg(long)]
        deny: bool,
        #[arg(long)]
        note: Option<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Job History: every job with its profile, Work Packet and status.
    #[command(after_help = "Examples:\n  mtx jobs\n  mtx jobs --status awaiting_user --json")]
    Jobs {
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Only jobs with this status (e.g. completed, awaiting_user, failed).
        #[arg(long)]
        status: Option<String>,
        /// First rebuild the Job History (history.sqlite) from every job directory: after
        /// the database was lost, or when events are missing from its index.
        #[arg(long)]
        reindex: bool,
        #[arg(long)]
        json: bool,
    },
    /// One job: MT progress, iterations per level, escalations, gates.
    #[command(after_help = "Examples:\n  mtx show 019a...\n  mtx show 019a... --json")]
    Show {
        job_id: String,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The Flight Recorder events of a job.
    #[command(
        after_help = "Examples:\n  mtx events 019a...\n  mtx events 019a... --type FR-EVT-MT-005\n  mtx events 019a... --mt MT-001 --json"
    )]
    Events {
        job_id: String,
        #[arg(long = "type")]
        event_type: Option<String>,
        #[arg(long)]
        mt: Option<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The run ledger of a job.
    #[command(after_help = "Examples:\n  mtx ledger 019a...\n  mtx ledger 019a... --json")]
    Ledger {
        job_id: String,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Check a job's hash chains, artifact hashes and schemas; names the first broken record.
    #[command(after_help = "Examples:\n  mtx verify 019a...")]
    Verify {
        job_id: String,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Re-run every recorded plugin decision of a job and prove it reproduces.
    #[command(
        after_help = "Examples:\n  mtx replay 019a...\n  mtx replay 019a... --plugin escalation-default=path/to/stricter-policy.wasm\n\n\
Exit code 0 when every recorded call reproduces (overrides report the decisions that would change), 4 on any difference or missing component."
    )]
    Replay {
        job_id: String,
        /// Replace a recorded plugin: NAME=PATH (NAME as recorded, e.g. escalation-default).
        #[arg(long = "plugin")]
        plugins: Vec<String>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Distillation data: export stored student/teacher pairs (no training is performed).
    #[command(subcommand)]
    Distill(DistillCommand),
    /// Metrics of one job or of every job (MTX-SPEC 9.8).
    #[command(after_help = "Examples:\n  mtx metrics\n  mtx metrics --job 019a... --format prometheus")]
    Metrics {
        #[arg(long)]
        job: Option<String>,
        /// json, prometheus or text.
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// The operator console: jobs, MT timelines, events, ledger, evidence and gate actions in a browser.
    #[command(
        after_help = "Examples:\n  mtx console\n  mtx console --addr 0.0.0.0:7878   # prints a token every request must carry"
    )]
    Console {
        /// Address to listen on; anything but loopback requires the printed token.
        #[arg(long, default_value = "127.0.0.1:7878")]
        addr: std::net::SocketAddr,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
    /// The configured plugins: role, world, version, sha256, grants and limits.
    #[command(
        after_help = "Examples:\n  mtx plugins\n  mtx plugins --config examples/wordfreq/mtx.toml --json"
    )]
    Plugins {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum DistillCommand {
    /// Write the distillation candidates as training-ready JSON Lines records.
    #[command(
        after_help = "Examples:\n  mtx distill export --out candidates.jsonl\n  mtx distill export --job 019a... --min-trust 0.7"
    )]
    Export {
        /// Only these jobs (repeatable; default: every job).
        #[arg(long = "job")]
        jobs: Vec<String>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Output format; jsonl is the only one.
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
        format: String,
        /// Skip candidates whose data_trust_score is below this.
        #[arg(long, default_value_t = 0.5)]
        min_trust: f64,
        #[arg(long, env = "MTX_STATE_DIR")]
        state_dir: Option<PathBuf>,
    },
}

fn user_id() -> String {
    std::env::var("MTX_USER").or_else(|_| std::env::var("USER")).unwrap_or_else(|_| "operator".into())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RUST_LOG"))
        .with_writer(std::io::stderr)
        .with_ansi(std::env::var_os("NO_COLOR").is_none())
        .init();
    let cli = Cli::parse();
    let user = user_id();
    let result = match cli.command {
        Command::Run { wp, workspace, config, state_dir, json } => {
            commands::run(RunArgs { wp, workspace, config, state_dir, user_id: user }, Output::detect(json))
        }
        Command::Resume { job_id, config, state_dir, json } => {
            commands::resume(&job_id, config.as_deref(), state_dir.as_deref(), &user, Output::detect(json))
        }
        Command::Skip { job_id, note, state_dir, json } => commands::request(
            commands::Request::Skip,
            &job_id,
            note.as_deref(),
            state_dir.as_deref(),
            &user,
            Output::detect(json),
        ),
        Command::Cancel { job_id, note, state_dir, json } => commands::request(
            commands::Request::Cancel,
            &job_id,
            note.as_deref(),
            state_dir.as_deref(),
            &user,
            Output::detect(json),
        ),
        Command::Gate { job_id, decision, note, state_dir, json } => commands::gate(
            &job_id,
            &decision,
            note.as_deref(),
            state_dir.as_deref(),
            &user,
            Output::detect(json),
        ),
        Command::Consent { job_id, approve, deny: _, note, state_dir, json } => commands::consent(
            &job_id,
            approve,
            note.as_deref(),
            state_dir.as_deref(),
            &user,
            Output::detect(json),
        ),
        Command::Jobs { state_dir, status, reindex, json } => {
            commands::jobs(state_dir.as_deref(), status.as_deref(), reindex, Output::detect(json))
        }
        Command::Show { job_id, state_dir, json } => {
            commands::show(&job_id, state_dir.as_deref(), Output::detect(json))
        }
        Command::Events { job_id, event_type, mt, state_dir, json } => commands::events(
            &job_id,
            state_dir.as_deref(),
            event_type.as_deref(),
            mt.as_deref(),
            Output::detect(json),
        ),
        Command::Ledger { job_id, state_dir, json } => {
            commands::ledger(&job_id, state_dir.as_deref(), Output::detect(json))
        }
        Command::Verify { job_id, state_dir, json } => {
            commands::verify(&job_id, state_dir.as_deref(), Output::detect(json))
        }
        Command::Replay { job_id, plugins, state_dir, json } => {
            commands::replay(&job_id, &plugins, state_dir.as_deref(), Output::detect(json))
        }
        Command::Distill(DistillCommand::Export { jobs, out, format: _, min_trust, state_dir }) => {
            commands::distill_export(&jobs, out.as_deref(), min_trust, state_dir.as_deref())
        }
        Command::Metrics { job, format, state_dir } => {
            commands::metrics(job.as_deref(), &format, state_dir.as_deref())
        }
        Command::Console { addr, state_dir } => commands::console(addr, state_dir.as_deref(), &user),
        Command::Plugins { config, state_dir, json } => {
            commands::plugins(config.as_deref(), state_dir.as_deref(), Output::detect(json))
        }
    };
    let code = match result {
        Ok(code) => code,
        Err(CliError { code, error, hint }) => {
            eprintln!("error: {error:#}");
            if let Some(hint) = hint {
                eprintln!("hint: {hint}");
            }
            code
        }
    };
    std::process::exit(code as i32);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use mtx::commands::ExitCode;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exit_codes_match_the_contract() {
        assert_eq!(ExitCode::Ok as i32, 0);
        assert_eq!(ExitCode::Internal as i32, 1);
        assert_eq!(ExitCode::Usage as i32, 2);
        assert_eq!(ExitCode::Paused as i32, 3);
        assert_eq!(ExitCode::Failed as i32, 4);
    }
}
