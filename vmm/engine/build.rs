//! Builds every guest image (the excluded workspace rooted at
//! `guest/Cargo.toml`, members `images/*`) with one nested `cargo build` and
//! writes `$OUT_DIR/images.rs`:
//!
//! ```text
//! pub static BUILTIN_IMAGES: &[(&str, &[u8])] = &[("client", include_bytes!("/abs/path")), ...];
//! ```
//!
//! one entry per image binary, named after the binary, sorted by name.
//! Guests need their own profile (`panic = "abort"`) and code-generation
//! flags, and cargo cannot build them as part of the host workspace, hence
//! the nested build in its own target directory under `OUT_DIR` (sharing the
//! outer target directory would deadlock on cargo's lock).

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// The guest target, its code-generation flags and the outer build's
// environment a nested build must not see live in `ferry-image-build`
// (`guest/image-build/`), shared with images built outside this repository.
//
// The target is named explicitly so that the flags reach only the guest
// crates, not the host-side proc-macros and build scripts: without
// `--target`, cargo applies `CARGO_ENCODED_RUSTFLAGS` to host artifacts too,
// and a proc-macro `.so` compiled with `-Crelocation-model=static` does not
// link (rust-lld: "relocation R_X86_64_32 cannot be used against local
// symbol; recompile with -fPIC"). The image paths come from cargo's JSON
// `executable` field, so the extra `x86_64-unknown-linux-gnu/` component of
// the output directory needs no handling here. `scripts/check.sh` passes
// the same `--target`.
use ferry_image_build::{remove_outer_cargo_env, GUEST_RUSTFLAGS, GUEST_TARGET};

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let repo = manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("vmm/engine/ has a grandparent")
        .canonicalize()
        .expect("repository root");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));

    for dir in ["guest", "images", "shared-abi", "interfaces"] {
        println!("cargo:rerun-if-changed={}", repo.join(dir).display());
    }

    let guest_manifest = repo.join("guest").join("Cargo.toml");
    let target_dir = out_dir.join("guest-target");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--workspace"])
        .args(["--target", GUEST_TARGET])
        .arg("--manifest-path")
        .arg(&guest_manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--message-format=json-render-diagnostics")
        .current_dir(repo.join("guest"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    remove_outer_cargo_env(&mut cmd);
    cmd.env("CARGO_ENCODED_RUSTFLAGS", GUEST_RUSTFLAGS.join("\x1f"));

    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cargo:?} for the guest images: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!(
            "building the guest images failed ({}); cargo's stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let mut images: Vec<(String, PathBuf)> = stdout
        .lines()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .filter_map(|l| json_string_field(l, "executable"))
        .map(PathBuf::from)
        .map(|p| {
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .expect("image binary has a UTF-8 name")
                .to_owned();
            (name, p)
        })
        .collect();
    images.sort();
    images.dedup();
    assert!(
        !images.is_empty(),
        "the guest build produced no image binaries"
    );

    let mut src = String::from("pub static BUILTIN_IMAGES: &[(&str, &[u8])] = &[");
    for (name, path) in &images {
        let path = path.to_str().expect("image path is UTF-8");
        write!(src, "({name:?}, include_bytes!({path:?})), ").unwrap();
    }
    src.push_str("];\n");
    write_if_changed(&out_dir.join("images.rs"), &src);
}

/// The value of string field `"key":"…"` in one line of cargo's JSON
/// output (`None` if absent or `null`). Only `\\`, `\"` and `\/` escapes
/// can occur in the paths cargo prints here.
fn json_string_field(line: &str, key: &str) -> Option<String> {
    let start = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Write `contents` unless the file already holds exactly that (keeps the
/// vmm crate from recompiling when nothing changed).
fn write_if_changed(path: &Path, contents: &str) {
    if std::fs::read_to_string(path).is_ok_and(|old| old == contents) {
        return;
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
