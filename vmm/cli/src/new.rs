//! `ferry new NAME`: start a domain of one's own outside this repository.
//!
//! Writes a copy of the template in `templates/domain/` (embedded in the
//! binary, so `ferry` works from anywhere) with the project's name and the
//! absolute path of a Ferry checkout filled in: a standalone cargo project
//! whose plain `cargo build --release` makes a guest image, and a manifest
//! that runs it against the built-in `hasher`.

use std::path::{Path, PathBuf};

/// Longest project name: the name also names the image, and names in the
/// ABI (domains, entries, interfaces) are at most 32 bytes.
pub const MAX_NAME: usize = 32;

/// The template's files, relative path and text, as in `templates/domain/`.
const FILES: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../templates/domain/Cargo.toml"),
    ),
    (
        ".cargo/config.toml",
        include_str!("../../../templates/domain/.cargo/config.toml"),
    ),
    (
        "build.rs",
        include_str!("../../../templates/domain/build.rs"),
    ),
    (
        "src/main.rs",
        include_str!("../../../templates/domain/src/main.rs"),
    ),
    (
        "manifest.toml",
        include_str!("../../../templates/domain/manifest.toml"),
    ),
    (
        "README.md",
        include_str!("../../../templates/domain/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../../templates/domain/.gitignore"),
    ),
];

/// The project name the template is written with (so that it also builds
/// in place, inside the checkout); replaced by the new project's name.
const TEMPLATE_NAME: &str = "my-domain";

/// How the template reaches the checkout from `templates/domain/`;
/// replaced by the checkout's absolute path and a `/`.
const TEMPLATE_REPO: &str = "../../";

/// What a checkout must hold for the project to build: the crates the
/// template depends on by path.
const REQUIRED: &[&str] = &[
    "guest/Cargo.toml",
    "guest/image-build/Cargo.toml",
    "interfaces/ferry-interface/Cargo.toml",
    "interfaces/hasher-api/Cargo.toml",
];

/// The guest workspace's lock file, copied into the project when the
/// checkout has one, so that its first build uses the dependency versions
/// Ferry's own images are built with (and needs no registry lookup).
const GUEST_LOCK: &str = "guest/Cargo.lock";

/// The checkout this binary was built from.
const BUILT_FROM: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Names cargo or rustc would refuse or confuse: Rust keywords, the
/// built-in crates, directories of a target dir, and the template's own
/// dependencies (after `-` → `_`).
const RESERVED: &[&str] = &[
    "as",
    "async",
    "await",
    "break",
    "const",
    "continue",
    "crate",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "fn",
    "for",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "match",
    "mod",
    "move",
    "mut",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "type",
    "unsafe",
    "use",
    "where",
    "while",
    "abstract",
    "become",
    "box",
    "do",
    "final",
    "gen",
    "macro",
    "override",
    "priv",
    "try",
    "typeof",
    "unsized",
    "virtual",
    "yield",
    "core",
    "std",
    "alloc",
    "proc_macro",
    "test",
    "build",
    "deps",
    "examples",
    "incremental",
    "ferry_guest",
    "ferry_interface",
    "hasher_api",
    "ferry_image_build",
    "shared_abi",
];

/// Why `ferry new` made nothing. Each message is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a cargo package and image name.
    #[error("`{name}` cannot be a project name: {why}")]
    BadName {
        /// The name as given.
        name: String,
        /// Which rule it breaks.
        why: String,
    },
    /// `ferry new` never writes into an existing directory.
    #[error("{} already exists: ferry new only creates a new directory (choose another NAME or --path)", .0.display())]
    Exists(PathBuf),
    /// The checkout lacks a crate the project depends on.
    #[error("{} is not a Ferry checkout (it has no {missing}): pass --ferry with the path of one", dir.display())]
    NotACheckout {
        /// The directory given or built from.
        dir: PathBuf,
        /// The first required file missing.
        missing: &'static str,
    },
    /// The checkout's path cannot be written into a TOML string as is.
    #[error("the Ferry checkout path {} cannot be written into Cargo.toml (it is not UTF-8, or holds a quote, a backslash or a control character)", .0.display())]
    UnwritablePath(PathBuf),
    /// Creating the directory or a file failed (nothing is left behind).
    #[error("cannot write {}", path.display())]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Check `name` against cargo's and the ABI's rules; `Err` says which rule.
