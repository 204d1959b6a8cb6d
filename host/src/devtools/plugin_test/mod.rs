//! Testing a plugin without a gateway. A [`Sandbox`] compiles a `.wasm` on
//! the gateway's own runtime with in-memory capabilities; the SDK's Rust
//! harness (`wasmgate-plugin-sdk`, feature `harness`) drives it from
//! `#[test]`s, and `wasmgate plugin test` drives it from a YAML cases file
//! ([`cases`]), for plugins written in any language.
//!
//! ```text
//! cases.yaml ─► cases::CasesFile ─► run: per case a fresh instance + fakes,
//!               per step the hooks ─► check: expected vs actual ─► report
//! ```

pub mod cases;
pub mod check;
pub mod report;
pub mod run;
pub mod sandbox;

pub use cases::{CasesError, CasesFile};
pub use report::{CaseReport, Report};
pub use sandbox::{Fakes, LogLine, MetricUpdate, Sandbox, ROUTE};

use crate::plugin::PluginError;
use std::path::Path;

/// Why a cases file could not be run at all (a failing case is not an error:
/// it is in the [`Report`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginTestError {
    #[error(transparent)]
    Cases(#[from] CasesError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
}

/// Runs the cases in `cases` against the plugin file `plugin`: what
/// `wasmgate plugin test` does.
pub async fn run_file(plugin: &Path, cases: &Path) -> Result<Report, PluginTestError> {
    let file = CasesFile::load(cases)?;
    let sandbox = Sandbox::load(plugin)?;
    Ok(Report {
        plugin: plugin.to_path_buf(),
        cases_file: cases.to_path_buf(),
        cases: run::run_cases(&sandbox, &file).await,
    })
}
