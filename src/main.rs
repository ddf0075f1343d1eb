//! `reconcile`: parse arguments, set up logging, run, map the result to an exit code.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    intune_reconcile::main()
}