pub fn check_name(name: &str) -> Result<(), NewError> {
    let bad = |why: String| NewError::BadName {
        name: name.to_owned(),
        why,
    };
    if name.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if name.len() > MAX_NAME {
        return Err(bad(format!(
            "it is {} bytes long, and a name is at most {MAX_NAME}",
            name.len()
        )));
    }
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) || !ok_chars {
        return Err(bad(
            "a name starts with an ASCII letter and holds only ASCII letters, digits, `-` and `_`"
                .into(),
        ));
    }
    let ident = name.replace('-', "_");
    if RESERVED.contains(&ident.as_str()) {
        return Err(bad(
            "it is a Rust keyword, a built-in crate, a cargo directory or a crate the project depends on"
                .into(),
        ));
    }
    Ok(())
}

/// The checkout to point the project at: `ferry` (as given on the command
/// line) or the one this binary was built from, checked to hold every
/// crate the template needs.
pub fn checkout(ferry: Option<&Path>) -> Result<PathBuf, NewError> {
    let given = ferry.unwrap_or(Path::new(BUILT_FROM));
    let dir = given.canonicalize().unwrap_or_else(|_| given.to_owned());
    if let Some(missing) = REQUIRED.iter().find(|f| !dir.join(f).is_file()) {
        return Err(NewError::NotACheckout { dir, missing });
    }
    Ok(dir)
}

/// The template's files with `name` and the checkout `repo` filled in.
pub fn render(name: &str, repo: &Path) -> Result<Vec<(&'static str, String)>, NewError> {
    let repo_str = repo
        .to_str()
        .filter(|s| !s.chars().any(|c| c == '"' || c == '\\' || c.is_control()))
        .ok_or_else(|| NewError::UnwritablePath(repo.to_owned()))?;
    let repo_prefix = format!("{}/", repo_str.trim_end_matches('/'));
    Ok(FILES
        .iter()
        .map(|(path, text)| {
            let text = text
                .replace(TEMPLATE_NAME, name)
                .replace(TEMPLATE_REPO, &repo_prefix);
            (*path, text)
        })
        .collect())
}

/// Create project `name` in `dir` (default `./NAME`) against the checkout
/// `ferry` (default: the one this binary was built from); answer the
/// directory. Refuses an invalid name and an existing directory; on a write
/// error removes what it created.
pub fn create(name: &str, dir: Option<&Path>, ferry: Option<&Path>) -> Result<PathBuf, NewError> {
    check_name(name)?;
    let dir = dir.map_or_else(|| PathBuf::from(name), Path::to_owned);
    if dir.exists() || dir.is_symlink() {
        return Err(NewError::Exists(dir));
    }
    let repo = checkout(ferry)?;
    let mut files = render(name, &repo)?;
    if let Ok(lock) = std::fs::read_to_string(repo.join(GUEST_LOCK)) {
        files.push(("Cargo.lock", lock));
    }
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| NewError::Write { path, source }
    };
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(write_err(parent))?;
    }
    // Fails if the directory appeared since the check: never write into
    // one we did not create.
    std::fs::create_dir(&dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            NewError::Exists(dir.clone())
        } else {
            write_err(&dir)(e)
        }
    })?;
    let written = write_all(&dir, &files);
    if written.is_err() {
        // Ours alone: created just above.
        let _ = std::fs::remove_dir_all(&dir);
    }
    written.map(|()| dir)
}

