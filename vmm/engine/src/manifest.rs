//! A system description: TOML (or a [`Document`] built by code) in, a
//! validated [`System`] out.
//!
//! Everything a user can get wrong is caught here, as a [`ManifestError`]
//! variant whose message names the domain and field, before a single VM
//! exists. Code that generates a system builds a [`Document`] rather than
//! formatting TOML, and can serialize it with `toml::to_string`.
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
//! stack_policy = "block"    # or "fail", or "grow": what a call does when no stack is free
//! # stack_max = 16          # with "grow": the most stacks the pool grows to
//! # grow_fallback = "block" # with "grow", at stack_max: "block" (default) or "fail"
//! max_spawned = 4           # its spawned threads alive or not yet reclaimed
//! ipc = "migrate"           # or "message": server threads, for comparison
//! budget_ms = 1000          # CPU budget of each call into it, or "unlimited"
//! wait_ms = 2000            # wall-clock limit of each wait for it, or "unlimited"
//! restart_ms = 1000         # time its restart may take (finite)
//! huge_pages = false        # back its memory with 2 MiB pages (large copies)
//! stack = "pool"            # or "mapped": callees run on the calling thread's
//!                           # own stack, mapped at one address in every domain
//!
//! [stacks]                  # the stack window of `mapped` domains (optional)
//! mapping = "premapped"     # or "on-call": when a thread's stack is mapped
//! window_kib = 256          # bytes of each thread's window stack
//!
//! [[thread]]
//! domain = "client"
//! entry = "main"
//! args = [1000]
//! ```
//!
//! `stack_policy = "grow"` is the doors way: the domain reserves `stacks`
//! stacks at boot (1 is enough) and adds one, up to `stack_max`, each time
//! a call finds the pool empty; at `stack_max` the call blocks or fails as
//! `grow_fallback` says. The layout reserves address space for `stack_max`
//! stacks (the memory-size check counts them all, and the heap never
//! moves), but only the stacks a call uses are touched, and their vCPUs are
//! created then. A restart returns the pool to its `stacks`.

use serde::{Deserialize, Serialize};
use shared_abi::layout::{
    WindowLayout, MAPPED_MIN_STACK, MAX_MEMORY, MAX_VCPUS, PAGE_SIZE, STACK_WINDOW_SIZE,
};
use shared_abi::MAX_SCALARS;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Most domains one system may have.
pub const MAX_DOMAINS: usize = 4096;

