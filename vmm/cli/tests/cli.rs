//! The `ferry` binary end to end: the demo passes with exit 0, a lying `kv`
//! makes it fail, and every user error is one clear line and a non-zero exit.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `ferry` with `args`, killing it after 60 s (a hang fails the test fast).
fn ferry(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("ferry {args:?} still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn require_kvm() {
    assert!(
        std::path::Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: these tests boot real KVM guests and cannot run without it."
    );
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A user error: non-zero exit, exactly one line on stderr, no panic.
fn assert_one_line_error(o: &Output, needle: &str) {
    let (_, err) = text(o);
    assert!(!o.status.success(), "exit status {:?}", o.status);
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected:\n{err}"
    );
    assert!(err.starts_with("ferry: ") && err.contains(needle), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn demo_passes_every_check() {
    require_kvm();
    let o = ferry(&[], &[]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "demo failed:\n{out}\n{err}");
    assert!(out.contains("demo: all checks passed"), "{out}");
    assert!(!out.contains("[FAIL]"), "{out}");
    for entry in [
        "kv.put",
        "kv.get",
        "kv.delete",
        "hasher.sha256",
        "logger.append",
        "floor",
    ] {
        assert!(out.contains(entry), "latency summary lacks {entry}:\n{out}");
    }
}

#[test]
fn demo_with_a_corrupting_kv_fails() {
    require_kvm();
    let demo = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../manifests/demo.toml"
    ))
    .unwrap();
    let corrupt = demo.replace("image = \"kv\"", "image = \"kv-corrupt\"");
    assert_ne!(demo, corrupt);
    let path = std::env::temp_dir().join(format!("ferry-corrupt-{}.toml", std::process::id()));
    std::fs::write(&path, corrupt).unwrap();
    let o = ferry(&["demo", "--manifest", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "a lying kv must fail the demo:\n{out}\n{err}"
    );
    assert!(
        out.contains("[FAIL] every get matched the VMM's model"),
        "{out}"
    );
    assert!(out.contains("mismatch: get `t"), "{out}");
}

#[test]
fn missing_kvm_is_one_clear_sentence() {
    let o = ferry(&[], &[("FERRY_KVM_DEVICE", "/nonexistent/kvm")]);
    assert_one_line_error(
        &o,
        "/nonexistent/kvm does not exist: Ferry needs a Linux host with KVM enabled",
    );
}

#[test]
fn missing_manifest_is_one_clear_sentence() {
    let o = ferry(&["run", "/nonexistent/system.toml"], &[]);
    assert_one_line_error(&o, "cannot read manifest /nonexistent/system.toml");
}

#[test]
fn invalid_manifest_is_one_clear_sentence() {
    let path = std::env::temp_dir().join(format!("ferry-bad-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[domain]]\nname = \"a\"\nimage = \"kv\"\ncapabilities = [\"b.x\"]\n",
    )
    .unwrap();
    let o = ferry(&["run", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert_one_line_error(&o, "capability `b.x` names unknown domain `b`");
}

#[test]
fn missing_image_is_one_clear_sentence() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("ferry-noimg-{}.toml", std::process::id()));
    std::fs::write(&path, "[[domain]]\nname = \"a\"\nimage = \"./nope.elf\"\n").unwrap();
    let o = ferry(&["run", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    assert_one_line_error(&o, "nope.elf");
}

#[test]
fn bench_quick_json_has_every_mode_and_a_floor() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("ferry-bench-{}.json", std::process::id()));
    let o = ferry(
        &[
            "bench",
            "--quick",
            "--no-progress",
            "--json",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "bench failed:\n{out}\n{err}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    // The floor was measured, with positive order statistics.
    let floor = &json["floor"];
    assert!(floor["count"].as_u64().unwrap() > 0);
    for k in ["min", "p50", "p90", "p99", "max"] {
        assert!(floor[k].as_u64().unwrap() > 0, "floor.{k}");
    }
    let figures = json["figures"].as_array().unwrap();
    let modes: std::collections::HashSet<&str> = figures
        .iter()
        .map(|f| f["mode"].as_str().unwrap())
        .collect();
    for mode in [
        "migrate",
        "message",
        "floor",
        "pipepinned",
        "pipeunpinned",
        "function",
        "vmm",
        "raw",
        "typed",
    ] {
        assert!(modes.contains(mode), "mode {mode} missing: {modes:?}");
    }
    for f in figures {
        let s = &f["stats"];
        assert!(
            s["count"].as_u64().unwrap() > 0 && s["p50"].as_u64().unwrap() > 0,
            "{f}"
        );
        assert!(
            s["min"].as_u64() <= s["p50"].as_u64() && s["p50"].as_u64() <= s["max"].as_u64(),
            "{f}"
        );
        // Guest-side stub cycles exclude the exits: no ratio to the floor.
        if f["group"] == "stub" {
            assert!(f["ratio_to_floor"].is_null(), "{f}");
        } else {
            assert!(f["ratio_to_floor"].as_f64().unwrap() > 0.0, "{f}");
        }
        assert!(f["ns"]["p50"].as_f64().unwrap() > 0.0, "{f}");
    }
    let groups: std::collections::HashSet<&str> = figures
        .iter()
        .map(|f| f["group"].as_str().unwrap())
        .collect();
    for g in [
        "null", "size", "depth", "threads", "domains", "stub", "baseline",
    ] {
        assert!(groups.contains(g), "group {g} missing");
    }
    let sizes = figures.iter().filter(|f| f["group"] == "size").count();
    assert_eq!(sizes, 2 * 3 * 6, "6 sizes x IN/OUT/INOUT x 2 modes");
    let stubs = figures.iter().filter(|f| f["group"] == "stub").count();
    assert_eq!(stubs, 2 * 2, "null and INOUT 4 KiB x raw and typed");
    assert!(out.contains("typed ÷ raw, null call"), "{out}");
    assert!(json["bandwidth"].as_array().unwrap().len() >= 2);
    assert!(json["machine"]["tsc_khz"].as_u64().unwrap() > 0);
    for k in [
        "migrate_vs_floor",
        "message_vs_migrate",
        "vmm_work_ns",
        "copy_vs_memcpy",
    ] {
        assert!(json["headline"][k].as_f64().unwrap() > 0.0, "headline.{k}");
    }
    assert!(out.contains("Headline"), "{out}");
}

#[test]
fn run_timeout_names_the_thread_still_running_and_fails() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("ferry-spin-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[[domain]]\nname = \"spinner\"\nimage = \"testguest\"\nexports = [\"spin_forever\"]\n\
         [[thread]]\ndomain = \"spinner\"\nentry = \"spin_forever\"\n",
    )
    .unwrap();
    let o = ferry(&["run", "--timeout", "1", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    let (out, err) = text(&o);
    assert!(!o.status.success(), "exit status {:?}\n{out}", o.status);
    assert!(
        err.contains("did not end within its time limit of 1 s")
            && err.contains("thread 1 from spinner.spin_forever (in spinner)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

/// Write `toml` to a fresh manifest file, run `ferry run` on it, remove it.
/// `ferry bench --scale --quick --json`, capped at 64 domains so it takes
/// seconds: a row per N booted with every figure, the rest listed skipped.
#[test]
fn bench_scale_quick_json_has_a_row_per_n_with_every_figure() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("ferry-scale-{}.json", std::process::id()));
    let path_s = path.to_str().unwrap();
    let out = ferry(
        &[
            "bench",
            "--scale",
            "--quick",
            "--max-domains",
            "64",
            "--json",
            path_s,
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("domains/s"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(json["tsc_khz"].as_u64().unwrap() > 0);
    let rows = json["rows"].as_array().unwrap();
    let ns: Vec<u64> = rows
        .iter()
        .map(|r| r["domains"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, [16, 64], "{json}");
    for r in rows {
        for k in [
            "domains_per_s",
            "boot_ms",
            "resident_kib_per_domain",
            "ratio",
            "restart_us",
        ] {
            assert!(r[k].as_f64().unwrap() > 0.0, "{k} in {r}");
        }
        assert!(r["null"]["p50"].as_u64().unwrap() > 0, "{r}");
        assert!(r["floor"]["p50"].as_u64().unwrap() > 0, "{r}");
        assert!(r["callee"].as_str().unwrap().starts_with('d'), "{r}");
    }
    let skipped = json["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{json}");
    assert_eq!(skipped[0]["domains"].as_u64(), Some(256));
}

/// `ferry bench --grow --quick --json` (hidden): both pools' footprints and
/// every latency figure, each system's growth checked by the bench itself.
#[test]
fn bench_grow_quick_json_has_both_pools_and_every_figure() {
    require_kvm();
    let path = std::env::temp_dir().join(format!("ferry-grow-{}.json", std::process::id()));
    let path_s = path.to_str().unwrap();
    let out = ferry(&["bench", "--grow", "--quick", "--json", path_s], &[]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("first call that grows"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_file(&path);
    let pools: Vec<(String, u64, u64)> = json["footprints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["pool"].as_str().unwrap().to_owned(),
                p["stacks"].as_u64().unwrap(),
                p["vcpus"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pools,
        [("grow".to_owned(), 1, 1), ("fixed".to_owned(), 16, 1)],
        "{json}"
    );
    let systems = json["systems"].as_u64().unwrap();
    for (k, want) in [
        ("grow_first", systems / 2),
        ("fixed_first", systems / 2),
        ("warm", systems * 5),
        ("floor", systems * 5),
    ] {
        assert_eq!(json[k]["count"].as_u64().unwrap(), want, "{k} in {json}");
        assert!(json[k]["p50"].as_u64().unwrap() > 0, "{k} in {json}");
    }
}

/// `ferry bench --stacks --quick --json --plot` capped at 4 KiB objects:
/// every strategy at every size it can carry (a lease only from a whole
/// page), every interval around its median, the map/unmap rows, a
/// footprint per mode and thread count, a crossover per strategy, plots.
#[test]
fn bench_stacks_quick_json_has_every_strategy_interval_and_footprint() {
    require_kvm();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stacks.json");
    let plots = dir.path().join("plots");
    let out = ferry(
        &[
            "bench",
            "--stacks",
            "--quick",
            "--no-progress",
            "--max-size",
            "4096",
            "--json",
            path.to_str().unwrap(),
            "--plot",
            plots.to_str().unwrap(),
        ],
        &[],
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("crossover against pool + copy"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["rounds"].as_u64(), Some(10), "{json}");
    assert!(json["confidence"].as_f64().unwrap() > 0.95, "{json}");
    let mut seen: Vec<(String, u64)> = json["sizes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let r = &p["ratio"];
            let (lo, m, hi) = (
                r["lo"].as_f64().unwrap(),
                r["median"].as_f64().unwrap(),
                r["hi"].as_f64().unwrap(),
            );
            assert!(lo <= m && m <= hi && lo > 0.0, "{p}");
            assert_eq!(p["rounds"].as_array().unwrap().len(), 10, "{p}");
            (
                p["strategy"].as_str().unwrap().to_owned(),
                p["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let mut want = Vec::new();
    for s in ["pool-copy", "premapped", "on-call", "message"] {
        for b in [8, 512, 4096] {
            want.push((s.to_owned(), b));
        }
    }
    want.push(("pool-lease".to_owned(), 4096));
    want.sort();
    assert_eq!(seen, want, "{json}");
    assert_eq!(json["loaded"].as_array().unwrap().len(), 4, "{json}");
    assert_eq!(json["map_costs"].as_array().unwrap().len(), 3, "{json}");
    let fps = json["footprints"].as_array().unwrap();
    assert_eq!(fps.len(), 9, "{json}");
    for fp in fps {
        let threads = fp["threads"].as_u64().unwrap();
        let a = &fp["domains"][0];
        assert_eq!(a["vcpus"].as_u64(), Some(threads), "{fp}");
        if fp["mode"] == "premapped" {
            assert_eq!(a["window_slots"].as_u64(), Some(threads), "{fp}");
        }
        if fp["mode"] == "pool" {
            assert_eq!(a["window_slots"].as_u64(), Some(0), "{fp}");
        }
    }
    assert_eq!(json["start"].as_array().unwrap().len(), 3, "{json}");
    assert_eq!(json["crossover"].as_array().unwrap().len(), 3, "{json}");
    for stem in ["stacks_latency_vs_size", "stacks_ratio_vs_size"] {
        for ext in ["svg", "png"] {
            assert!(plots.join(format!("{stem}.{ext}")).exists(), "{stem}.{ext}");
        }
    }
}

fn ferry_run(name: &str, toml: &str) -> Output {
    let path = std::env::temp_dir().join(format!("ferry-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, toml).unwrap();
    let o = ferry(&["run", path.to_str().unwrap()], &[]);
    let _ = std::fs::remove_file(&path);
    o
}

/// Two `testguest` domains: `a.forward` calls `b.echo` with its scalars.
const RUN_DOMAINS: &str = r#"
[[domain]]
name = "a"
image = "testguest"
exports = ["forward", "fail_app"]
capabilities = ["b.echo"]

[[domain]]
name = "b"
image = "testguest"
exports = ["echo"]
"#;

#[test]
fn run_reports_each_thread_and_exits_zero_when_all_succeed() {
    require_kvm();
    let toml = format!(
        "{RUN_DOMAINS}\n[[thread]]\ndomain = \"a\"\nentry = \"forward\"\nargs = [5, 6]\n\n\
         [[thread]]\ndomain = \"b\"\nentry = \"echo\"\nargs = [7, 8]\n"
    );
    let o = ferry_run("run-ok", &toml);
    let (out, err) = text(&o);
    assert!(o.status.success(), "ferry run failed:\n{out}\n{err}");
    // One line per thread: where it started, what it returned, its counts
    // (a call and its return: 1 call, 3 KVM_RUNs; a lone entry: 0 and 1).
    let line = |start: &str| {
        out.lines()
            .find(|l| l.contains(&format!("from {start}:")))
            .unwrap_or_else(|| panic!("no line for {start}:\n{out}"))
            .to_owned()
    };
    let a = line("a.forward");
    assert!(a.contains("returned [5, 6]; 1 calls, 3 KVM_RUNs"), "{a}");
    let b = line("b.echo");
    assert!(b.contains("returned [7, 8]; 0 calls, 1 KVM_RUNs"), "{b}");
    assert!(
        out.contains("b.echo"),
        "the latency table names the callee:\n{out}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn run_exits_non_zero_when_a_thread_fails() {
    require_kvm();
    let toml =
        format!("{RUN_DOMAINS}\n[[thread]]\ndomain = \"a\"\nentry = \"fail_app\"\nargs = [3]\n");
    let o = ferry_run("run-fail", &toml);
    let (out, err) = text(&o);
    assert!(
        !o.status.success(),
        "a failing thread must fail the run:\n{out}\n{err}"
    );
    assert!(
        out.contains("from a.fail_app: returned status 0x3"),
        "{out}"
    );
}

/// A short soak: the workload runs, the referee judges, nothing leaks, and
/// the report prints every figure the soak promises.
#[test]
fn a_short_soak_passes_and_prints_every_figure() {
    require_kvm();
    // Its faults are logged at `error`: keep them out of the pipe (read only
    // at the end), as `ferry soak` does by default.
    let quiet = [("RUST_LOG", "warn,ferry_engine::domain=off")];
    let o = ferry(&["soak", "--seconds", "4", "--seed", "11"], &quiet);
    let (out, err) = text(&o);
    assert!(o.status.success(), "soak failed:\n{out}\n{err}");
    for figure in [
        "seed 11",
        "calls made",
        "faults injected by kind",
        "restarts by domain",
        "refusals by code",
        "budget expiries",
        "deadline (wait) expiries",
        "lost results:                   0",
        "corrupted results:              0",
        "leaks:                          0",
        "result: PASS",
    ] {
        assert!(out.contains(figure), "no `{figure}` in:\n{out}");
    }
}
