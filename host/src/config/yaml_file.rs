//! A YAML file read into a typed value, with errors that name the file and
//! the line: shared by the gateway config and `wasmgate plugin test` cases
//! files, so both report a bad file the same way.

use super::locate::{line_of, FieldPath};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// A YAML file that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum YamlFileError {
    #[error("{file}: cannot read: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: PathBuf,
        line: usize,
        message: String,
    },
}

/// The text of one YAML file and its name, for parsing and for pointing
/// errors at a line of it.
#[derive(Debug, Clone, Copy)]
pub struct YamlText<'a> {
    pub text: &'a str,
    pub file: &'a Path,
}

/// Reads the file at `path` as text.
pub fn read(path: &Path) -> Result<String, YamlFileError> {
    std::fs::read_to_string(path).map_err(|source| YamlFileError::Read {
        file: path.to_path_buf(),
        source,
    })
}

impl YamlText<'_> {
    /// Deserializes the whole text; a shape error names the line the
    /// deserializer stopped at.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, YamlFileError> {
        serde_yaml_ng::from_str(self.text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(1);
            self.invalid_at_line(line, e.to_string())
        })
    }

    /// An error about the field at `at`, pointing at the line that writes it.
    pub fn invalid(&self, at: &FieldPath, message: String) -> YamlFileError {
        self.invalid_at_line(line_of(self.text, at), message)
    }

    fn invalid_at_line(&self, line: usize, message: String) -> YamlFileError {
        YamlFileError::Invalid {
            file: self.file.to_path_buf(),
            line,
            message,
        }
    }
}
