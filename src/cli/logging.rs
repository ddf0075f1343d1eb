//! Logs to stderr through `tracing`, so stdout stays clean for plans and listings.

use tracing_subscriber::EnvFilter;

use super::GlobalArgs;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `long_running`: a watcher logs one line per cycle at `info`, so that is its default level.
pub(super) fn init(g: &GlobalArgs, long_running: bool) {
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
    let color = g.colour_for(&std::io::stderr());
    let json = g.log_format == LogFormat::Json;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || LogLine(Vec::new(), json))
        .with_target(false);
    let _ = match g.log_format {
        LogFormat::Text => builder.with_ansi(color).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
}

/// The progress bar on screen, if any: log lines are written around it, never through it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows log lines above `bar` while it is drawn (`None`: it is gone).
pub(super) fn set_bar(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = bar;
}

/// One log event, written to stderr in one piece when dropped: with the progress bar hidden
/// meanwhile, so a log line never lands in the middle of it. A JSON line writes `#` as `\u0023`,
/// a text line has its logging commands broken (`crate::diag::safe`).
struct LogLine(Vec<u8>, bool);

impl std::io::Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let write = || {
            let line = if self.1 { crate::diag::safe::json(&self.0) } else { std::borrow::Cow::Borrowed(&self.0[..]) };
            let mut err = crate::diag::safe::stderr();
            let _ = std::io::Write::write_all(&mut err, &line);
            let _ = std::io::Write::flush(&mut err);
        };
        match BAR.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref() {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
    }
}
