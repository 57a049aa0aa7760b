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
mod new;
mod soak;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ferry_engine::manifest::System as Manifest;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

/// Ferry: a VMM in which threads migrate between tiny KVM guests.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Run guest code on threads without the seccomp filter (for a host
    /// without seccomp, or to tell whether the filter is in the way).
    #[arg(long, global = true)]
    no_seccomp: bool,
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
        /// Give up after this many seconds: report the threads still
        /// running, stop them, and exit non-zero.
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
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
        /// Instead: boot N = 16 … 4,096 domains (16 … 256 with --quick)
        /// and report, per N, domains booted per second, resident memory
        /// per domain, the null call's ratio to the floor into a random
        /// domain and a restart's cost.
        #[arg(long)]
        scale: bool,
        /// With --scale: skip every N above this (for quick checks).
        #[arg(long, hide = true, value_name = "N")]
        max_domains: Option<u64>,
        /// Instead: what the `grow` stack-pool policy saves at boot and
        /// what its first growing call costs, against a fixed pool.
        #[arg(long, hide = true, conflicts_with = "scale")]
        grow: bool,
        /// Instead: the stack strategies side by side — latency against
        /// object size (8 B … 16 MiB) for pool + copy, pool + lease, mapped
        /// (pre-mapped, on-call) and message passing, the cost of mapping
        /// under load, memory slots and memory per thread, the crossover.
        #[arg(long, conflicts_with_all = ["scale", "grow"])]
        stacks: bool,
        /// With --stacks: skip every object size above this (bytes; for
        /// quick checks).
        #[arg(long, hide = true, value_name = "BYTES")]
        max_size: Option<u64>,
    },
    /// Run a checked multi-domain workload for a set time while a fuzzing
    /// guest and a fault injector do their worst; exit non-zero if any
    /// invariant broke (a lost or corrupted result, a leak).
    Soak {
        /// How long the load runs.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Seed of the run's random choices (printed; a random one if absent).
        #[arg(long)]
        seed: Option<u64>,
        /// Client threads of the kv workload.
        #[arg(long, default_value_t = 2)]
        clients: u32,
        /// Where a failing run's hypercall streams are written.
        #[arg(long, value_name = "FILE", default_value = "ferry-soak.log")]
        log: PathBuf,
    },
    /// Start a domain of your own: a new project outside this repository.
    ///
    /// The project builds a guest image with plain `cargo build --release`
    /// and has a manifest that runs it against the built-in `hasher`
    /// (`ferry run manifest.toml`).
    New {
        /// The project's (and its image's) name: a crate name of at most
        /// 32 bytes.
        name: String,
        /// Create it in this directory (default: ./NAME); it must not exist.
        #[arg(long, value_name = "DIR")]
        path: Option<PathBuf>,
        /// The Ferry checkout the project depends on (default: the one
        /// this `ferry` was built from).
        #[arg(long, value_name = "REPO")]
        ferry: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    // Before any thread or VM exists: see host_heap for why.
    ferry_engine::host_heap::keep_heap_mapped();
    let cli = Cli::parse();
    // A soak faults domains on purpose tens of thousands of times (and
    // `bench --scale` a few): their
    // per-fault log lines are off unless RUST_LOG asks for them.
    let default_filter = match cli.command {
        // `bench --scale` faults a domain on purpose to time its restarts.
        Some(Command::Soak { .. } | Command::Bench { scale: true, .. }) => {
            "warn,ferry_engine::domain=off"
        }
        _ => "info",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .format_timestamp(None)
        .init();
    if cli.no_seccomp {
        ferry_engine::sandbox::set_enabled(false);
        log::warn!("seccomp is off: threads run guest code unfiltered");
    }
    let result = match cli.command.unwrap_or(Command::Demo {
        keys: 1000,
        manifest: None,
    }) {
        Command::Demo { keys, manifest } => demo(keys, manifest),
        Command::Run { manifest, timeout } => run(&manifest, timeout),
        Command::Bench {
            quick,
            json,
            grow: true,
            ..
        } => bench_grow(quick, json),
        Command::Bench {
            quick,
            json,
            plot,
            no_progress,
            stacks: true,
            max_size,
            ..
        } => bench_stacks(quick, max_size, json, plot, !no_progress),
        Command::Bench {
            quick,
            json,
            plot,
            scale: true,
            max_domains,
            ..
        } => bench_scale(quick, max_domains, json, plot),
        Command::Bench {
            quick,
            json,
            plot,
            no_progress,
            ..
        } => bench(quick, json, plot, !no_progress),
        Command::Soak {
            seconds,
            seed,
            clients,
            log,
        } => soak(seconds, seed, clients, log),
        Command::New { name, path, ferry } => new(&name, path.as_deref(), ferry.as_deref()),
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

/// How long `ferry run --timeout` waits for stopped threads to end.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

fn run(path: &std::path::Path, timeout: Option<u64>) -> anyhow::Result<bool> {
    let spec = Manifest::from_file(path)?;
    let sys = Arc::new(
        ferry_engine::system::System::boot(spec, None).context("cannot start the system")?,
    );
    let (tx, rx) = mpsc::channel();
    let runner = Arc::clone(&sys);
    std::thread::Builder::new()
        .name("ferry-run".into())
        .spawn(move || {
            let _ = tx.send(runner.run());
        })
        .context("cannot start the run")?;
    let limit = timeout.map(Duration::from_secs);
    let outcomes = match limit.map_or_else(
        || rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        |l| rx.recv_timeout(l),
    ) {
        Ok(o) => o,
        Err(RecvTimeoutError::Timeout) => {
            let secs = timeout.unwrap_or(0);
            let running = sys.running();
            let names: Vec<String> = running
                .iter()
                .map(|t| {
                    let within = if t.chain.is_empty() {
                        String::new()
                    } else {
                        format!(" (in {})", t.chain.join(" → "))
                    };
                    format!("{} from {}{within}", t.thread, t.start)
                })
                .collect();
            sys.cancel();
            // Stopped threads end at their next exit; give them a moment so
            // their outcomes can be printed, then leave regardless.
            if let Ok(outcomes) = rx.recv_timeout(CANCEL_WAIT) {
                for o in &outcomes {
                    println!(
                        "{}",
                        o.summary(sys.domains().first().map_or(0, |d| d.tsc_khz))
                    );
                }
            }
            anyhow::bail!(
                "the run did not end within its time limit of {secs} s; {} still running, stopped: {}",
                if names.len() == 1 { "1 thread was" } else { "threads were" },
                names.join("; ")
            );
        }
        Err(RecvTimeoutError::Disconnected) => anyhow::bail!("the run ended without a result"),
    };
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

/// Write a bench mode's `--json` file and `--plot` files, and say where.
fn write_outputs<R: serde::Serialize>(
    report: &R,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    plots: impl FnOnce(&R, &std::path::Path) -> Result<Vec<PathBuf>, bench::json::BenchOutputError>,
) -> anyhow::Result<()> {
    if let Some(path) = json {
        bench::json::write_json_of(report, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("JSON written to {}", path.display());
    }
    if let Some(dir) = plot {
        let files = plots(report, &dir)
            .with_context(|| format!("cannot write plots into {}", dir.display()))?;
        for f in files {
            println!("plot written to {}", f.display());
        }
    }
    Ok(())
}

fn bench_grow(quick: bool, json: Option<PathBuf>) -> anyhow::Result<bool> {
    let report = bench::grow::run(bench::grow::GrowOptions { quick })?;
    print!("{report}");
    write_outputs(&report, json, None, |_, _| Ok(Vec::new()))?;
    Ok(true)
}

fn bench_stacks(
    quick: bool,
    max_size: Option<u64>,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
    progress: bool,
) -> anyhow::Result<bool> {
    let opts = bench::stacks::StacksOptions { quick, max_size };
    let say = |what: &str| {
        if progress {
            eprintln!("bench --stacks: {what}");
        }
    };
    let report = bench::stacks::run(opts, &say)?;
    print!("{report}");
    write_outputs(&report, json, plot, bench::plot::write_stacks_plots)?;
    Ok(!report.sizes.is_empty())
}

fn bench_scale(
    quick: bool,
    max_domains: Option<u64>,
    json: Option<PathBuf>,
    plot: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let report = bench::scale::run(bench::scale::ScaleOptions { quick, max_domains })?;
    print!("{report}");
    write_outputs(&report, json, plot, bench::plot::write_scale_plots)?;
    Ok(!report.rows.is_empty())
}

fn new(
    name: &str,
    dir: Option<&std::path::Path>,
    ferry: Option<&std::path::Path>,
) -> anyhow::Result<bool> {
    let dir = new::create(name, dir, ferry)?;
    println!(
        "created `{name}` in {}; build and run it with:",
        dir.display()
    );
    println!("  cd {}", dir.display());
    println!("  cargo build --release");
    println!("  ferry run manifest.toml");
    Ok(true)
}

fn soak(seconds: u64, seed: Option<u64>, clients: u32, log: PathBuf) -> anyhow::Result<bool> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                u64::from(d.subsec_nanos()) ^ d.as_secs().rotate_left(32)
            })
    });
    anyhow::ensure!(clients >= 1, "--clients must be at least 1");
    println!("ferry soak: seed {seed}, {seconds} s, {clients} client threads");
    let report = soak::run(&soak::SoakOptions {
        seconds,
        seed,
        clients,
    })?;
    print!("{report}");
    if !report.passed() {
        report
            .write_log(&log)
            .with_context(|| format!("cannot write {}", log.display()))?;
        println!("details written to {}", log.display());
    }
    Ok(report.passed())
}
