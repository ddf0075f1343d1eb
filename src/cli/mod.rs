//! The command line: flags → options → core. No business logic lives here.

/// `println!` that does not panic when stdout is closed (`reconcile sim | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(crate::diag::safe::stdout(), $($arg)*);
    }};
}

mod apply;
mod comment;
mod completions;
mod doctor;

mod init;
mod logging;
mod plan;
mod refresh;
mod schema;
mod show;
mod sim;
mod state;
mod validate;
mod watch;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::diag::Diagnostics;
use crate::duration::HumanDuration;
use crate::settings::Overrides;

/// Pull-request change control for Intune device actions.
#[derive(Debug, Parser)]
#[command(name = "reconcile", version, about, propagate_version = true, max_term_width = 100, after_help = CREDENTIALS)]
pub(crate) struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// The credential chain, shown under every `--help`.
const CREDENTIALS: &str = "Credentials (the first the environment describes): RECONCILE_GRAPH_TOKEN; AZURE_TENANT_ID + AZURE_CLIENT_ID with AZURE_CLIENT_SECRET, AZURE_CLIENT_CERTIFICATE_PATH, AZURE_FEDERATED_TOKEN_FILE or GitHub Actions OIDC; else the Azure CLI's sign-in (`az login`). AZURE_CLOUD pins the cloud.";

/// Flags accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Run as if started in DIR.
    #[arg(short = 'C', global = true, help_heading = "Global options", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The config file [default: reconcile.yaml, if present].
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The ledger: a path, or a Blob URL (only from here or the environment) [env: RECONCILE_STATE;
    /// default: `state:` in the config, else .reconcile/state.json].
    #[arg(long, global = true, help_heading = "Global options", value_name = "PATH")]
    pub state: Option<PathBuf>,
    /// The operator's policy: a floor the repository's `policy:` can only tighten [env: RECONCILE_POLICY].
    #[arg(long, global = true, help_heading = "Global options", value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// More logging (-v, -vv). RUST_LOG overrides.
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Less logging (-q: errors only).
    #[arg(short, long, global = true, help_heading = "Global options", action = clap::ArgAction::Count)]
    pub quiet: u8,
    /// Log format on stderr.
    #[arg(long, global = true, help_heading = "Global options", value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,
    /// No colour (also NO_COLOR=1).
    #[arg(long, global = true, help_heading = "Global options")]
    pub no_color: bool,
    /// Wait up to this long for another writer to release the ledger (e.g. 30s) [default: fail at once].
    #[arg(long, global = true, help_heading = "Global options", value_name = "DURATION")]
    pub lock_timeout: Option<HumanDuration>,
}

impl GlobalArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            state: self.state.clone(),
            policy: self.policy.clone(),
            base: crate::settings::Base::None,
            show_user: false,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the ledger, bound to the tenant (once, before the first plan or apply).
    Init(init::InitArgs),
    /// Parse and check manifests and config; no network.
    Validate(validate::ValidateArgs),
    /// Show what apply would do: diff the manifests against the ledger.
    Plan(plan::PlanArgs),
    /// Plan, confirm, then reset each planned device's passcode once and record the outcome.
    Apply(apply::ApplyArgs),
    /// Ask Intune what became of accepted and unknown actions.
    Refresh(refresh::RefreshArgs),
    /// Check the setup from where it runs: credential, token, permissions, tenant, ledger, Graph, CI.
    Doctor(doctor::DoctorArgs),
    /// Run the Intune Graph simulator on loopback.
    Sim(sim::SimArgs),
    /// Render a saved plan (from `plan --out`).
    Show(show::ShowArgs),
    /// Create or update the plan comment on the pull request (GitHub, or Azure DevOps in Azure Pipelines).
    Comment(comment::CommentArgs),
    /// Re-plan on every save; with --apply, a continuous reconciler.
    Watch(watch::WatchArgs),
    /// Inspect the ledger, export it for auditors, decide about one action by hand.
    State(state::StateArgs),
    /// Write (or print) the JSON Schemas of the manifest and config formats.
    Schema(schema::SchemaArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(completions::CompletionsArgs),
    /// Print the man page (or write every page with --out DIR).
    Man(completions::ManArgs),
}

/// How a command ended, beyond success.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Diagnostics about the user's input; already complete, rendered by `main`.
    Invalid(Diagnostics),
    /// An error with its chain of causes.
    Error(anyhow::Error),
    /// A chosen exit code with nothing more to say (e.g. `--detailed-exitcode`).
    Exit(u8),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Error(e.into())
    }
}

pub(crate) type CmdResult = Result<(), Failure>;

/// Why an operation of `app` did nothing, for `main` to report.
fn failure(e: crate::app::Error) -> Failure {
    match e {
        crate::app::Error::Invalid(diags) => Failure::Invalid(diags),
        crate::app::Error::Other(e) => Failure::Error(e),
    }
}

