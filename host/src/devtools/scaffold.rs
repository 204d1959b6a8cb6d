//! `wasmgate plugin new`: writes a plugin project that builds and passes its
//! own `cases.yaml` out of the box, in Rust, JavaScript or Python. The
//! templates (`host/templates/`) and the contract (`wit/plugin.wit`) are
//! embedded in the binary, so the command works from anywhere.

use std::path::{Path, PathBuf};

/// The languages a plugin project can be created in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

/// Why a project could not be created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    #[error("plugin name `{0}` must start with a lower-case letter and hold only a-z, 0-9 and `-` (it is the `.wasm` file name a gateway config refers to)")]
    Name(String),
    #[error("{0} already exists; choose another name or --dir")]
    Exists(PathBuf),
    #[error("{0}: not the wasmgate plugin SDK (no Cargo.toml of `wasmgate-plugin-sdk`); pass --sdk-path <wasmgate checkout>/plugin-sdk")]
    Sdk(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One file of a template: its path in the project, its text, whether it is
/// a script to make executable.
type TemplateFile = (&'static str, &'static str, bool);

const CASES: &str = include_str!("../../templates/common/cases.yaml");
const WIT: &str = include_str!("../../../wit/plugin.wit");

const RUST: &[TemplateFile] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/rust/Cargo.toml"),
        false,
    ),
    (
        ".cargo/config.toml",
        include_str!("../../templates/rust/.cargo/config.toml"),
        false,
    ),
    (
        ".gitignore",
        include_str!("../../templates/rust/.gitignore"),
        false,
    ),
    (
        "README.md",
        include_str!("../../templates/rust/README.md"),
        false,
    ),
    (
        "src/lib.rs",
        include_str!("../../templates/rust/src/lib.rs"),
        false,
    ),
    ("cases.yaml", CASES, false),
];

const JS: &[TemplateFile] = &[
    (
        "package.json",
        include_str!("../../templates/js/package.json"),
        false,
    ),
    (
        "plugin.js",
        include_str!("../../templates/js/plugin.js"),
        false,
    ),
    (
        "build.mjs",
        include_str!("../../templates/js/build.mjs"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../templates/js/build.sh"),
        true,
    ),
    (
        ".gitignore",
        include_str!("../../templates/js/.gitignore"),
        false,
    ),
    (
        "README.md",
        include_str!("../../templates/js/README.md"),
        false,
    ),
    ("wit/plugin.wit", WIT, false),
    ("cases.yaml", CASES, false),
];

const PYTHON: &[TemplateFile] = &[
    (
        "app.py",
        include_str!("../../templates/python/app.py"),
        false,
    ),
    (
        "requirements.txt",
        include_str!("../../templates/python/requirements.txt"),
        false,
    ),
    (
        "build.sh",
        include_str!("../../templates/python/build.sh"),
        true,
    ),
    (
        ".gitignore",
        include_str!("../../templates/python/.gitignore"),
        false,
    ),
    (
        "README.md",
        include_str!("../../templates/python/README.md"),
        false,
    ),
    ("wit/plugin.wit", WIT, false),
    ("cases.yaml", CASES, false),
];

/// The SDK of the checkout this binary was built from, if it is still there.
fn default_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugin-sdk");
    sdk.canonicalize().ok()
}

/// What `wasmgate plugin new` asks for.
pub struct NewPlugin<'a> {
    pub name: &'a str,
    pub lang: Lang,
    /// The folder the project folder is created in.
    pub dir: &'a Path,
    /// The Rust SDK to depend on (Rust only); default: this build's checkout.
    pub sdk_path: Option<&'a Path>,
}

/// Creates the project `<dir>/<name>/` and returns its path.
pub fn create(new: &NewPlugin<'_>) -> Result<PathBuf, ScaffoldError> {
    let name = new.name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(ScaffoldError::Name(name.to_string()));
    }
    let root = new.dir.join(name);
    if root.exists() {
        return Err(ScaffoldError::Exists(root));
    }
    let (files, language, sdk) = match new.lang {
        Lang::Rust => {
            let sdk = match new.sdk_path {
                Some(path) => path.canonicalize().unwrap_or_else(|_| path.to_path_buf()),
                None => default_sdk().unwrap_or_else(|| PathBuf::from("plugin-sdk")),
            };
            let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).unwrap_or_default();
            if !manifest.contains("name = \"wasmgate-plugin-sdk\"") {
                return Err(ScaffoldError::Sdk(sdk));
            }
            (RUST, "Rust", sdk.display().to_string())
        }
        Lang::Js => (JS, "JavaScript", String::new()),
        Lang::Python => (PYTHON, "Python", String::new()),
    };
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk_path}}", &sdk)
            .replace("{{contract}}", crate::plugin::CONTRACT_VERSION)
            .replace("{{language}}", language)
    };
    for (path, text, executable) in files {
        let path = root.join(path);
        write(&path, &fill(text), *executable).map_err(|source| ScaffoldError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(root)
}

fn write(path: &Path, text: &str, executable: bool) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The commands that build and test a new project, for the CLI to print.
pub fn next_steps(lang: Lang, root: &Path, name: &str) -> String {
    let dir = root.display();
    match lang {
        Lang::Rust => format!(
            "cd {dir}\ncargo build --release\nwasmgate plugin test target/wasm32-wasip2/release/{}.wasm cases.yaml\n",
            name.replace('-', "_")
        ),
        Lang::Js | Lang::Python => {
            format!("cd {dir}\n./build.sh\nwasmgate plugin test {name}.wasm cases.yaml\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_file_friendly() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["Hello", "9lives", "a_b", "", "a/b"] {
            let err = create(&NewPlugin {
                name: bad,
                lang: Lang::Js,
                dir: dir.path(),
                sdk_path: None,
            })
            .unwrap_err();
            assert!(matches!(err, ScaffoldError::Name(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn js_and_python_projects_carry_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        for (name, lang, script) in [
            ("a-js", Lang::Js, "plugin.js"),
            ("a-py", Lang::Python, "app.py"),
        ] {
            let root = create(&NewPlugin {
                name,
                lang,
                dir: dir.path(),
                sdk_path: None,
            })
            .unwrap();
            assert_eq!(
                std::fs::read_to_string(root.join("wit/plugin.wit")).unwrap(),
                WIT
            );
            let source = std::fs::read_to_string(root.join(script)).unwrap();
            assert!(!source.contains("{{"), "{source}");
            assert!(source.contains(&format!(
                "wasmgate:plugin@{}",
                crate::plugin::CONTRACT_VERSION
            )));
            let build = std::fs::read_to_string(root.join("build.sh")).unwrap();
            assert!(build.contains(&format!("{name}.wasm")), "{build}");
            let again = create(&NewPlugin {
                name,
                lang,
                dir: dir.path(),
                sdk_path: None,
            });
            assert!(matches!(again, Err(ScaffoldError::Exists(_))));
        }
    }
}
