//! The `wasmgate` command: run a gateway, validate a config, run the demo,
//! or work on a plugin (inspect, test, scaffold).

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use wasmgate::observe::access_line::{self, LineFormat};

/// Per-thread free lists instead of glibc's arenas: a proxied request makes
/// dozens of short-lived allocations (header maps, plugin records), and
/// glibc's malloc and free were ~5 % of the gateway's CPU (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The quickstart config `wasmgate demo` runs when given none.
const QUICKSTART: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples/quickstart/wasmgate.yaml"
);

#[derive(Parser)]
#[command(
    name = "wasmgate",
    version,
    about = "An API gateway whose policies are sandboxed WebAssembly components"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true)]
    log_format: LogFormat,
    /// Threads serving client connections, each a single-threaded runtime
    /// (0: one per available core).
    #[arg(long, default_value_t = 0, global = true)]
    workers: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway; the config and plugin files are hot-reloaded.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config: parse it, compile its plugins and initialise each with
    /// its route config. Exits non-zero with file:line and what is wrong.
    Validate {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the quickstart: the gateway plus echo servers for every upstream target in the config.
    Demo {
        #[arg(long, short, default_value = QUICKSTART)]
        config: PathBuf,
    },
    /// Tools for plugin authors.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Show a plugin's contract version, the host capabilities and WASI
    /// interfaces it imports, and its size. Exits non-zero if this gateway
    /// would refuse it.
    Inspect {
        plugin: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin against a YAML cases file (config, kv, fake upstreams,
    /// request, expected outcome). Exits non-zero if a case fails.
    Test { plugin: PathBuf, cases: PathBuf },
    /// Create a plugin project (Rust, JavaScript or Python) that builds and
    /// passes its own cases.yaml out of the box.
    New {
        /// The plugin's name: its folder and `.wasm` file name.
        name: String,
        #[arg(long, value_enum)]
        lang: wasmgate::devtools::scaffold::Lang,
        /// Where to create the project folder.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// Rust only: the wasmgate plugin SDK to depend on (the `plugin-sdk`
        /// folder of a wasmgate checkout); default: the one this binary was built from.
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

/// Logs go to stderr through a buffer that a background thread writes out
/// (`observe::log_writer`): a request never makes a syscall, waits on the
/// stderr lock or wakes a thread to write its access-log line (measured:
/// the lock cost a third of the no-plugin throughput, a wake-up per line
/// most of the access log's CPU; see BENCHMARKS.md). Without colours, the
/// access line skips `tracing`'s formatter (`observe::access_line`, the
/// same bytes). Lines are never dropped; the returned guard writes what is
/// left at exit.
fn init_logging(format: LogFormat) -> std::io::Result<wasmgate::observe::log_writer::FlushGuard> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = wasmgate::observe::log_writer::BatchedWriter::spawn(std::io::stderr())?;
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer.clone());
    let line_format = match format {
        LogFormat::Human => {
            builder.init();
            LineFormat::Text
        }
        LogFormat::Json => {
            builder.json().init();
            LineFormat::Json
        }
    };
    if !ansi {
        // The same bytes the subscriber would write, for a fraction of the CPU.
        access_line::write_directly(writer, line_format);
    }
    Ok(guard)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let flush_logs = match init_logging(cli.log_format) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("error: cannot start the log writer thread: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    wasmgate::http::workers::configure(cli.workers);
    let outcome = execute(cli.command).await;
    // The lines that led to an error come before it on stderr.
    drop(flush_logs);
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run { config } => run(&config).await,
        Command::Validate { config } => {
            let gateway = wasmgate::validate(&config).await?;
            // Valid, but a route lets a client forge what a plugin tells the upstream.
            for gap in wasmgate::http::identity_headers::unstripped(&gateway.config) {
                eprintln!("warning: {}: {gap}", config.display());
            }
            println!(
                "{}: ok ({} routes, {} upstreams, plugins: {})",
                config.display(),
                gateway.routes.len(),
                gateway.upstreams.len(),
                gateway
                    .plugin_names()
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            Ok(())
        }
        Command::Demo { config } => {
            start_demo_upstreams(&config).await?;
            run(&config).await
        }
        Command::Plugin(command) => plugin(command).await,
    }
}

async fn plugin(command: PluginCommand) -> anyhow::Result<()> {
    match command {
        PluginCommand::Inspect { plugin, json } => {
            let report = wasmgate::devtools::inspect::inspect(&plugin)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{report}");
            }
            if let Some(reason) = &report.incompatible {
                anyhow::bail!(
                    "{}: this gateway would refuse it: {reason}",
                    plugin.display()
                );
            }
            Ok(())
        }
        PluginCommand::Test { plugin, cases } => {
            let report = wasmgate::devtools::plugin_test::run_file(&plugin, &cases).await?;
            print!("{report}");
            if !report.success() {
                anyhow::bail!("{} of {} cases failed", report.failed(), report.cases.len());
            }
            Ok(())
        }
        PluginCommand::New {
            name,
            lang,
            dir,
            sdk_path,
        } => {
            let root =
                wasmgate::devtools::scaffold::create(&wasmgate::devtools::scaffold::NewPlugin {
                    name: &name,
                    lang,
                    dir: &dir,
                    sdk_path: sdk_path.as_deref(),
                })?;
            println!("created {}; build and test it with:", root.display());
            print!(
                "{}",
                wasmgate::devtools::scaffold::next_steps(lang, &root, &name)
            );
            Ok(())
        }
    }
}

async fn run(config: &Path) -> anyhow::Result<()> {
    let gateway = wasmgate::start(config).await?;
    for address in &gateway.addresses {
        tracing::info!("wasmgate listening on http://{address}");
    }
    if let Some(address) = gateway.admin_address {
        tracing::info!("admin API on http://{address} (/metrics, /healthz, /readyz, /admin/routes, /admin/plugins, /admin/upstreams)");
    }
    shutdown_signal().await?;
    tracing::info!("shutting down");
    gateway.shutdown().await;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (what service managers and
/// container runtimes send): both drain requests and flush queued spans.
async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    tokio::select! {
        interrupted = tokio::signal::ctrl_c() => interrupted.context("waiting for ctrl-c"),
        _ = terminate.recv() => Ok(()),
    }
}

/// Starts an echo server on every upstream target of the config, except
/// https ones: the echo speaks plain HTTP (and h2c).
async fn start_demo_upstreams(config: &Path) -> anyhow::Result<()> {
    let parsed = wasmgate::config::Config::load(config)?;
    for (name, upstream) in parsed.upstreams.iter().filter(|(_, u)| u.tls.is_none()) {
        for target in upstream.targets.iter().map(|t| &t.address) {
            let listener = tokio::net::TcpListener::bind(target)
                .await
                .with_context(|| format!("demo upstream `{name}` cannot listen on {target}"))?;
            tracing::info!("demo upstream `{name}` echoing on http://{target}");
            tokio::spawn(wasmgate::devtools::demo::serve_echo(listener, name.clone()));
        }
    }
    Ok(())
}
