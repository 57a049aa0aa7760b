//! Typed ids. A domain id, an entry index, a capability slot, a stack and a
//! thread are all small integers on the wire; as separate types they cannot
//! be swapped by accident inside the VMM (`Chain::start` used to take four
//! bare integers).

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($inner);

        impl $name {
            /// The id as the ABI carries it.
            pub const fn new(raw: $inner) -> Self {
                Self(raw)
            }

            /// The raw value, for the wire and for logs.
            pub const fn raw(self) -> $inner {
                self.0
            }

            /// The id as an index into a table (it is one).
            pub fn index(self) -> usize {
                usize::try_from(self.0).unwrap_or(usize::MAX)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// A domain: its position in the manifest, fixed for the system's life.
    DomainId(u32),
    "domain#"
);
id!(
    /// An entry of a domain's image, by its index in the entry table the
    /// guest declared at hello.
    EntryIndex(u32),
    "entry#"
);
id!(
    /// A capability slot of a calling domain (the order of the manifest's
    /// `capabilities` list).
    Slot(u32),
    "slot "
);
id!(
    /// One stack of a domain's stack pool.
    StackIndex(u32),
    "stack#"
);
id!(
    /// A migrating thread: one identity wherever it runs.
    ThreadId(u64),
    "thread "
);

impl DomainId {
    /// The id of the domain at `index` in the manifest, if it fits the ABI.
    pub fn from_index(index: usize) -> Option<Self> {
        u32::try_from(index).ok().map(Self)
    }
}

impl EntryIndex {
    /// The entry at `index` of a table, if it fits the ABI.
    pub fn from_index(index: usize) -> Option<Self> {
        u32::try_from(index).ok().map(Self)
    }
}
