//! `ferry`: boot a system of domains and run its threads.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod bench;
mod demo;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_engine::manifest::System as Manifest;
use std::path::PathBuf;
use std::process::ExitCode;

/// Ferry: a VMM in which threads migrate between tiny KVM guests.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo system (client, kv, hasher, logger) and check its results.
    Demo {
        /// Keys the client stores.
        #[arg(long, default_value_t = 1000)]
        keys: u64,
        /// Use this manifest instead of the built-in demo one.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Run the system described by a manifest and report each thread's outcome.
    Run {
        /// The manifest (TOML).
        manifest: PathBuf,
    },
    /// Measure migration latency against the exit floor, message passing,
    /// pipes and a plain function call — all in one run.
    Bench {
        /// A short run (fewer samples per figure).
        #[arg(long)]
        quick: bool,
        /// Also write the results as JSON to this file.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Also write plots (SVG and PNG) into this directory.
        #[arg(long, value_name = "DIR")]
        plot: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Demo {
        keys: 1000,
        manifest: None,
    }) {
        Command::Demo { keys, manifest } => demo(keys, manifest),
        Command::Run { manifest } => run(&manifest),
        Command::Bench {
            quick,
            json,
            plot,
            no_progress,
        } => bench(quick, json, plot, !no_progress),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<bool> {
    let spec = Manifest::from_file(path)?;
    let sys = ferry_engine::system::System::boot(spec, None).context("cannot start the system")?;
    let outcomes = sys.run();
    let tsc_khz = sys.domains().first().map_or(0, |d| d.tsc_khz);
    let mut ok = true;
    for o in &outcomes {
        println!("{}", o.summary(tsc_khz));
        ok &= matches!(
            o.result,
            ferry_engine::thread::ThreadResult::Returned { status: 0, .. }
                | ferry_engine::thread::ThreadResult::Exited { code: 0 }
        );
    }
    print!("{}", sys.latency());
    Ok(ok)
}

fn demo(keys: u64, manifest: Option<PathBuf>) -> anyhow::Result<bool> {
    let spec = match manifest {
        Some(p) => Manifest::from_file(&p)?,
        None => Manifest::demo()?,
    };
    let report = demo::run(spec, keys).context("cannot start the demo")?;
    print!("{report}");
    Ok(report.passed())
}

fn bench(
    quick: bool,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    progress: bool,
) -> anyhow::Result<bool> {
    use std::io::IsTerminal;
    let opts = bench::BenchOptions {
        quick,
        progress: progress && std::io::stderr().is_terminal(),
    };
    let report = bench::run(opts)?;
    print!("{report}");
    if let Some(path) = json {
        bench::json::write_json(&report, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    if let Some(dir) = plot {
        let files = bench::plot::write_plots(&report, &dir)
            .with_context(|| format!("cannot write plots into {}", dir.display()))?;
        for f in files {
            println!("plot written to {}", f.display());
        }
    }
    Ok(true)
}
