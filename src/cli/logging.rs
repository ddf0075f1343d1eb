//! Logs to stderr through `tracing`, so stdout stays clean for plans and listings.

use tracing_subscriber::EnvFilter;

use super::GlobalArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `long_running`: a watcher logs one line per cycle at `info`, so that is its default level.
pub fn init(g: &GlobalArgs, long_running: bool) {
    let level = match (g.quiet, g.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) if long_running => "info",
        (_, 0) => "warn",
        (_, 1) => "info",
        (_, 2) => "debug",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(format!("intune_reconcile={level}")));
    let color = !g.no_color
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false);
    let _ = match g.log_format {
        LogFormat::Text => builder.with_ansi(color).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}
