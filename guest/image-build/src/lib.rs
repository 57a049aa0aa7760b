//! Build-script helper of a Ferry guest image, for images built outside
//! this repository (`ferry new`'s template uses it as a build-dependency).
//!
//! A guest image is a static ELF linked at `shared_abi::layout::IMAGE_BASE`
//! by Ferry's linker script, with `panic = "abort"` and the guest
//! code-generation flags. Link arguments emitted by a *dependency's* build
//! script do not reach a binary, so every image's own `build.rs` must emit
//! them; this crate makes that one line:
//!
//! ```no_run
//! // The body of `main` in a guest image's build.rs:
//! ferry_image_build::link_image();
//! ```
//!
//! The linker script is `guest/link.ld` of the checkout this crate comes
//! from, embedded at compile time and written to `OUT_DIR`, so a project
//! outside the repository needs no copy of it. The images inside the
//! repository use this crate too (each `images/*/build.rs`).

use std::ffi::OsStr;
use std::fmt;
use std::path::{Path, PathBuf};

/// Ferry's guest linker script (`guest/link.ld`), embedded so that it
/// travels with this crate wherever the image is built.
pub const LINKER_SCRIPT: &str = include_str!("../../link.ld");

/// File name of the linker script written to `OUT_DIR`.
pub const LINKER_SCRIPT_NAME: &str = "ferry-guest.ld";

/// The target every guest is built for. It must be given explicitly
/// (`--target`, or `build.target` in `.cargo/config.toml`): only then does
/// cargo keep [`GUEST_RUSTFLAGS`] off proc-macros and build scripts, which
/// do not link with them.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Code-generation flags every guest crate is built with (the engine's
/// build script uses this list; `scripts/check.sh` repeats it).
pub const GUEST_RUSTFLAGS: &[&str] = &[
    // Fixed link address, no GOT-relative code: a plain ET_EXEC.
    "-Crelocation-model=static",
    // Harmless at CPL3 today, but keeps guest code valid should anything
    // ever run on the guest's own stack at CPL0.
    "-Cno-redzone=yes",
    // Baseline x86-64 (SSE2): the VMM enables SSE but not XSAVE/AVX.
    "-Ctarget-cpu=x86-64",
];

/// Linker arguments of every guest binary, before `-T <script>`: a static,
/// non-PIE ELF without the C runtime, build id or RELRO. Link arguments
/// emitted by a dependency's build script do not reach a binary, hence a
/// `build.rs` in every image that calls [`link_image`].
pub const LINK_ARGS: &[&str] = &[
    "-nostdlib",
    "-static",
    "-no-pie",
    "-Wl,--gc-sections",
    "-Wl,--build-id=none",
    "-Wl,-z,norelro",
    "-Wl,-z,noexecstack",
];

/// Environment variables of an outer cargo build that must not reach a
/// nested guest build (they would change its flags, target, profile or
/// directories): the engine's build script and the template's test both
/// start one.
pub const OUTER_CARGO_ENV: &[&str] = &[
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_WRAPPER",
    "RUSTC_LINKER",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
];

/// Prefixes of the outer build's per-profile, per-target and per-package
/// variables, removed alike.
pub const OUTER_CARGO_ENV_PREFIXES: &[&str] = &[
    "CARGO_PROFILE_",
    "CARGO_TARGET_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_PKG_",
    "CARGO_BIN_",
    "DEP_",
];

/// Remove from `cmd` every variable of this process's environment that
/// [`OUTER_CARGO_ENV`] or [`OUTER_CARGO_ENV_PREFIXES`] names, so a nested
/// cargo builds as if started from a clean shell.
pub fn remove_outer_cargo_env(cmd: &mut std::process::Command) {
    for (key, _) in std::env::vars_os() {
        let Some(k) = key.to_str() else { continue };
        if OUTER_CARGO_ENV.contains(&k) || OUTER_CARGO_ENV_PREFIXES.iter().any(|p| k.starts_with(p))
        {
            cmd.env_remove(&key);
        }
    }
}