/// Write `files` under `dir`, creating their directories.
fn write_all(dir: &Path, files: &[(&str, String)]) -> Result<(), NewError> {
    for (rel, text) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| NewError::Write {
                path: parent.to_owned(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| NewError::Write {
            path: path.clone(),
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        checkout(None).expect("built from a checkout")
    }

    #[test]
    fn names_follow_cargo_and_the_abi() {
        for ok in ["greeter", "my-domain", "a", "kv_2", &"x".repeat(MAX_NAME)] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            (&"x".repeat(MAX_NAME + 1), "33 bytes long"),
            ("2fast", "starts with an ASCII letter"),
            ("-x", "starts with an ASCII letter"),
            ("a.b", "only ASCII letters"),
            ("a b", "only ASCII letters"),
            ("zähler", "only ASCII letters"),
            ("fn", "Rust keyword"),
            ("test", "Rust keyword"),
            ("ferry-guest", "depends on"),
        ] {
            let e = check_name(bad).expect_err(bad).to_string();
            assert!(
                e.starts_with(&format!("`{bad}` cannot be a project name: ")),
                "{e}"
            );
            assert!(e.contains(why), "{bad}: {e}");
            assert_eq!(e.lines().count(), 1);
        }
    }

    #[test]
    fn rendering_fills_in_the_name_and_the_checkout_everywhere() {
        let repo = repo();
        let files = render("greeter-x", &repo).unwrap();
        assert_eq!(files.len(), FILES.len());
        for (path, text) in &files {
            assert!(
                !text.contains(TEMPLATE_NAME),
                "{path} still names the template"
            );
            assert!(
                !text.contains(TEMPLATE_REPO),
                "{path} still has a relative path"
            );
        }
        let get = |p: &str| &files.iter().find(|(f, _)| *f == p).unwrap().1;
        let cargo: toml::Table = toml::from_str(get("Cargo.toml")).unwrap();
        assert_eq!(cargo["package"]["name"].as_str(), Some("greeter-x"));
        assert!(cargo.contains_key("workspace"), "a workspace of its own");
        for profile in ["dev", "release"] {
            assert_eq!(cargo["profile"][profile]["panic"].as_str(), Some("abort"));
        }
        // Every path dependency is an absolute path into the checkout.
        let deps = cargo["dependencies"].as_table().unwrap().iter();
        let build_deps = cargo["build-dependencies"].as_table().unwrap().iter();
        let mut n = 0;
        for (dep, spec) in deps.chain(build_deps) {
            let p = Path::new(spec["path"].as_str().unwrap());
            assert!(
                p.is_absolute() && p.starts_with(&repo),
                "{dep}: {}",
                p.display()
            );
            assert!(p.join("Cargo.toml").is_file(), "{dep}: {}", p.display());
            n += 1;
        }
        assert_eq!(n, 4);
        let manifest: toml::Table = toml::from_str(get("manifest.toml")).unwrap();
        assert_eq!(
            manifest["domain"][0]["image"].as_str(),
            Some("target/x86_64-unknown-linux-gnu/release/greeter-x")
        );
        assert_eq!(manifest["domain"][1]["image"].as_str(), Some("hasher"));
    }

    #[test]
    fn the_template_builds_for_the_guest_target_with_the_guest_flags() {
        let config = FILES
            .iter()
            .find(|(f, _)| *f == ".cargo/config.toml")
            .unwrap()
            .1;
        let config: toml::Table = toml::from_str(config).unwrap();
        let target = ferry_image_build::GUEST_TARGET;
        assert_eq!(config["build"]["target"].as_str(), Some(target));
        let flags: Vec<&str> = config["target"][target]["rustflags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert_eq!(flags, ferry_image_build::GUEST_RUSTFLAGS);
    }

    #[test]
    fn the_embedded_files_are_the_template_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/domain");
        let mut on_disk = Vec::new();
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(&dir).unwrap().to_str().unwrap().to_owned();
                if rel == "target" || rel == "Cargo.lock" {
                    continue; // an in-place build's output
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(f, _)| (*f).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "templates/domain/ and FILES disagree");
    }

    #[test]
    fn an_unwritable_checkout_path_is_refused() {
        let e = render("x", Path::new("/tmp/a\"b")).unwrap_err();
        assert!(matches!(e, NewError::UnwritablePath(_)), "{e}");
        let e = checkout(Some(Path::new("/nonexistent/ferry"))).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/nonexistent/ferry is not a Ferry checkout (it has no guest/Cargo.toml): pass --ferry with the path of one"
        );
    }

    #[test]
    fn create_writes_every_file_and_refuses_an_existing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/proj");
        assert_eq!(create("proj", Some(&dir), None).unwrap(), dir);
        for (f, _) in FILES {
            assert!(dir.join(f).is_file(), "{f}");
        }
        assert_eq!(
            std::fs::read_to_string(dir.join("Cargo.lock")).unwrap(),
            std::fs::read_to_string(repo().join(GUEST_LOCK)).unwrap()
        );
        let e = create("proj", Some(&dir), None).unwrap_err();
        assert!(matches!(e, NewError::Exists(_)), "{e}");
        assert!(e.to_string().ends_with("already exists: ferry new only creates a new directory (choose another NAME or --path)"));
        let e = create("x y", Some(&tmp.path().join("other")), None).unwrap_err();
        assert!(matches!(e, NewError::BadName { .. }));
        assert!(
            !tmp.path().join("other").exists(),
            "nothing made for a bad name"
        );
    }
}
