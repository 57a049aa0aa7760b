//! A system description: TOML in, a validated [`System`] out.
//!
//! Everything a user can get wrong is caught here with a message naming the
//! domain and field, before a single VM exists.
//!
//! ```toml
//! [[domain]]
//! name = "kv"
//! image = "kv"              # a built-in image, or a path to an ELF file
//! memory_mib = 8
//! stacks = 4
//! stack_kib = 64
//! exports = ["put", "get"]  # entries other domains may hold capabilities to
//! capabilities = ["logger.append"]   # slot 0, 1, … of this domain
//! stack_policy = "block"    # or "fail": what a call does when no stack is free
//! max_spawned = 4           # threads its guest may `spawn` and have running
//! ipc = "migrate"           # or "message": server threads, for comparison
//!
//! [[thread]]
//! domain = "client"
//! entry = "main"
//! args = [1000]
//! ```

use serde::Deserialize;
use shared_abi::layout::{MAX_MEMORY, MAX_VCPUS, PAGE_SIZE};
use shared_abi::MAX_SCALARS;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or unknown.
    #[error("manifest is not valid")]
    Parse(#[from] toml::de::Error),
    /// A rule about the described system was broken.
    #[error("manifest: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    domain: Vec<RawDomain>,
    #[serde(default)]
    thread: Vec<RawThread>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: String,
    image: String,
    #[serde(default = "default_memory_mib")]
    memory_mib: u64,
    #[serde(default = "default_stacks")]
    stacks: u32,
    #[serde(default = "default_stack_kib")]
    stack_kib: u64,
    #[serde(default)]
    exports: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    stack_policy: StackPolicy,
    #[serde(default = "default_max_spawned")]
    max_spawned: u32,
    #[serde(default)]
    ipc: Ipc,
}

fn default_max_spawned() -> u32 {
    4
}

fn default_memory_mib() -> u64 {
    16
}
fn default_stacks() -> u32 {
    4
}
fn default_stack_kib() -> u64 {
    64
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThread {
    domain: String,
    entry: String,
    #[serde(default)]
    args: Vec<u64>,
}

/// What a call does when the callee's stack pool is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StackPolicy {
    /// Wait until another thread gives a stack back (never for a stack only
    /// the caller itself holds: that is `NoStack`, not a deadlock).
    #[default]
    Block,
    /// Fail at once with `NoStack`.
    Fail,
}

/// How calls into a domain are carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Ipc {
    /// The calling thread itself migrates into the domain (Ferry's design).
    #[default]
    Migrate,
    /// Message passing, for comparison: the domain has its own server
    /// threads (one per stack); a call hands the request and its argument
    /// list to one of them and waits for the reply.
    Message,
}

/// Where a domain's image comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageSource {
    /// One of the images built into the `ferry` binary.
    Builtin(String),
    /// An ELF file on disk.
    File(PathBuf),
}

/// A capability: the right to call `entry` of domain `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilitySpec {
    /// Index of the target domain in [`System::domains`].
    pub domain: usize,
    /// The entry's name.
    pub entry: String,
}

/// One validated domain.
#[derive(Clone, Debug)]
pub struct DomainSpec {
    /// Unique name.
    pub name: String,
    /// Its image.
    pub image: ImageSource,
    /// Bytes of guest memory.
    pub memory: u64,
    /// Stacks in the pool (also the most vCPUs it will have).
    pub stacks: u32,
    /// Bytes per stack.
    pub stack_size: u64,
    /// Entries others may hold capabilities to (checked against the image).
    pub exports: Vec<String>,
    /// Slot `i` → capability `i`.
    pub capabilities: Vec<CapabilitySpec>,
    /// What a call does when the pool is empty.
    pub stack_policy: StackPolicy,
    /// Most threads its guests may have spawned and running at once.
    pub max_spawned: u32,
    /// How calls into it are carried out.
    pub ipc: Ipc,
}

/// One initial thread.
#[derive(Clone, Debug)]
pub struct ThreadSpec {
    /// Index of its home domain.
    pub domain: usize,
    /// The entry it starts in.
    pub entry: String,
    /// Its scalars (at most 6).
    pub args: Vec<u64>,
}

/// A validated system description.
#[derive(Clone, Debug)]
pub struct System {
    /// The domains, in manifest order (a domain's id is its index).
    pub domains: Vec<DomainSpec>,
    /// The initial threads.
    pub threads: Vec<ThreadSpec>,
}

