//! A domain of one's own, end to end: `ferry new` makes a project outside
//! the repository, plain `cargo build --release` builds its image, and
//! `ferry run manifest.toml` runs it against the built-in `hasher`: its
//! thread calls the project's own `Greeter` through a typed client, and
//! `greet` calls `hasher` through `hasher-api`.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run `cmd`, killing it after `limit` (a hang fails the test fast).
fn run(mut cmd: Command, limit: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    // Drain the pipes while waiting, so a chatty child never blocks.
    let out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut v).ok();
            v
        })
    });
    let err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut v).ok();
            v
        })
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} still running after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(out),
        stderr: join(err),
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn ferry(args: &[&str], dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(args).current_dir(dir).env("RUST_LOG", "info");
    cmd
}

/// Plain `cargo build --release` in `dir`, as a user runs it: none of the
/// outer build's settings leak in.
fn cargo_build(dir: &Path) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release"]).current_dir(dir);
    // The outer `cargo test`'s variables would change the project's flags,
    // target, profile or directories.
    ferry_image_build::remove_outer_cargo_env(&mut cmd);
    run(cmd, Duration::from_secs(600))
}

/// The test's scratch space under the workspace's `target/`: kept between
/// runs, so the project's dependencies stay built and a rerun is warm.
fn scratch() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-test");
    std::fs::create_dir_all(&dir).expect("create the test's scratch directory");
    dir
}

#[test]
fn a_project_from_ferry_new_builds_out_of_tree_and_runs_against_the_builtin_hasher() {
    assert!(
        Path::new("/dev/kvm").exists(),
        "/dev/kvm is missing: this test boots real KVM guests and cannot run without it."
    );
    let scratch = scratch();
    let project = scratch.join("hello-ferry");
    if project.exists() {
        std::fs::remove_dir_all(&project).expect("remove the previous run's project");
    }

    let mut new = ferry(&["new", "hello-ferry", "--path"], &scratch);
    new.arg(&project);
    let o = run(new, Duration::from_secs(30));
    let (out, err) = text(&o);
    assert!(o.status.success(), "ferry new failed:\n{out}\n{err}");
    assert!(out.contains("cargo build --release"), "{out}");

    // The build's output persists across runs (a fresh project directory
    // each time, its target directory kept): `target` is a link to it, so
    // the build and the manifest's relative image path are the user's.
    let target = scratch.join("target");
    std::fs::create_dir_all(&target).expect("create the persistent target directory");
    std::os::unix::fs::symlink(&target, project.join("target")).expect("link target/");

    let started = Instant::now();
    let o = cargo_build(&project);
    let (out, err) = text(&o);
    assert!(
        o.status.success(),
        "cargo build --release failed:\n{out}\n{err}"
    );
    let image = project.join("target/x86_64-unknown-linux-gnu/release/hello-ferry");
    let elf = std::fs::read(&image).unwrap_or_else(|e| panic!("{}: {e}", image.display()));
    assert_eq!(elf.get(..4), Some(&b"\x7fELF"[..]), "the image is an ELF");
    eprintln!(
        "template: built in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let o = run(
        ferry(&["run", "manifest.toml", "--timeout", "60"], &project),
        Duration::from_secs(90),
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "ferry run failed:\n{out}\n{err}");
    let greeting = format!(
        "Hello, Ferry! sha256 {}",
        Sha256::digest(b"Ferry")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    // The thread greeted 3 times; the greeting's length came back through
    // the typed client, and the digest hasher computed is in the greeting
    // the guest printed.
    let returned = format!("from greeter.run: returned [3, {}]", greeting.len());
    assert!(
        out.contains(&returned),
        "expected `{returned}`:\n{out}\n{err}"
    );
    assert!(
        err.contains(&format!("[greeter] {greeting}")),
        "expected the greeting `{greeting}`:\n{out}\n{err}"
    );
}

#[test]
fn ferry_new_refuses_an_existing_directory_and_a_bad_name_in_one_sentence() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let taken = tmp.path().join("taken");
    std::fs::create_dir(&taken).expect("mkdir");
    let cases: [(&[&str], &str); 4] = [
        (
            &["new", "taken"],
            "already exists: ferry new only creates a new directory",
        ),
        (
            &["new", "way-too-long-a-name-for-a-domain-x"],
            "is 34 bytes long, and a name is at most 32",
        ),
        (&["new", "9lives"], "a name starts with an ASCII letter"),
        (&["new", "fn"], "it is a Rust keyword"),
    ];
    for (args, needle) in cases {
        let o = run(ferry(args, tmp.path()), Duration::from_secs(30));
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{args:?}: one line expected:\n{err}"
        );
        assert!(
            err.starts_with("ferry: ") && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    let mut left: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    left.sort();
    assert_eq!(left, ["taken"], "a refused `ferry new` creates nothing");
}
