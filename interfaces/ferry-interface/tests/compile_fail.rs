//! What the macros must refuse, refused with their own message.
//!
//! Each file under `tests/compile-fail/` is a tiny program whose first line
//! is `// expect: <text>`: a piece of the `ferry:` message it must fail
//! with, or `PASS` for a control case that must compile. All cases become
//! binaries of one scratch package (under `CARGO_TARGET_TMPDIR`, with its
//! own target directory, reused between runs), checked by one
//! `cargo check --keep-going`; cargo's JSON diagnostics are then sorted by
//! binary so every case is judged alone. Only the macro's text is
//! asserted, never rustc's wording.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Case {
    name: String,
    path: PathBuf,
    expect: String,
}

fn cases(dir: &Path) -> Vec<Case> {
    let mut out: Vec<Case> = std::fs::read_dir(dir)
        .expect("tests/compile-fail exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expect = text
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("// expect: "))
                .unwrap_or_else(|| panic!("{}: first line must be `// expect: …`", path.display()))
                .trim()
                .to_owned();
            let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
            Case { name, path, expect }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The scratch package: one binary per case, `ferry-interface` by path, the
/// workspace's lock file so versions match (and `--offline` works), and
/// `panic = "abort"` as in guests (the control case is `no_std`).
fn scratch(root: &Path, cases: &[Case]) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ferry-compile-fail");
    std::fs::create_dir_all(&dir).unwrap();
    let mut toml = format!(
        "[package]\nname = \"ferry-compile-fail\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\nautobins = false\n\n\
         [workspace]\n\n\
         [dependencies]\nferry-interface = {{ path = {:?} }}\n\
         zerocopy = {{ version = \"0.8\", default-features = false, features = [\"derive\"] }}\n\n\
         [profile.dev]\npanic = \"abort\"\n",
        root.display().to_string()
    );
    for c in cases {
        write!(
            toml,
            "\n[[bin]]\nname = {:?}\npath = {:?}\n",
            c.name,
            c.path.display().to_string()
        )
        .unwrap();
    }
    let manifest = dir.join("Cargo.toml");
    if std::fs::read_to_string(&manifest).ok().as_deref() != Some(toml.as_str()) {
        std::fs::write(&manifest, toml).unwrap();
    }
    let lock = root.join("../../Cargo.lock");
    if !dir.join("Cargo.lock").exists() {
        std::fs::copy(lock, dir.join("Cargo.lock")).unwrap();
    }
    dir
}

/// Run `cargo check` on every case: cargo's JSON lines.
fn check(dir: &Path, offline: bool) -> (bool, String, String) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("check")
        .arg("--bins")
        .arg("--keep-going")
        .arg("--message-format=json")
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET");
    if offline {
        cmd.arg("--offline");
    }
    let out = cmd.output().expect("cargo runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Error messages per binary.
fn errors_by_bin(json: &str) -> BTreeMap<String, Vec<String>> {
    let mut by: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in json.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["reason"] != "compiler-message" || v["message"]["level"] != "error" {
            continue;
        }
        let bin = v["target"]["name"].as_str().unwrap_or_default().to_owned();
        let text = v["message"]["rendered"]
            .as_str()
            .or(v["message"]["message"].as_str())
            .unwrap_or_default()
            .to_owned();
        by.entry(bin).or_default().push(text);
    }
    by
}

#[test]
fn the_macros_refuse_what_they_cannot_express_with_their_own_message() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = cases(&root.join("tests/compile-fail"));
    assert!(cases.len() > 10, "cases found: {}", cases.len());
    let dir = scratch(root, &cases);
    let (mut ok, mut stdout, mut stderr) = check(&dir, true);
    let mut by = errors_by_bin(&stdout);
    if by.is_empty() && !ok {
        // Nothing was compiled: most likely a dependency missing offline.
        (ok, stdout, stderr) = check(&dir, false);
        by = errors_by_bin(&stdout);
    }
    let _ = stdout;
    let mut failures = Vec::new();
    for c in &cases {
        let errs = by.get(&c.name).map(Vec::as_slice).unwrap_or_default();
        if c.expect == "PASS" {
            if !errs.is_empty() {
                failures.push(format!(
                    "{}: must compile, got:\n{}",
                    c.name,
                    errs.join("\n")
                ));
            }
        } else if errs.is_empty() {
            failures.push(format!("{}: compiled, expected `{}`", c.name, c.expect));
        } else if !errs.iter().any(|e| e.contains(&c.expect)) {
            failures.push(format!(
                "{}: expected `{}`, got:\n{}",
                c.name,
                c.expect,
                errs.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n\n{}\n\ncargo stderr (ok = {ok}):\n{stderr}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