/// Why a manifest was refused. Each rule has its own variant, so a caller
/// (or a test) can match on what was wrong rather than on message text.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file named on the command line is missing or unreadable.
    #[error("cannot read manifest {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The text is not TOML of the expected shape: a syntax error, a field
    /// of the wrong type, or an unknown field (typos are refused, not ignored).
    #[error("manifest is not valid")]
    Parse(#[from] toml::de::Error),
    /// A system needs at least one domain to run anything in.
    #[error("manifest: no [[domain]] is described")]
    NoDomains,
    /// Domain ids must fit the ABI's domain numbering.
    #[error("manifest: {count} domains (at most {MAX_DOMAINS})")]
    TooManyDomains {
        /// How many were described.
        count: usize,
    },
    /// A capability is written `domain.entry`, so a name with a `.` (or
    /// none at all) could never be referred to.
    #[error("manifest: domain name `{name}` must be non-empty and contain no `.`")]
    BadDomainName {
        /// The name as written.
        name: String,
    },
    /// A guest's capability table names the domain it calls in a field of
    /// [`shared_abi::ENTRY_NAME_MAX`] bytes.
    #[error(
        "manifest: domain name `{name}` is longer than {} bytes",
        shared_abi::ENTRY_NAME_MAX
    )]
    LongDomainName {
        /// The name as written.
        name: String,
    },
    /// Capabilities and threads name domains, so names must be unique.
    #[error("manifest: domain `{name}` is described twice")]
    DuplicateDomain {
        /// The repeated name.
        name: String,
    },
    /// Guest memory must hold at least the image and fit the guest layout.
    #[error("manifest: domain `{domain}`: memory_mib = {memory_mib} (must be 1..={})", MAX_MEMORY >> 20)]
    BadMemory {
        /// The domain.
        domain: String,
        /// The value as written.
        memory_mib: u64,
    },
    /// Each stack is a vCPU's, so their number is bounded by KVM's vCPUs.
    #[error("manifest: domain `{domain}`: stacks = {stacks} (must be 1..={MAX_VCPUS})")]
    BadStacks {
        /// The domain.
        domain: String,
        /// The value as written.
        stacks: u32,
    },
    /// A growing pool's maximum must hold its boot reservation, and each
    /// stack can be in use by a frame of its own, on a vCPU of its own.
    #[error("manifest: domain `{domain}`: stack_max = {stack_max} (must be stacks..={MAX_VCPUS}, stacks = {stacks}: each stack in use runs on a vCPU of its own, and a domain has at most {MAX_VCPUS})")]
    BadStackMax {
        /// The domain.
        domain: String,
        /// The boot reservation as written.
        stacks: u32,
        /// The maximum as written.
        stack_max: u32,
    },
    /// `stack_max` and `grow_fallback` mean something only to a pool that
    /// grows; `grow` needs its maximum.
    #[error("manifest: domain `{domain}`: {problem}")]
    GrowFields {
        /// The domain.
        domain: String,
        /// What is missing or out of place.
        problem: &'static str,
    },
    /// Stacks are whole pages (with a guard page) inside guest memory.
    #[error("manifest: domain `{domain}`: stack_kib = {stack_kib} (must be a multiple of 4, at least 8, within memory)")]
    BadStackSize {
        /// The domain.
        domain: String,
        /// The value as written.
        stack_kib: u64,
    },
    /// Entry names are matched against the image's entry table, which
    /// holds names of bounded length.
    #[error(
        "manifest: domain `{domain}`: export `{export}` is empty or longer than {} bytes",
        shared_abi::ENTRY_NAME_MAX
    )]
    BadExport {
        /// The domain.
        domain: String,
        /// The export as written.
        export: String,
    },
    /// An export listed twice would be ambiguous in the entry table.
    #[error("manifest: domain `{domain}`: export `{export}` is listed twice")]
    DuplicateExport {
        /// The domain.
        domain: String,
        /// The repeated export.
        export: String,
    },
    /// A capability has no `.` between the domain and the entry.
    #[error("manifest: domain `{domain}`: capability `{capability}` is not `domain.entry`")]
    BadCapability {
        /// The domain holding it.
        domain: String,
        /// The capability as written.
        capability: String,
    },
    /// A capability's target domain is not in the manifest.
    #[error(
        "manifest: domain `{domain}`: capability `{capability}` names unknown domain `{target}`"
    )]
    UnknownCapabilityDomain {
        /// The domain holding it.
        domain: String,
        /// The capability as written.
        capability: String,
        /// The missing domain.
        target: String,
    },
    /// Only exported entries may be called from outside a domain.
    #[error("manifest: domain `{domain}`: capability `{capability}`: domain `{target}` does not export `{entry}`")]
    NotExported {
        /// The domain holding it.
        domain: String,
        /// The capability as written.
        capability: String,
        /// The domain it names.
        target: String,
        /// The entry that domain does not export.
        entry: String,
    },
    /// A `[[thread]]` starts in a domain that is not in the manifest.
    #[error("manifest: thread names unknown domain `{domain}`")]
    UnknownThreadDomain {
        /// The domain as written.
        domain: String,
    },
    /// A thread can only start in an exported entry.
    #[error("manifest: thread starts in `{domain}.{entry}`, which is not exported")]
    ThreadEntryNotExported {
        /// Its domain.
        domain: String,
        /// Its entry.
        entry: String,
    },
    /// A time limit must be a number of milliseconds in range, or
    /// `"unlimited"` where that is allowed: a system that says nothing
    /// about limits still cannot hang.
    #[error("manifest: domain `{domain}`: {field} = {value} (must be 1..={MAX_LIMIT_MS}{})", if *unlimited_ok { " or \"unlimited\"" } else { "" })]
    BadLimit {
        /// The domain.
        domain: String,
        /// The field (`budget_ms`, `wait_ms`, `restart_ms`).
        field: &'static str,
        /// The value as written.
        value: String,
        /// Whether `"unlimited"` would have been accepted.
        unlimited_ok: bool,
    },
    /// A thread's window stack must hold at least a mapped-mode callee's
    /// minimum stack twice, and at least one slot must fit the window.
    #[error("manifest: [stacks] window_kib = {window_kib} (must be a multiple of 4, {}..={})", (2 * MAPPED_MIN_STACK) >> 10, (STACK_WINDOW_SIZE - PAGE_SIZE) >> 10)]
    BadWindowSize {
        /// The value as written.
        window_kib: u64,
    },
    /// A message-mode domain's calls run on its server threads' own
    /// stacks: it cannot also run callers on their mapped stacks.
    #[error("manifest: domain `{domain}`: stack = \"mapped\" needs ipc = \"migrate\"")]
    MappedMessage {
        /// The domain.
        domain: String,
    },
    /// Arguments travel in the registers of the call ABI.
    #[error("manifest: thread in `{domain}.{entry}` has {count} args (at most {MAX_SCALARS})")]
    TooManyArgs {
        /// Its domain.
        domain: String,
        /// Its entry.
        entry: String,
        /// How many args were given.
        count: usize,
    },
}

/// A manifest as written: what the TOML says, before any check. Code that
/// builds a system builds one of these (no TOML text to format) and hands
/// it to [`System::from_document`], or serializes it with `toml::to_string`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Spawned threads of all domains alive or not yet reclaimed at once
    /// (top-level `max_spawned_total`; [`DEFAULT_MAX_SPAWNED_TOTAL`] if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spawned_total: Option<u32>,
    /// The `[stacks]` table: the stack window of `mapped` domains
    /// ([`StacksEntry::default`] if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacks: Option<StacksEntry>,
    /// The `[[domain]]` tables, in order (a domain's id is its index).
    #[serde(default, rename = "domain")]
    pub domains: Vec<DomainEntry>,
    /// The `[[thread]]` tables.
    #[serde(default, rename = "thread", skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadEntry>,
}

impl Document {
    /// Add a domain (builder style).
    #[must_use]
    pub fn domain(mut self, d: DomainEntry) -> Self {
        self.domains.push(d);
        self
    }

    /// Add an initial thread (builder style).
    #[must_use]
    pub fn thread(mut self, t: ThreadEntry) -> Self {
        self.threads.push(t);
        self
    }
}

/// The `[stacks]` table as written: how the thread stacks of `mapped`
/// domains are mapped, and how large each is. System-wide, because a
/// thread's one stack is mapped at the same address in every domain.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StacksEntry {
    /// When a thread's window stack is mapped into a domain.
    #[serde(default)]
    pub mapping: Mapping,
    /// KiB of each thread's window stack.
    #[serde(default = "default_window_kib")]
    pub window_kib: u64,
}

impl Default for StacksEntry {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            window_kib: default_window_kib(),
        }
    }
}

fn default_window_kib() -> u64 {
    256
}

/// Where a call into a domain runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackMode {
    /// On a fresh stack from the domain's pool; objects are copied (Ferry's
    /// default: a callee never sees its caller's frames).
    #[default]
    Pool,
    /// On the calling thread's own stack in the stack window, below the
    /// caller's frame; objects on that stack pass as plain pointers.
    Mapped,
}

