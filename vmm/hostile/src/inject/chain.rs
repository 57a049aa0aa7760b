//! The manifest fragment of one fault-injection chain: a root domain that
//! drives it and `links` faulter domains, each holding capabilities to the
//! next one's `inject` and `hold`. Names carry a prefix so a soak can put
//! several chains beside its own domains.

use super::wire::{entry, MAX_LINKS};
use ferry_engine::manifest::{Document, DomainEntry};

/// Why a chain cannot be described.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum ChainSpecError {
    #[error("chain prefix `{0}` must be non-empty ASCII letters, digits, `-` or `_`")]
    BadPrefix(String),
    #[error("a chain has 1..={MAX_LINKS} links, not {0}")]
    BadLinks(u32),
    #[error("cannot write the chain's manifest fragment as TOML")]
    Toml(#[source] toml::ser::Error),
}

/// One chain's shape. Small domains (3 MiB, two 16 KiB stacks) because a
/// restart's cost grows with the memory a domain touched, and a soak
/// restarts them hundreds of thousands of times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    /// Prefix of every domain name: `{prefix}-root`, `{prefix}-1`, ….
    pub prefix: String,
    /// Faulter domains after the root; the deepest injection is at this depth.
    pub links: u32,
    /// Links run `faulter-fragile`, whose restart faults (TEST-ONLY: for
    /// [`FaultKind::RestartFault`](super::FaultKind::RestartFault)).
    pub fragile: bool,
}

/// Guest memory of every chain domain, in MiB (the image is linked at 2 MiB).
pub const MEMORY_MIB: u64 = 3;
/// Stacks of a link: one for the injection, one for a bystander.
pub const LINK_STACKS: u32 = 2;
/// KiB per stack of a link (the stack-overflow kind fills one).
pub const LINK_STACK_KIB: u64 = 16;
/// KiB per stack of the root (it runs the storm loop).
pub const ROOT_STACK_KIB: u64 = 32;

impl ChainSpec {
    /// A chain named `prefix` with `links` faulter domains.
    pub fn new(prefix: &str, links: u32) -> Result<Self, ChainSpecError> {
        let ok = !prefix.is_empty()
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(ChainSpecError::BadPrefix(prefix.to_owned()));
        }
        if !(1..=MAX_LINKS).contains(&links) {
            return Err(ChainSpecError::BadLinks(links));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            links,
            fragile: false,
        })
    }

    /// The same chain with fragile links (TEST-ONLY).
    #[must_use]
    pub fn fragile(mut self) -> Self {
        self.fragile = true;
        self
    }

    /// The root's name.
    pub fn root(&self) -> String {
        format!("{}-root", self.prefix)
    }

    /// The name of the link at `depth` (1-based); the root for 0.
    pub fn link(&self, depth: u32) -> String {
        match depth {
            0 => self.root(),
            d => format!("{}-{d}", self.prefix),
        }
    }

    /// Every domain's name, root first, then by depth.
    pub fn names(&self) -> Vec<String> {
        (0..=self.links).map(|d| self.link(d)).collect()
    }

    fn caps_to(&self, depth: u32) -> Vec<String> {
        if depth > self.links {
            return Vec::new();
        }
        let next = self.link(depth);
        vec![
            format!("{next}.{}", entry::INJECT),
            format!("{next}.{}", entry::HOLD),
        ]
    }

    /// The chain's domains, root first, for a [`Document`].
    pub fn domains(&self) -> Vec<DomainEntry> {
        let exports = [
            entry::INJECT,
            entry::HOLD,
            entry::SITES,
            entry::ONCE,
            entry::BYSTAND,
            entry::STORM,
        ];
        let link_image = if self.fragile {
            "faulter-fragile"
        } else {
            "faulter"
        };
        let root = DomainEntry::new(self.root(), "faulter")
            .memory_mib(MEMORY_MIB)
            .stacks(LINK_STACKS, ROOT_STACK_KIB)
            .exports(exports)
            .capabilities(self.caps_to(1));
        std::iter::once(root)
            .chain((1..=self.links).map(|d| {
                DomainEntry::new(self.link(d), link_image)
                    .memory_mib(MEMORY_MIB)
                    .stacks(LINK_STACKS, LINK_STACK_KIB)
                    .exports(exports)
                    .capabilities(self.caps_to(d + 1))
            }))
            .collect()
    }

    /// `doc` with this chain's domains appended.
    pub fn add_to(&self, doc: Document) -> Document {
        self.domains().into_iter().fold(doc, Document::domain)
    }

    /// The fragment as manifest TOML (`[[domain]]` tables), for a manifest
    /// file written by hand or by a script.
    pub fn toml(&self) -> Result<String, ChainSpecError> {
        toml::to_string(&self.add_to(Document::default())).map_err(ChainSpecError::Toml)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_links_each_domain_to_the_next() {
        let c = ChainSpec::new("inj", 3).unwrap();
        let d = c.domains();
        let names: Vec<_> = d.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["inj-root", "inj-1", "inj-2", "inj-3"]);
        assert_eq!(d[0].capabilities, ["inj-1.inject", "inj-1.hold"]);
        assert_eq!(d[2].capabilities, ["inj-3.inject", "inj-3.hold"]);
        assert!(d[3].capabilities.is_empty());
        assert!(d.iter().all(|d| d.image == "faulter"));
        let f = c.clone().fragile().domains();
        assert_eq!(f[0].image, "faulter");
        assert!(f[1..].iter().all(|d| d.image == "faulter-fragile"));
    }

    #[test]
    fn the_toml_fragment_parses_as_the_same_manifest() {
        let c = ChainSpec::new("x_1", 2).unwrap();
        let text = c.toml().unwrap();
        let parsed = ferry_engine::manifest::System::parse(&text, None).unwrap();
        let direct =
            ferry_engine::manifest::System::from_document(&c.add_to(Document::default()), None)
                .unwrap();
        assert_eq!(parsed, direct);
    }

    #[test]
    fn bad_prefixes_and_lengths_are_refused() {
        assert!(ChainSpec::new("a.b", 2).is_err());
        assert!(ChainSpec::new("", 2).is_err());
        assert!(ChainSpec::new("a", 0).is_err());
        assert!(ChainSpec::new("a", MAX_LINKS + 1).is_err());
    }
}
