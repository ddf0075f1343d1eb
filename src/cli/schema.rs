//! `reconcile schema`

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context as _;

use super::CmdResult;
use crate::schema;

#[derive(Debug, clap::Args)]
pub(super) struct SchemaArgs {
    /// Folder to write `manifest.v1.json` and `config.v1.json` into.
    #[arg(long, default_value = "schemas", value_name = "DIR", conflicts_with = "print")]
    pub out: PathBuf,
    /// Print one schema to stdout instead.
    #[arg(long, value_enum, value_name = "WHICH")]
    pub print: Option<Which>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Which {
    Manifest,
    Config,
}

#[allow(clippy::print_stdout)]
pub(super) fn run(args: SchemaArgs) -> CmdResult {
    let all = schema::all();
    if let Some(which) = args.print {
        let name = match which {
            Which::Manifest => "manifest.v1.json",
            Which::Config => "config.v1.json",
        };
        let text = all.iter().find(|(n, _)| *n == name).map(|(_, t)| t.as_str()).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("cannot write to stdout")?;
        return Ok(());
    }
    for path in
        schema::write_all(&args.out).with_context(|| format!("cannot write schemas into `{}`", args.out.display()))?
    {
        say!("wrote {}", path.display());
    }
    Ok(())
}