/// Reads the process environment; the core gets it as a function so tests can pass their own.
fn env(name: &str) -> Option<String> {
    crate::env::var(name)
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    logging::init(&cli.global, matches!(cli.command, Command::Watch(_)));
    JSON_LOGS.store(cli.global.log_format == logging::LogFormat::Json, std::sync::atomic::Ordering::Relaxed);
    COLOUR.store(cli.global.colour_for(&std::io::stdout()), std::sync::atomic::Ordering::Relaxed);
    if let Some(dir) = &cli.global.dir
        && let Err(e) = std::env::set_current_dir(dir)
    {
        return report(Failure::Error(
            anyhow::Error::new(e).context(format!("cannot change to directory `{}`", dir.display())),
        ));
    }
    let result = match cli.command {
        Command::Init(args) => init::run(&cli.global, args),
        Command::Validate(args) => validate::run(&cli.global, args),
        Command::Plan(args) => plan::run(&cli.global, args),
        Command::Apply(args) => apply::run(&cli.global, args),
        Command::Refresh(args) => refresh::run(&cli.global, args),
        Command::Doctor(args) => doctor::run(&cli.global, args),
        Command::Sim(args) => sim::run(args),
        Command::Show(args) => show::run(args),
        Command::Comment(args) => comment::run(args),
        Command::Watch(args) => watch::run(&cli.global, args),
        Command::State(cmd) => state::run(&cli.global, cmd),
        Command::Schema(args) => schema::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => report(f),
    }
}

/// `--log-format json`: everything on stderr is a JSON line (diagnostics and errors become
/// events).
static JSON_LOGS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
impl GlobalArgs {
    /// Whether output to `stream` gets colour: only for a person at a terminal, never under
    /// `NO_COLOR` or `--no-color`, in a pipe, a file or a CI log (not terminals), or on a dumb
    /// terminal. One rule for the plan (stdout) and the log (stderr).
    fn colour_for(&self, stream: &impl IsTerminal) -> bool {
        !self.no_color
            && env(crate::env::NO_COLOR).is_none_or(|v| v.is_empty())
            && env(crate::env::TERM).as_deref() != Some("dumb")
            && stream.is_terminal()
    }
}

static COLOUR: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether stdout gets colour (see `main`).
fn colour() -> bool {
    COLOUR.load(std::sync::atomic::Ordering::Relaxed)
}

/// Writes a text plan to stdout, coloured when [`colour`] says so.
fn print_text_plan(plan: &crate::core::plan::Plan<'_>, ctx: crate::render::PlanContext) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let ctx = crate::render::PlanContext { colour: colour(), ..ctx };
    crate::render::plan(&mut buf, plan, ctx, crate::render::Format::Text)?;
    let mut out = crate::diag::safe::stdout();
    out.write_all(&buf)?;
    out.flush()
}

fn json_logs() -> bool {
    JSON_LOGS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Prints a failure to stderr and picks the exit code.
#[allow(clippy::print_stderr)]
fn report(f: Failure) -> ExitCode {
    if json_logs() {
        match f {
            Failure::Exit(code) => return ExitCode::from(code),
            Failure::Invalid(diags) => {
                print_diagnostics(&diags);
                tracing::error!(errors = diags.error_count(), warnings = diags.warning_count(), "aborting");
            }
            Failure::Error(e) => {
                let causes: Vec<String> = e.chain().skip(1).map(ToString::to_string).collect();
                tracing::error!(causes = ?causes, "{e}");
            }
        }
        return ExitCode::from(1);
    }
    match f {
        Failure::Exit(code) => ExitCode::from(code),
        Failure::Invalid(diags) => {
            print_diagnostics(&diags);
            let (e, w) = (diags.error_count(), diags.warning_count());
            let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
            let mut line = format!("error: aborting due to {}", plural(e, "error"));
            if w > 0 {
                line.push_str(&format!(" and {}", plural(w, "warning")));
            }
            let _ = writeln!(crate::diag::safe::stderr(), "{line}");
            ExitCode::from(1)
        }
        Failure::Error(e) => {
            // Messages quote paths and Graph's answers: no line of them may start a workflow
            // command, and no control character reaches the log raw.
            let mut err = crate::diag::safe::stderr();
            let _ = writeln!(err, "{}", crate::diag::safe::guard_lines(&format!("error: {e}")));
            for cause in e.chain().skip(1) {
                let _ = writeln!(err, "{}", crate::diag::safe::guard_lines(&format!("  caused by: {cause}")));
            }
            ExitCode::from(1)
        }
    }
}

/// Diagnostics to stderr, plus GitHub annotations when running in GitHub Actions.
fn print_diagnostics(diags: &Diagnostics) {
    if json_logs() {
        for d in diags.items() {
            let file = d.file.as_ref().map(|f| f.display().to_string());
            let (line, column) = (d.pos.map(|p| p.line), d.pos.map(|p| p.column));
            let (note, hint) = (d.note.as_deref(), d.hint.as_deref());
            let code = d.code;
            match d.severity {
                crate::diag::Severity::Error => {
                    tracing::error!(code, file, line, column, note, hint, "{}", d.message)
                }
                _ => tracing::warn!(code, file, line, column, note, hint, "{}", d.message),
            }
        }
        return;
    }
    let mut err = crate::diag::safe::stderr();
    let _ = diags.render(&mut err);
    if env(crate::env::GITHUB_ACTIONS).as_deref() == Some("true") {
        let _ = diags.render_github(&mut err);
    }
    let _ = err.flush();
}

/// Whether stdin and stderr are a terminal (for prompts and progress bars).
pub(crate) fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Waits for Ctrl-C or SIGTERM, then says the run stops sending: on stderr for a person
/// (`plain`), else as a log event.
#[allow(clippy::print_stderr)]
pub(crate) async fn stopping(plain: bool) {
    wait_for_stop_signal().await;
    if plain {
        eprintln!("\nstopping: no new requests; waiting for those in flight to be recorded");
    } else {
        tracing::warn!("stopping: no new requests; waiting for those in flight to be recorded");
    }
}

/// Ctrl-C or SIGTERM.
pub(crate) async fn wait_for_stop_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}