/// When a thread's window stack is mapped into a `mapped` domain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Mapping {
    /// Into every `mapped` domain the thread can reach, when it starts;
    /// unmapped when it ends.
    #[default]
    #[serde(rename = "premapped")]
    Premapped,
    /// Into a domain when a call enters it (unless a frame of the thread is
    /// there already), unmapped when that frame leaves.
    #[serde(rename = "on-call")]
    OnCall,
}

/// The validated stack window: how it is mapped and cut into slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    /// When a thread's slot is mapped.
    pub mapping: Mapping,
    /// The slots.
    pub layout: WindowLayout,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            mapping: Mapping::default(),
            layout: WindowLayout {
                stack_size: default_window_kib() << 10,
            },
        }
    }
}

/// One `[[domain]]` table as written; [`DomainEntry::new`] gives the same
/// defaults as omitted fields do in TOML.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DomainEntry {
    /// Unique name.
    pub name: String,
    /// A built-in image's name, or a path to an ELF file.
    pub image: String,
    /// Guest memory in MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Stacks in the pool.
    #[serde(default = "default_stacks")]
    pub stacks: u32,
    /// KiB per stack.
    #[serde(default = "default_stack_kib")]
    pub stack_kib: u64,
    /// Entries others may hold capabilities to.
    #[serde(default)]
    pub exports: Vec<String>,
    /// `domain.entry` per slot.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// What a call does when no stack is free.
    #[serde(default)]
    pub stack_policy: StackPolicy,
    /// With `stack_policy = "grow"`: the most stacks the pool grows to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack_max: Option<u32>,
    /// With `stack_policy = "grow"`: what a call does once the pool has
    /// `stack_max` stacks and none is free (`block` if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow_fallback: Option<GrowFallback>,
    /// Most threads its guest may have spawned and not yet reclaimed
    /// (running, or ended and not yet joined by the VMM).
    #[serde(default = "default_max_spawned")]
    pub max_spawned: u32,
    /// How calls into it are carried out.
    #[serde(default)]
    pub ipc: Ipc,
    /// CPU budget of each call into it, in ms, or `"unlimited"`.
    #[serde(default = "default_budget_ms")]
    pub budget_ms: Millis,
    /// Wall-clock limit of each wait on its behalf (a stack, a message-mode
    /// reply, its restart), in ms, or `"unlimited"`.
    #[serde(default = "default_wait_ms")]
    pub wait_ms: Millis,
    /// Time a restart of it may take, in ms (finite).
    #[serde(default = "default_restart_ms")]
    pub restart_ms: Millis,
    /// Back its memory with transparent huge pages: faster copies of
    /// large objects, at the price of its whole memory being resident
    /// (each 2 MiB page is cleared on its first touch). Off by default.
    #[serde(default)]
    pub huge_pages: bool,
    /// Where calls into it run: a pool stack, or the caller's mapped stack.
    #[serde(default)]
    pub stack: StackMode,
}

/// A time limit as written: milliseconds, or a word (only `"unlimited"`
/// is accepted, and only where the field allows it).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Millis {
    /// A number of milliseconds.
    Ms(u64),
    /// A word; `"unlimited"` is the only valid one.
    Word(String),
}

impl Millis {
    /// No limit.
    pub fn unlimited() -> Self {
        Self::Word(UNLIMITED.into())
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ms(n) => write!(f, "{n}"),
            Self::Word(w) => write!(f, "{w:?}"),
        }
    }
}

/// The word that asks for no limit.
pub const UNLIMITED: &str = "unlimited";
/// Longest finite limit a manifest may give (one day), in ms.
pub const MAX_LIMIT_MS: u64 = 86_400_000;
/// Default CPU budget of a call: a second of CPU is thousands of times what
/// a call costs, so only a runaway callee meets it.
pub const DEFAULT_BUDGET_MS: u64 = 1000;
/// Default wall-clock limit of a wait: generous for a descheduled peer on a
/// busy host, short enough that a deadlock ends.
pub const DEFAULT_WAIT_MS: u64 = 2000;
/// Default time a restart may take: a boot takes ~2 ms here (~20 ms when
/// huge pages are first touched).
pub const DEFAULT_RESTART_MS: u64 = 1000;

fn default_budget_ms() -> Millis {
    Millis::Ms(DEFAULT_BUDGET_MS)
}
fn default_wait_ms() -> Millis {
    Millis::Ms(DEFAULT_WAIT_MS)
}
fn default_restart_ms() -> Millis {
    Millis::Ms(DEFAULT_RESTART_MS)
}

/// A domain's validated time limits (`None` = unlimited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// CPU budget of each call into it.
    pub budget: Option<Duration>,
    /// Wall-clock limit of each wait on its behalf.
    pub wait: Option<Duration>,
    /// Time a restart may take.
    pub restart: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            budget: Some(Duration::from_millis(DEFAULT_BUDGET_MS)),
            wait: Some(Duration::from_millis(DEFAULT_WAIT_MS)),
            restart: Duration::from_millis(DEFAULT_RESTART_MS),
        }
    }
}

fn limit(
    domain: &str,
    field: &'static str,
    v: &Millis,
    unlimited_ok: bool,
) -> Result<Option<Duration>, ManifestError> {
    match v {
        Millis::Ms(n) if (1..=MAX_LIMIT_MS).contains(n) => Ok(Some(Duration::from_millis(*n))),
        Millis::Word(w) if unlimited_ok && w == UNLIMITED => Ok(None),
        _ => Err(ManifestError::BadLimit {
            domain: domain.to_owned(),
            field,
            value: v.to_string(),
            unlimited_ok,
        }),
    }
}