/// Why an image's build cannot go on. Each message is one sentence naming
/// the fix.
#[derive(Debug)]
pub enum BuildError {
    /// Cargo did not set a variable every build script gets.
    MissingEnv(&'static str),
    /// The image is being built for another target than [`GUEST_TARGET`].
    WrongTarget(String),
    /// A flag of [`GUEST_RUSTFLAGS`] is not among the target's flags.
    MissingFlag(&'static str),
    /// The linker script could not be written.
    Write(PathBuf, std::io::Error),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingEnv(v) => write!(
                f,
                "{v} is not set: call ferry_image_build from a build script run by cargo"
            ),
            Self::WrongTarget(t) => write!(
                f,
                "a Ferry guest image is built for {GUEST_TARGET}, not {t}: set build.target = \"{GUEST_TARGET}\" in .cargo/config.toml"
            ),
            Self::MissingFlag(flag) => write!(
                f,
                "the guest code-generation flag {flag} is missing: set [target.{GUEST_TARGET}] rustflags = {GUEST_RUSTFLAGS:?} in .cargo/config.toml, build with an explicit --target (or build.target), and unset RUSTFLAGS, which replaces them"
            ),
            Self::Write(p, e) => write!(f, "cannot write the linker script {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for BuildError {}

/// What a build script prints for an image: the `cargo:` lines, in order.
/// Split from [`link_image`] so it can be checked without cargo.
pub fn directives(script: &Path) -> Vec<String> {
    let mut out: Vec<String> = LINK_ARGS
        .iter()
        .map(|a| format!("cargo:rustc-link-arg-bins={a}"))
        .collect();
    out.push(format!(
        "cargo:rustc-link-arg-bins=-Wl,-T,{}",
        script.display()
    ));
    out.push("cargo:rerun-if-changed=build.rs".to_owned());
    out
}

/// Check the build script's environment (target and flags, as cargo gives
/// them to build scripts) before linking anything.
///
/// `target` is `TARGET`; `encoded_rustflags` is `CARGO_ENCODED_RUSTFLAGS`
/// (the target's flags, `\x1f`-separated).
pub fn check_env(target: &str, encoded_rustflags: &str) -> Result<(), BuildError> {
    if target != GUEST_TARGET {
        return Err(BuildError::WrongTarget(target.to_owned()));
    }
    let flags: Vec<&str> = encoded_rustflags.split('\x1f').collect();
    for flag in GUEST_RUSTFLAGS {
        if !flags.contains(flag) {
            return Err(BuildError::MissingFlag(flag));
        }
    }
    Ok(())
}

/// Check the environment, write the linker script to `out_dir` and answer
/// the directives to print.
pub fn prepare(
    out_dir: &Path,
    target: &str,
    encoded_rustflags: &str,
) -> Result<Vec<String>, BuildError> {
    check_env(target, encoded_rustflags)?;
    let script = out_dir.join(LINKER_SCRIPT_NAME);
    if std::fs::read_to_string(&script).ok().as_deref() != Some(LINKER_SCRIPT) {
        std::fs::write(&script, LINKER_SCRIPT).map_err(|e| BuildError::Write(script.clone(), e))?;
    }
    Ok(directives(&script))
}

/// Everything an image's `build.rs` must do: check that it is built for
/// the guest target with the guest flags, write the linker script to
/// `OUT_DIR` and emit the link arguments. Fails the build with one sentence
/// naming the fix when the environment is wrong.
pub fn link_image() {
    let var = |name: &'static str| std::env::var_os(name).ok_or(BuildError::MissingEnv(name));
    let result = var("OUT_DIR").and_then(|out| {
        let target = var("TARGET")?;
        // Absent when no flags are set at all: then every flag is missing.
        let flags = std::env::var_os("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
        prepare(
            Path::new(&out),
            &target.to_string_lossy(),
            &OsStr::to_string_lossy(&flags),
        )
    });
    match result {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
        }
        Err(e) => {
            // A build script reports by failing; cargo shows this line.
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: &str = "-Crelocation-model=static\x1f-Cno-redzone=yes\x1f-Ctarget-cpu=x86-64";

    #[test]
    fn the_embedded_script_is_guest_link_ld() {
        let on_disk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../link.ld"))
            .expect("guest/link.ld");
        assert_eq!(LINKER_SCRIPT, on_disk);
        assert!(LINKER_SCRIPT.contains("ENTRY(_start)"));
    }

    #[test]
    fn the_directives_link_every_binary_with_the_script() {
        let d = directives(Path::new("/o/ferry-guest.ld"));
        assert_eq!(d.len(), LINK_ARGS.len() + 2);
        assert_eq!(d[0], "cargo:rustc-link-arg-bins=-nostdlib");
        assert_eq!(
            d[LINK_ARGS.len()],
            "cargo:rustc-link-arg-bins=-Wl,-T,/o/ferry-guest.ld"
        );
    }

    #[test]
    fn the_flags_are_those_the_in_tree_images_are_built_with() {
        let check = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/check.sh"
        ))
        .expect("scripts/check.sh");
        let printf = GUEST_RUSTFLAGS.join("\\x1f");
        assert!(check.contains(&printf), "check.sh lacks {printf}");
    }

    #[test]
    fn a_wrong_target_or_a_missing_flag_is_refused() {
        assert!(check_env(GUEST_TARGET, FLAGS).is_ok());
        let e = check_env("aarch64-unknown-linux-gnu", FLAGS).unwrap_err();
        assert!(e.to_string().contains("build.target"), "{e}");
        let e = check_env(GUEST_TARGET, "-Cno-redzone=yes\x1f-Ctarget-cpu=x86-64").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the guest code-generation flag -Crelocation-model=static is missing"),
            "{e}"
        );
        assert!(matches!(
            check_env(GUEST_TARGET, ""),
            Err(BuildError::MissingFlag(_))
        ));
    }

    #[test]
    fn prepare_writes_the_script_once_and_points_the_linker_at_it() {
        let dir = std::env::temp_dir().join(format!("ferry-image-build-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines = prepare(&dir, GUEST_TARGET, FLAGS).unwrap();
        let script = dir.join(LINKER_SCRIPT_NAME);
        assert_eq!(std::fs::read_to_string(&script).unwrap(), LINKER_SCRIPT);
        assert!(lines.contains(&format!(
            "cargo:rustc-link-arg-bins=-Wl,-T,{}",
            script.display()
        )));
        assert!(prepare(&dir, "x", FLAGS).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
