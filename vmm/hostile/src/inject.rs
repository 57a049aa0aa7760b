//! Fault injection: the `faulter` image raises a fault of a chosen kind at
//! a chosen depth of a chain of faulter domains, and this module knows what
//! every party must get for each kind and checks that they got it.
//!
//! - [`FaultKind`]: every kind, with the answers it must produce
//!   ([`FaultKind::expected`], the table docs/RELIABILITY.md reproduces);
//! - [`ChainSpec`]: the manifest fragment of one chain (a root that drives
//!   it and `links` faulter domains, names prefixed so a soak can put
//!   several chains beside its other domains);
//! - [`Injector`]: one chain of a booted system, driven from any host
//!   thread: [`Injector::inject`] raises one fault and checks every party,
//!   [`Injector::inject_with_bystander`] also checks a thread caught inside
//!   the domain that goes down, and [`Injector::storm`] has the root inject
//!   thousands of faults in one host round trip, judging each answer
//!   in the guest against the table written here, then cross-checks the
//!   guest's tallies against the VMM's own restart counts and fault records.
//!
//! A chain: `root → link 1 → link 2 → … → link n`; injecting at depth `d`
//! makes link `d` raise the fault, so its direct caller is link `d − 1` (the
//! root for `d = 1`). Each relaying link answers its caller `Ok` and passes
//! up, as an OUT object, the record of what the direct caller saw.

mod chain;
mod driver;
mod expect;
#[path = "../../../images/faulter/src/wire.rs"]
pub mod wire;

pub use chain::{ChainSpec, ChainSpecError};
pub use driver::{
    InjectError, Injection, Injector, Observation, Party, Record, StormReport, TopAnswer,
};
pub use expect::{After, Bystander, CallerAnswer, Expected, GenRule, RegRule, Site, VmmRecord};

/// A fault the `faulter` image can raise. The discriminant is the number
/// the guest receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// Return normally (the control: nothing goes down).
    None = 0,
    /// `div` by zero: #DE, vector 0.
    DivideError = 1,
    /// `ud2`: #UD, vector 6.
    InvalidOpcode = 2,
    /// A privileged instruction (`hlt`) at CPL3: #GP, vector 13.
    GeneralProtection = 3,
    /// A store through a wild pointer: #PF, vector 14, CR2 = the pointer.
    PageFault = 4,
    /// Unbounded recursion into the stack's guard page: #PF in the guard.
    StackOverflow = 5,
    /// `movaps` on an address 8 bytes off 16: #GP, vector 13.
    MisalignedSse = 6,
    /// Spin forever; the direct caller's CPU budget
    /// ([`wire::LOOP_BUDGET_US`]) stops it.
    Loop = 7,
    /// `panic!`: the `Panic` hypercall.
    Panic = 8,
    /// `Exit` from a callee frame: only that frame ends.
    Exit = 9,
    /// `ud2` in the `faulter-fragile` image, whose restart then faults: the
    /// domain ends `Dead`. TEST-ONLY: never in a soak, and only in a chain
    /// built with [`ChainSpec::fragile`].
    RestartFault = 10,
}

impl FaultKind {
    /// Every kind, in wire order.
    pub const ALL: [Self; wire::KINDS] = [
        Self::None,
        Self::DivideError,
        Self::InvalidOpcode,
        Self::GeneralProtection,
        Self::PageFault,
        Self::StackOverflow,
        Self::MisalignedSse,
        Self::Loop,
        Self::Panic,
        Self::Exit,
        Self::RestartFault,
    ];

    /// The kinds a soak may inject: all but the test-only ones.
    pub const SOAK: [Self; wire::KINDS - 1] = [
        Self::None,
        Self::DivideError,
        Self::InvalidOpcode,
        Self::GeneralProtection,
        Self::PageFault,
        Self::StackOverflow,
        Self::MisalignedSse,
        Self::Loop,
        Self::Panic,
        Self::Exit,
    ];

    /// The number the guest receives.
    pub fn wire(self) -> u64 {
        self as u64
    }

    /// The kind a wire number names, if any (tallies come back as numbers).
    pub fn from_wire(n: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.wire() == n)
    }

    /// Its index in [`FaultKind::ALL`] and in per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::DivideError => "divide-error",
            Self::InvalidOpcode => "invalid-opcode",
            Self::GeneralProtection => "general-protection",
            Self::PageFault => "page-fault",
            Self::StackOverflow => "stack-overflow",
            Self::MisalignedSse => "misaligned-sse",
            Self::Loop => "loop",
            Self::Panic => "panic",
            Self::Exit => "exit",
            Self::RestartFault => "restart-fault",
        }
    }

    /// Whether only tests may inject it (it kills the domain for good).
    pub fn test_only(self) -> bool {
        self == Self::RestartFault
    }

    /// The answers every party must get: see [`Expected`].
    pub fn expected(self) -> Expected {
        expect::expected(self)
    }

    /// The storm's kind mask of `kinds` (bit `k` = kind `k`).
    pub fn mask(kinds: &[Self]) -> u64 {
        kinds.iter().fold(0, |m, k| m | 1 << k.wire())
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_numbers_round_trip_and_index_the_table() {
        for (i, k) in FaultKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i);
            assert_eq!(FaultKind::from_wire(k.wire()), Some(k));
        }
        assert_eq!(FaultKind::from_wire(wire::KINDS as u64), None);
    }

    #[test]
    fn the_soak_kinds_are_all_but_the_test_only_ones() {
        let soak: Vec<_> = FaultKind::ALL
            .into_iter()
            .filter(|k| !k.test_only())
            .collect();
        assert_eq!(soak, FaultKind::SOAK);
        assert_eq!(FaultKind::mask(&FaultKind::SOAK), 0x3FF);
    }
}