impl DomainEntry {
    /// A domain running `image`, every other field at its default.
    pub fn new(name: impl Into<String>, image: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            memory_mib: default_memory_mib(),
            stacks: default_stacks(),
            stack_kib: default_stack_kib(),
            exports: Vec::new(),
            capabilities: Vec::new(),
            stack_policy: StackPolicy::default(),
            stack_max: None,
            grow_fallback: None,
            max_spawned: default_max_spawned(),
            ipc: Ipc::default(),
            budget_ms: default_budget_ms(),
            wait_ms: default_wait_ms(),
            restart_ms: default_restart_ms(),
            huge_pages: false,
            stack: StackMode::default(),
        }
    }

    /// Set where calls into it run (see [`StackMode`]).
    #[must_use]
    pub fn stack(mut self, mode: StackMode) -> Self {
        self.stack = mode;
        self
    }

    /// Back its memory with transparent huge pages (or not): see
    /// [`DomainEntry::huge_pages`].
    #[must_use]
    pub fn huge_pages(mut self, on: bool) -> Self {
        self.huge_pages = on;
        self
    }

    /// Set the CPU budget of calls into it, its wait limit and its restart
    /// limit (each in ms; [`Millis::unlimited`] where allowed).
    #[must_use]
    pub fn limits(mut self, budget_ms: Millis, wait_ms: Millis, restart_ms: u64) -> Self {
        self.budget_ms = budget_ms;
        self.wait_ms = wait_ms;
        self.restart_ms = Millis::Ms(restart_ms);
        self
    }

    /// Set the memory in MiB.
    #[must_use]
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    /// Set the number of stacks and their size in KiB.
    #[must_use]
    pub fn stacks(mut self, stacks: u32, stack_kib: u64) -> Self {
        self.stacks = stacks;
        self.stack_kib = stack_kib;
        self
    }

    /// Set how calls into it are carried out.
    #[must_use]
    pub fn ipc(mut self, ipc: Ipc) -> Self {
        self.ipc = ipc;
        self
    }

    /// Set the stack policy.
    #[must_use]
    pub fn stack_policy(mut self, policy: StackPolicy) -> Self {
        self.stack_policy = policy;
        self
    }

    /// Grow the pool on demand from its `stacks` up to `stack_max`, then
    /// act as `fallback` says (`stack_policy = "grow"`).
    #[must_use]
    pub fn grow(mut self, stack_max: u32, fallback: GrowFallback) -> Self {
        self.stack_policy = StackPolicy::Grow;
        self.stack_max = Some(stack_max);
        self.grow_fallback = Some(fallback);
        self
    }

    /// Set the most spawned threads.
    #[must_use]
    pub fn max_spawned(mut self, n: u32) -> Self {
        self.max_spawned = n;
        self
    }

    /// Set the exported entries.
    #[must_use]
    pub fn exports<S: Into<String>>(mut self, exports: impl IntoIterator<Item = S>) -> Self {
        self.exports = exports.into_iter().map(Into::into).collect();
        self
    }

    /// Set the capabilities, `domain.entry` each, slot 0 first.
    #[must_use]
    pub fn capabilities<S: Into<String>>(mut self, caps: impl IntoIterator<Item = S>) -> Self {
        self.capabilities = caps.into_iter().map(Into::into).collect();
        self
    }
}

fn default_max_spawned() -> u32 {
    4
}

/// Spawned threads of the whole VMM alive or not yet reclaimed when a
/// manifest does not say: each is a host thread (a 2 MiB stack mapping and
/// its guard), so 1,024 stays far below the kernel's default 65,530 memory
/// maps per process while leaving room for 256 domains at the default
/// per-domain quota.
pub const DEFAULT_MAX_SPAWNED_TOTAL: u32 = 1024;
fn default_memory_mib() -> u64 {
    16
}
fn default_stacks() -> u32 {
    4
}
fn default_stack_kib() -> u64 {
    64
}

/// One `[[thread]]` table as written.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadEntry {
    /// Its home domain's name.
    pub domain: String,
    /// The exported entry it starts in.
    pub entry: String,
    /// Its scalars.
    #[serde(default)]
    pub args: Vec<u64>,
}

impl ThreadEntry {
    /// A thread starting in `domain.entry` with `args`.
    pub fn new(domain: impl Into<String>, entry: impl Into<String>, args: &[u64]) -> Self {
        Self {
            domain: domain.into(),
            entry: entry.into(),
            args: args.to_vec(),
        }
    }
}

/// What a call does when the callee's stack pool is empty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StackPolicy {
    /// Wait until another thread gives a stack back (never for a stack only
    /// the caller itself holds: that is `NoStack`, not a deadlock).
    #[default]
    Block,
    /// Fail at once with `NoStack`.
    Fail,
    /// Add a stack (and, when it runs, a vCPU) up to `stack_max`, then act
    /// as `grow_fallback` says.
    Grow,
}

/// What a growing pool does once it has `stack_max` stacks and none is free.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrowFallback {
    /// As `stack_policy = "block"`.
    #[default]
    Block,
    /// As `stack_policy = "fail"`.
    Fail,
}

impl StackPolicy {
    /// What a call does when no stack is free and none can be added:
    /// `Block` or `Fail` (a growing pool's fallback).
    pub fn when_empty(self, fallback: GrowFallback) -> Self {
        match (self, fallback) {
            (Self::Grow, GrowFallback::Block) => Self::Block,
            (Self::Grow, GrowFallback::Fail) => Self::Fail,
            (other, _) => other,
        }
    }
}