/// The demo system `ferry run` boots when given no manifest.
pub const DEMO_MANIFEST: &str = include_str!("../../../manifests/demo.toml");

impl System {
    /// Read and validate the manifest at `path`; a relative image path is
    /// taken relative to the manifest's directory.
    pub fn from_file(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path.parent())
    }

    /// Validate manifest text; relative image paths resolve against `base`.
    pub fn parse(text: &str, base: Option<&Path>) -> Result<Self, ManifestError> {
        let raw: RawManifest = toml::from_str(text)?;
        if raw.domain.is_empty() {
            return Err(invalid("no [[domain]] is described"));
        }
        if raw.domain.len() > 4096 {
            return Err(invalid("more than 4096 domains"));
        }
        let mut names = HashSet::new();
        for d in &raw.domain {
            if d.name.is_empty() || d.name.contains('.') {
                return Err(invalid(format!(
                    "domain name `{}` must be non-empty and contain no `.`",
                    d.name
                )));
            }
            if !names.insert(d.name.as_str()) {
                return Err(invalid(format!("domain `{}` is described twice", d.name)));
            }
        }
        let index_of = |name: &str| raw.domain.iter().position(|d| d.name == name);
        let mut domains = Vec::with_capacity(raw.domain.len());
        for d in &raw.domain {
            let memory = d
                .memory_mib
                .checked_mul(1 << 20)
                .filter(|m| (1 << 20..=MAX_MEMORY).contains(m))
                .ok_or_else(|| {
                    invalid(format!(
                        "domain `{}`: memory_mib = {} (must be 1..={})",
                        d.name,
                        d.memory_mib,
                        MAX_MEMORY >> 20
                    ))
                })?;
            if d.stacks == 0 || d.stacks > MAX_VCPUS {
                return Err(invalid(format!(
                    "domain `{}`: stacks = {} (must be 1..={MAX_VCPUS})",
                    d.name, d.stacks
                )));
            }
            let stack_size = d
                .stack_kib
                .checked_mul(1024)
                .filter(|s| *s >= 2 * PAGE_SIZE && s % PAGE_SIZE == 0 && *s <= memory);
            let stack_size = stack_size.ok_or_else(|| {
                invalid(format!("domain `{}`: stack_kib = {} (must be a multiple of 4, at least 8, within memory)", d.name, d.stack_kib))
            })?;
            let mut exports = HashSet::new();
            for e in &d.exports {
                if e.is_empty()
                    || e.len() > shared_abi::ENTRY_NAME_MAX
                    || !exports.insert(e.as_str())
                {
                    return Err(invalid(format!(
                        "domain `{}`: export `{e}` is empty, too long or listed twice",
                        d.name
                    )));
                }
            }
            let image = if d.image.contains('/') || d.image.ends_with(".elf") {
                let p = PathBuf::from(&d.image);
                ImageSource::File(match base {
                    Some(b) if p.is_relative() => b.join(p),
                    _ => p,
                })
            } else {
                ImageSource::Builtin(d.image.clone())
            };
            domains.push(DomainSpec {
                name: d.name.clone(),
                image,
                memory,
                stacks: d.stacks,
                stack_size,
                exports: d.exports.clone(),
                capabilities: Vec::new(),
                stack_policy: d.stack_policy,
                max_spawned: d.max_spawned,
                ipc: d.ipc,
            });
        }
        for (i, d) in raw.domain.iter().enumerate() {
            let mut caps = Vec::with_capacity(d.capabilities.len());
            for c in &d.capabilities {
                let (target, entry) = c.split_once('.').ok_or_else(|| {
                    invalid(format!(
                        "domain `{}`: capability `{c}` is not `domain.entry`",
                        d.name
                    ))
                })?;
                let t = index_of(target).ok_or_else(|| {
                    invalid(format!(
                        "domain `{}`: capability `{c}` names unknown domain `{target}`",
                        d.name
                    ))
                })?;
                if !raw
                    .domain
                    .get(t)
                    .is_some_and(|td| td.exports.iter().any(|e| e == entry))
                {
                    return Err(invalid(format!(
                        "domain `{}`: capability `{c}`: domain `{target}` does not export `{entry}`",
                        d.name
                    )));
                }
                caps.push(CapabilitySpec {
                    domain: t,
                    entry: entry.to_owned(),
                });
            }
            if let Some(spec) = domains.get_mut(i) {
                spec.capabilities = caps;
            }
        }
        let mut threads = Vec::with_capacity(raw.thread.len());
        for t in &raw.thread {
            let d = index_of(&t.domain)
                .ok_or_else(|| invalid(format!("thread names unknown domain `{}`", t.domain)))?;
            if !raw
                .domain
                .get(d)
                .is_some_and(|dd| dd.exports.contains(&t.entry))
            {
                return Err(invalid(format!(
                    "thread starts in `{}.{}`, which is not exported",
                    t.domain, t.entry
                )));
            }
            if t.args.len() > MAX_SCALARS {
                return Err(invalid(format!(
                    "thread in `{}.{}` has {} args (at most {MAX_SCALARS})",
                    t.domain,
                    t.entry,
                    t.args.len()
                )));
            }
            threads.push(ThreadSpec {
                domain: d,
                entry: t.entry.clone(),
                args: t.args.clone(),
            });
        }
        Ok(Self { domains, threads })
    }

    /// The demo system.
    pub fn demo() -> Result<Self, ManifestError> {
        Self::parse(DEMO_MANIFEST, None)
    }

    /// The index of the domain called `name`.
    pub fn domain_index(&self, name: &str) -> Option<usize> {
        self.domains.iter().position(|d| d.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        [[domain]]
        name = "a"
        image = "testguest"
        exports = ["x"]
        capabilities = ["b.y"]
        [[domain]]
        name = "b"
        image = "dir/b.elf"
        exports = ["y"]
        [[thread]]
        domain = "a"
        entry = "x"
        args = [1, 2]
    "#;

    #[test]
    fn parses_a_good_manifest() {
        let s = System::parse(GOOD, Some(Path::new("/m"))).unwrap();
        assert_eq!(s.domains.len(), 2);
        assert_eq!(
            s.domains[0].capabilities,
            vec![CapabilitySpec {
                domain: 1,
                entry: "y".into()
            }]
        );
        assert_eq!(
            s.domains[1].image,
            ImageSource::File(PathBuf::from("/m/dir/b.elf"))
        );
        assert_eq!(s.domains[0].stack_size, 64 * 1024);
        assert_eq!(s.threads[0].args, vec![1, 2]);
    }

    #[test]
    fn demo_manifest_is_valid() {
        System::demo().unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (GOOD.replace("b.y", "c.y"), "unknown domain `c`"),
            (GOOD.replace("b.y", "b.z"), "does not export `z`"),
            (GOOD.replace("b.y", "by"), "is not `domain.entry`"),
            (
                GOOD.replace("name = \"b\"", "name = \"a\""),
                "described twice",
            ),
            (
                GOOD.replace("entry = \"x\"", "entry = \"q\""),
                "not exported",
            ),
            (
                GOOD.replace("exports = [\"x\"]", "exports = [\"x\"]\nstacks = 0"),
                "stacks = 0",
            ),
            (
                GOOD.replace("exports = [\"x\"]", "exports = [\"x\"]\nstack_kib = 5"),
                "stack_kib = 5",
            ),
            (
                GOOD.replace(
                    "exports = [\"x\"]",
                    "exports = [\"x\"]\nmemory_mib = 100000",
                ),
                "memory_mib",
            ),
            (
                GOOD.replace("exports = [\"x\"]", "exports = [\"x\"]\ncolour = 1"),
                "unknown field",
            ),
            ("".to_owned(), "no [[domain]]"),
        ];
        for (text, want) in cases {
            let err = System::parse(&text, None).unwrap_err();
            let err = match std::error::Error::source(&err) {
                Some(cause) => format!("{err}: {cause}"),
                None => err.to_string(),
            };
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1000))]

        /// A manifest is user input: whatever the text, parsing answers Ok
        /// or a ManifestError, never a panic. Mutations of the demo manifest
        /// reach far deeper than random text does.
        #[test]
        fn parsing_never_panics(cut in 0usize..2000, len in 0usize..40, junk in "[ -~\\n]{0,40}") {
            let demo = DEMO_MANIFEST;
            let at = demo.char_indices().map(|(i, _)| i).find(|i| *i >= cut % demo.len().max(1)).unwrap_or(0);
            let end = demo.char_indices().map(|(i, _)| i).find(|i| *i >= at + len).unwrap_or(demo.len());
            let mutated = format!("{}{}{}", &demo[..at], junk, &demo[end..]);
            let _ = System::parse(&mutated, None);
            let _ = System::parse(&junk, None);
        }
    }
}
