//! The test-runner output of `wasmgate plugin test`: one line per case, the
//! expected-versus-actual differences of each failure, a summary line.

use super::check::Mismatch;
use std::fmt;
use std::path::PathBuf;

/// The result of one case.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    /// Line of the case in the cases file.
    pub line: usize,
    /// Empty when the case passed.
    pub mismatches: Vec<Mismatch>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.mismatches.is_empty()
    }
}

/// The results of a cases file.
#[derive(Debug, Clone)]
pub struct Report {
    pub plugin: PathBuf,
    pub cases_file: PathBuf,
    pub cases: Vec<CaseReport>,
}

impl Report {
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.cases.len() - self.passed()
    }

    /// Whether every case passed.
    pub fn success(&self) -> bool {
        self.failed() == 0
    }
}

/// Writes `value` after `first`, continuation lines aligned under it.
fn write_value(f: &mut fmt::Formatter<'_>, first: &str, value: &str) -> fmt::Result {
    let indent = " ".repeat(first.len());
    for (i, line) in value.lines().enumerate() {
        if i == 0 {
            writeln!(f, "{first}{line}")?;
        } else {
            writeln!(f, "{indent}{line}")?;
        }
    }
    if value.is_empty() {
        writeln!(f, "{first}")?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "running {} cases from {} against {}",
            self.cases.len(),
            self.cases_file.display(),
            self.plugin.display()
        )?;
        for case in &self.cases {
            if case.passed() {
                writeln!(f, "PASS  {}", case.name)?;
                continue;
            }
            writeln!(
                f,
                "FAIL  {}  ({}:{})",
                case.name,
                self.cases_file.display(),
                case.line
            )?;
            for m in &case.mismatches {
                writeln!(f, "      {}:", m.field)?;
                write_value(f, "        - expected: ", &m.expected)?;
                write_value(f, "        + actual:   ", &m.actual)?;
            }
        }
        writeln!(f)?;
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}