/// How calls into a domain are carried out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Unique name.
    pub name: String,
    /// Its image.
    pub image: ImageSource,
    /// Bytes of guest memory.
    pub memory: u64,
    /// Stacks in the pool at boot (and after every restart).
    pub stacks: u32,
    /// The most stacks the pool may have: `stacks` unless it grows. The
    /// layout reserves room for this many, and the domain has at most one
    /// vCPU more.
    pub stack_max: u32,
    /// What a growing pool does at `stack_max` (ignored by fixed pools).
    pub grow_fallback: GrowFallback,
    /// Bytes per stack.
    pub stack_size: u64,
    /// Entries others may hold capabilities to (checked against the image).
    pub exports: Vec<String>,
    /// Slot `i` → capability `i`.
    pub capabilities: Vec<CapabilitySpec>,
    /// What a call does when the pool is empty.
    pub stack_policy: StackPolicy,
    /// Most threads its guest may have spawned and not yet reclaimed.
    pub max_spawned: u32,
    /// How calls into it are carried out.
    pub ipc: Ipc,
    /// Its time limits.
    pub limits: Limits,
    /// Whether its memory is backed by transparent huge pages.
    pub huge_pages: bool,
    /// Where calls into it run.
    pub stack: StackMode,
    /// The system's stack window, for a `mapped` domain (its page tables
    /// map the window); `None` for a `pool` domain.
    pub window: Option<WindowSpec>,
}

/// One initial thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadSpec {
    /// Index of its home domain.
    pub domain: usize,
    /// The entry it starts in.
    pub entry: String,
    /// Its scalars (at most 6).
    pub args: Vec<u64>,
}

/// A validated system description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// The domains, in manifest order (a domain's id is its index).
    pub domains: Vec<DomainSpec>,
    /// The initial threads.
    pub threads: Vec<ThreadSpec>,
    /// Most spawned threads (all domains) alive or not yet reclaimed.
    pub max_spawned_total: u32,
    /// The stack window of `mapped` domains.
    pub window: WindowSpec,
}

/// Check one domain's own fields (capabilities are resolved later, once
/// every domain is known).
fn validate_domain(d: &DomainEntry, base: Option<&Path>) -> Result<DomainSpec, ManifestError> {
    let memory = d
        .memory_mib
        .checked_mul(1 << 20)
        .filter(|m| (1 << 20..=MAX_MEMORY).contains(m))
        .ok_or_else(|| ManifestError::BadMemory {
            domain: d.name.clone(),
            memory_mib: d.memory_mib,
        })?;
    if d.stacks == 0 || d.stacks > MAX_VCPUS {
        return Err(ManifestError::BadStacks {
            domain: d.name.clone(),
            stacks: d.stacks,
        });
    }
    let stack_max = match (d.stack_policy, d.stack_max, d.grow_fallback) {
        (StackPolicy::Grow, Some(max), _) => max,
        (StackPolicy::Grow, None, _) => {
            return Err(ManifestError::GrowFields {
                domain: d.name.clone(),
                problem: "stack_policy = \"grow\" needs stack_max (the most stacks it grows to)",
            })
        }
        (_, None, None) => d.stacks,
        (_, _, _) => {
            return Err(ManifestError::GrowFields {
                domain: d.name.clone(),
                problem: "stack_max and grow_fallback are for stack_policy = \"grow\" only",
            })
        }
    };
    if stack_max < d.stacks || stack_max > MAX_VCPUS {
        return Err(ManifestError::BadStackMax {
            domain: d.name.clone(),
            stacks: d.stacks,
            stack_max,
        });
    }
    if d.stack_policy == StackPolicy::Grow && d.ipc == Ipc::Message {
        return Err(ManifestError::GrowFields {
            domain: d.name.clone(),
            problem: "stack_policy = \"grow\" is for ipc = \"migrate\" (message mode starts one server per stack at boot)",
        });
    }
    let stack_size = d
        .stack_kib
        .checked_mul(1024)
        .filter(|s| *s >= 2 * PAGE_SIZE && s % PAGE_SIZE == 0 && *s <= memory)
        .ok_or_else(|| ManifestError::BadStackSize {
            domain: d.name.clone(),
            stack_kib: d.stack_kib,
        })?;
    let mut exports = HashSet::new();
    for e in &d.exports {
        if e.is_empty() || e.len() > shared_abi::ENTRY_NAME_MAX {
            return Err(ManifestError::BadExport {
                domain: d.name.clone(),
                export: e.clone(),
            });
        }
        if !exports.insert(e.as_str()) {
            return Err(ManifestError::DuplicateExport {
                domain: d.name.clone(),
                export: e.clone(),
            });
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
    let limits = Limits {
        budget: limit(&d.name, "budget_ms", &d.budget_ms, true)?,
        wait: limit(&d.name, "wait_ms", &d.wait_ms, true)?,
        restart: limit(&d.name, "restart_ms", &d.restart_ms, false)?
            .unwrap_or(Duration::from_millis(DEFAULT_RESTART_MS)),
    };
    Ok(DomainSpec {
        name: d.name.clone(),
        image,
        memory,
        stacks: d.stacks,
        stack_max,
        grow_fallback: d.grow_fallback.unwrap_or_default(),
        stack_size,
        exports: d.exports.clone(),
        capabilities: Vec::new(),
        stack_policy: d.stack_policy,
        max_spawned: d.max_spawned,
        ipc: d.ipc,
        limits,
        huge_pages: d.huge_pages,
        stack: d.stack,
        window: None,
    })
}

/// Check the `[stacks]` table.
fn validate_window(s: &StacksEntry) -> Result<WindowSpec, ManifestError> {
    let stack_size = s
        .window_kib
        .checked_mul(1024)
        .filter(|b| {
            *b % PAGE_SIZE == 0 && *b >= 2 * MAPPED_MIN_STACK && *b + PAGE_SIZE <= STACK_WINDOW_SIZE
        })
        .ok_or(ManifestError::BadWindowSize {
            window_kib: s.window_kib,
        })?;
    Ok(WindowSpec {
        mapping: s.mapping,
        layout: WindowLayout { stack_size },
    })
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
        Self::from_document(&toml::from_str(text)?, base)
    }

    /// Validate a manifest built by code (or parsed); relative image paths
    /// resolve against `base`.
    pub fn from_document(doc: &Document, base: Option<&Path>) -> Result<Self, ManifestError> {
        if doc.domains.is_empty() {
            return Err(ManifestError::NoDomains);
        }
        if doc.domains.len() > MAX_DOMAINS {
            return Err(ManifestError::TooManyDomains {
                count: doc.domains.len(),
            });
        }
        let mut names = HashSet::new();
        for d in &doc.domains {
            if d.name.is_empty() || d.name.contains('.') {
                return Err(ManifestError::BadDomainName {
                    name: d.name.clone(),
                });
            }
            if d.name.len() > shared_abi::ENTRY_NAME_MAX {
                return Err(ManifestError::LongDomainName {
                    name: d.name.clone(),
                });
            }
            if !names.insert(d.name.as_str()) {
                return Err(ManifestError::DuplicateDomain {
                    name: d.name.clone(),
                });
            }
        }
        let index_of = |name: &str| doc.domains.iter().position(|d| d.name == name);
        let window = validate_window(&doc.stacks.clone().unwrap_or_default())?;
        let mut domains = Vec::with_capacity(doc.domains.len());
        for d in &doc.domains {
            let mut spec = validate_domain(d, base)?;
            if spec.stack == StackMode::Mapped {
                if spec.ipc == Ipc::Message {
                    return Err(ManifestError::MappedMessage {
                        domain: d.name.clone(),
                    });
                }
                spec.window = Some(window);
            }
            domains.push(spec);
        }
        for (d, spec) in doc.domains.iter().zip(domains.iter_mut()) {
            let mut caps = Vec::with_capacity(d.capabilities.len());
            for c in &d.capabilities {
                let (target, entry) =
                    c.split_once('.')
                        .ok_or_else(|| ManifestError::BadCapability {
                            domain: d.name.clone(),
                            capability: c.clone(),
                        })?;
                let t = index_of(target).ok_or_else(|| ManifestError::UnknownCapabilityDomain {
                    domain: d.name.clone(),
                    capability: c.clone(),
                    target: target.to_owned(),
                })?;
                if !doc
                    .domains
                    .get(t)
                    .is_some_and(|td| td.exports.iter().any(|e| e == entry))
                {
                    return Err(ManifestError::NotExported {
                        domain: d.name.clone(),
                        capability: c.clone(),
                        target: target.to_owned(),
                        entry: entry.to_owned(),
                    });
                }
                caps.push(CapabilitySpec {
                    domain: t,
                    entry: entry.to_owned(),
                });
            }
            spec.capabilities = caps;
        }
        let mut threads = Vec::with_capacity(doc.threads.len());
        for t in &doc.threads {
            let d = index_of(&t.domain).ok_or_else(|| ManifestError::UnknownThreadDomain {
                domain: t.domain.clone(),
            })?;
            if !doc
                .domains
                .get(d)
                .is_some_and(|dd| dd.exports.contains(&t.entry))
            {
                return Err(ManifestError::ThreadEntryNotExported {
                    domain: t.domain.clone(),
                    entry: t.entry.clone(),
                });
            }
            if t.args.len() > MAX_SCALARS {
                return Err(ManifestError::TooManyArgs {
                    domain: t.domain.clone(),
                    entry: t.entry.clone(),
                    count: t.args.len(),
                });
            }
            threads.push(ThreadSpec {
                domain: d,
                entry: t.entry.clone(),
                args: t.args.clone(),
            });
        }
        Ok(Self {
            domains,
            threads,
            max_spawned_total: doc.max_spawned_total.unwrap_or(DEFAULT_MAX_SPAWNED_TOTAL),
            window,
        })
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
        assert_eq!(s.domains[0].limits, Limits::default(), "finite defaults");
        let unlimited = GOOD.replace(
            "exports = [\"x\"]",
            "exports = [\"x\"]\nbudget_ms = \"unlimited\"\nwait_ms = 30\nrestart_ms = 40",
        );
        let s = System::parse(&unlimited, None).unwrap();
        assert_eq!(
            s.domains[0].limits,
            Limits {
                budget: None,
                wait: Some(Duration::from_millis(30)),
                restart: Duration::from_millis(40),
            }
        );
        assert_eq!(s.threads[0].args, vec![1, 2]);
    }

    #[test]
    fn huge_pages_are_off_unless_asked_for() {
        let s = System::parse(GOOD, None).unwrap();
        assert!(!s.domains[0].huge_pages, "off by default");
        let on = GOOD.replace("exports = [\"x\"]", "exports = [\"x\"]\nhuge_pages = true");
        let s = System::parse(&on, None).unwrap();
        assert!(s.domains[0].huge_pages);
        assert!(!s.domains[1].huge_pages);
        let doc = Document::default().domain(DomainEntry::new("a", "testguest").huge_pages(true));
        let text = toml::to_string(&doc).unwrap();
        assert!(System::parse(&text, None).unwrap().domains[0].huge_pages);
    }

    #[test]
    fn stack_modes_and_the_window() {
        let text = r#"
            [stacks]
            mapping = "on-call"
            window_kib = 128
            [[domain]]
            name = "a"
            image = "stacker"
            stack = "mapped"
            [[domain]]
            name = "b"
            image = "stacker"
        "#;
        let s = System::parse(text, None).unwrap();
        assert_eq!(s.window.mapping, Mapping::OnCall);
        assert_eq!(s.window.layout.stack_size, 128 << 10);
        assert_eq!(s.domains[0].stack, StackMode::Mapped);
        assert_eq!(s.domains[0].window, Some(s.window));
        assert_eq!(s.domains[1].stack, StackMode::Pool, "pool by default");
        assert_eq!(s.domains[1].window, None);
        // Without [stacks]: pre-mapped, 256 KiB.
        let s = System::parse(GOOD, None).unwrap();
        assert_eq!(s.window, WindowSpec::default());
        assert_eq!(s.window.mapping, Mapping::Premapped);
        for bad in [0, 16, 30, 65536, i64::MAX as u64] {
            let text =
                format!("[stacks]\nwindow_kib = {bad}\n[[domain]]\nname = \"a\"\nimage = \"x\"\n");
            assert!(
                matches!(
                    System::parse(&text, None),
                    Err(ManifestError::BadWindowSize { window_kib }) if window_kib == bad
                ),
                "{bad}"
            );
        }
        let text =
            "[[domain]]\nname = \"a\"\nimage = \"x\"\nstack = \"mapped\"\nipc = \"message\"\n";
        assert!(matches!(
            System::parse(text, None),
            Err(ManifestError::MappedMessage { .. })
        ));
        let text = "[stacks]\nmapping = \"lazy\"\n[[domain]]\nname = \"a\"\nimage = \"x\"\n";
        assert!(matches!(
            System::parse(text, None),
            Err(ManifestError::Parse(_))
        ));
        // A built document with both round-trips through TOML.
        let doc = Document {
            stacks: Some(StacksEntry {
                mapping: Mapping::OnCall,
                window_kib: 64,
            }),
            ..Document::default()
        }
        .domain(DomainEntry::new("a", "x").stack(StackMode::Mapped));
        let back: Document = toml::from_str(&toml::to_string(&doc).unwrap()).unwrap();
        assert_eq!(back, doc);
    }

    #[test]
    fn grow_policy_fields_are_checked() {
        use ManifestError as E;
        let with =
            |field: &str| GOOD.replace("exports = [\"x\"]", &format!("exports = [\"x\"]\n{field}"));
        let s = System::parse(
            &with("stacks = 1\nstack_policy = \"grow\"\nstack_max = 16"),
            None,
        )
        .unwrap();
        let a = &s.domains[0];
        assert_eq!((a.stacks, a.stack_max), (1, 16));
        assert_eq!(a.stack_policy, StackPolicy::Grow);
        assert_eq!(a.grow_fallback, GrowFallback::Block, "block by default");
        assert_eq!(
            s.domains[1].stack_max, s.domains[1].stacks,
            "fixed: max = stacks"
        );
        let fail = with("stack_policy = \"grow\"\nstack_max = 8\ngrow_fallback = \"fail\"");
        let s = System::parse(&fail, None).unwrap();
        assert_eq!(s.domains[0].grow_fallback, GrowFallback::Fail);
        assert_eq!(
            StackPolicy::Grow.when_empty(GrowFallback::Fail),
            StackPolicy::Fail
        );
        assert_eq!(
            StackPolicy::Block.when_empty(GrowFallback::Fail),
            StackPolicy::Block
        );
        type Is = fn(&ManifestError) -> bool;
        let cases: [(String, Is, &str); 6] = [
            (
                with("stack_policy = \"grow\""),
                |e| matches!(e, E::GrowFields { .. }),
                "needs stack_max",
            ),
            (
                with("stack_max = 8"),
                |e| matches!(e, E::GrowFields { .. }),
                "for stack_policy = \"grow\" only",
            ),
            (
                with("grow_fallback = \"fail\""),
                |e| matches!(e, E::GrowFields { .. }),
                "for stack_policy = \"grow\" only",
            ),
            (
                with("stacks = 4\nstack_policy = \"grow\"\nstack_max = 2"),
                |e| matches!(e, E::BadStackMax { stack_max: 2, .. }),
                "stack_max = 2 (must be stacks..=32, stacks = 4",
            ),
            (
                with("stack_policy = \"grow\"\nstack_max = 33"),
                |e| matches!(e, E::BadStackMax { stack_max: 33, .. }),
                "a domain has at most 32",
            ),
            (
                with("stack_policy = \"grow\"\nstack_max = 8\nipc = \"message\""),
                |e| matches!(e, E::GrowFields { .. }),
                "is for ipc = \"migrate\"",
            ),
        ];
        for (text, is, want) in cases {
            let err = System::parse(&text, None).unwrap_err();
            assert!(is(&err), "{err:?} is not the expected variant");
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want:?}"
            );
        }
        let doc = Document::default().domain(
            DomainEntry::new("a", "testguest")
                .stacks(1, 64)
                .grow(16, GrowFallback::Fail),
        );
        let text = toml::to_string(&doc).unwrap();
        assert_eq!(toml::from_str::<Document>(&text).unwrap(), doc, "{text}");
        assert_eq!(System::parse(&text, None).unwrap().domains[0].stack_max, 16);
    }

    #[test]
    fn demo_manifest_is_valid() {
        System::demo().unwrap();
    }

    #[test]
    fn errors_name_the_problem() {
        use ManifestError as E;
        let with =
            |field: &str| GOOD.replace("exports = [\"x\"]", &format!("exports = [\"x\"]\n{field}"));
        type Is = fn(&ManifestError) -> bool;
        let cases: [(String, Is, &str); 18] = [
            (
                with("budget_ms = 0"),
                |e| {
                    matches!(
                        e,
                        E::BadLimit {
                            field: "budget_ms",
                            ..
                        }
                    )
                },
                "budget_ms = 0 (must be 1..=86400000 or \"unlimited\")",
            ),
            (
                with("wait_ms = \"forever\""),
                |e| {
                    matches!(
                        e,
                        E::BadLimit {
                            field: "wait_ms",
                            ..
                        }
                    )
                },
                "wait_ms = \"forever\"",
            ),
            (
                with("restart_ms = \"unlimited\""),
                |e| {
                    matches!(
                        e,
                        E::BadLimit {
                            field: "restart_ms",
                            unlimited_ok: false,
                            ..
                        }
                    )
                },
                "restart_ms = \"unlimited\" (must be 1..=86400000)",
            ),
            (
                with("budget_ms = -5"),
                |e| matches!(e, E::Parse(_)),
                "budget_ms",
            ),
            (
                GOOD.replace("b.y", "c.y"),
                |e| matches!(e, E::UnknownCapabilityDomain { target, .. } if target == "c"),
                "capability `c.y` names unknown domain `c`",
            ),
            (
                GOOD.replace("b.y", "b.z"),
                |e| matches!(e, E::NotExported { entry, .. } if entry == "z"),
                "does not export `z`",
            ),
            (
                GOOD.replace("b.y", "by"),
                |e| matches!(e, E::BadCapability { capability, .. } if capability == "by"),
                "is not `domain.entry`",
            ),
            (
                GOOD.replace("name = \"b\"", "name = \"a\""),
                |e| matches!(e, E::DuplicateDomain { name } if name == "a"),
                "described twice",
            ),
            (
                GOOD.replace("name = \"b\"", "name = \"b.c\""),
                |e| matches!(e, E::BadDomainName { name } if name == "b.c"),
                "contain no `.`",
            ),
            (
                GOOD.replace("name = \"b\"", &format!("name = \"{}\"", "b".repeat(33))),
                |e| matches!(e, E::LongDomainName { name } if name.len() == 33),
                "longer than 32 bytes",
            ),
            (
                GOOD.replace("entry = \"x\"", "entry = \"q\""),
                |e| matches!(e, E::ThreadEntryNotExported { entry, .. } if entry == "q"),
                "not exported",
            ),
            (
                GOOD.replace("domain = \"a\"", "domain = \"zz\""),
                |e| matches!(e, E::UnknownThreadDomain { domain } if domain == "zz"),
                "unknown domain `zz`",
            ),
            (
                GOOD.replace("args = [1, 2]", "args = [1, 2, 3, 4, 5, 6, 7]"),
                |e| matches!(e, E::TooManyArgs { count: 7, .. }),
                "has 7 args",
            ),
            (
                with("stacks = 0"),
                |e| matches!(e, E::BadStacks { stacks: 0, .. }),
                "stacks = 0",
            ),
            (
                with("stack_kib = 5"),
                |e| matches!(e, E::BadStackSize { stack_kib: 5, .. }),
                "stack_kib = 5",
            ),
            (
                with("memory_mib = 100000"),
                |e| {
                    matches!(
                        e,
                        E::BadMemory {
                            memory_mib: 100_000,
                            ..
                        }
                    )
                },
                "memory_mib",
            ),
            (
                with("colour = 1"),
                |e| matches!(e, E::Parse(_)),
                "unknown field",
            ),
            (
                String::new(),
                |e| matches!(e, E::NoDomains),
                "no [[domain]]",
            ),
        ];
        for (text, is, want) in cases {
            let err = System::parse(&text, None).unwrap_err();
            assert!(is(&err), "{err:?} is not the expected variant");
            let msg = match std::error::Error::source(&err) {
                Some(cause) => format!("{err}: {cause}"),
                None => err.to_string(),
            };
            assert!(msg.contains(want), "{msg:?} should mention {want:?}");
        }
        let twice = GOOD.replace("exports = [\"x\"]", "exports = [\"x\", \"x\"]");
        assert!(matches!(
            System::parse(&twice, None),
            Err(E::DuplicateExport { export, .. }) if export == "x"
        ));
        let empty = GOOD.replace("exports = [\"x\"]", "exports = [\"x\", \"\"]");
        assert!(matches!(
            System::parse(&empty, None),
            Err(E::BadExport { export, .. }) if export.is_empty()
        ));
    }

    /// A manifest built by code, serialized and parsed back, is the same
    /// manifest, and validates to the same system as the value itself.
    #[test]
    fn built_manifest_round_trips() {
        let doc = Document::default()
            .domain(
                DomainEntry::new("a", "testguest")
                    .memory_mib(8)
                    .stacks(2, 32)
                    .exports(["x"])
                    .capabilities(["b.y"])
                    .stack_policy(StackPolicy::Fail)
                    .max_spawned(1)
                    .limits(Millis::unlimited(), Millis::Ms(50), 200),
            )
            .domain(
                DomainEntry::new("b", "dir/b.elf")
                    .ipc(Ipc::Message)
                    .exports(["y"]),
            )
            .thread(ThreadEntry::new("a", "x", &[1, 2]));
        let doc = Document {
            max_spawned_total: Some(7),
            ..doc
        };
        let text = toml::to_string(&doc).unwrap();
        let back: Document = toml::from_str(&text).unwrap();
        assert_eq!(back, doc, "{text}");
        let base = Some(Path::new("/m"));
        assert_eq!(
            System::parse(&text, base).unwrap(),
            System::from_document(&doc, base).unwrap()
        );
        // The builder's defaults are TOML's defaults.
        let minimal: Document =
            toml::from_str("[[domain]]\nname = \"a\"\nimage = \"testguest\"\n").unwrap();
        assert_eq!(
            minimal,
            Document::default().domain(DomainEntry::new("a", "testguest"))
        );
    }

    #[test]
    fn demo_manifest_round_trips() {
        let doc: Document = toml::from_str(DEMO_MANIFEST).unwrap();
        let text = toml::to_string(&doc).unwrap();
        assert_eq!(toml::from_str::<Document>(&text).unwrap(), doc, "{text}");
        assert_eq!(System::parse(&text, None).unwrap(), System::demo().unwrap());
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
