//! The expected answers, as data: for each [`FaultKind`], what the direct
//! caller of the faulting domain gets (status and registers of its `Call`),
//! what parties further up get, what a thread caught inside the domain
//! gets, what the VMM records, and the domain's state afterwards. These are
//! the commitments of docs/ABI.md ("Call", "Fault answer", "Budgets") and
//! docs/THREAT-MODEL.md ("Failure cases"), restated per kind; the same
//! table is written into the storm's guest, which judges with it.

use super::wire::{self, op};
use super::FaultKind;
use shared_abi::{pseudo_vector, ErrorCode};

/// A fault site of the image, whose address the host reads from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Site {
    /// The `div`.
    Divide,
    /// The `ud2`.
    Ud2,
    /// The privileged instruction.
    Privileged,
    /// The wild store.
    Wild,
    /// The misaligned `movaps`.
    Sse,
}

impl Site {
    /// Every site, in `sites()` selector order.
    pub const ALL: [Self; 5] = [
        Self::Divide,
        Self::Ud2,
        Self::Privileged,
        Self::Wild,
        Self::Sse,
    ];

    /// The guest's `sites()` selector.
    pub fn selector(self) -> u64 {
        match self {
            Self::Divide => wire::site::DIVIDE,
            Self::Ud2 => wire::site::UD2,
            Self::Privileged => wire::site::PRIVILEGED,
            Self::Wild => wire::site::WILD,
            Self::Sse => wire::site::SSE,
        }
    }
}

/// What one register of an answer must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegRule {
    /// Exactly this value.
    Exact(u64),
    /// The address of a fault site (the faulting instruction).
    Site(Site),
    /// `value & mask == bits` (error codes: only the bits the CPU must set).
    Masked {
        /// Bits that are checked.
        mask: u64,
        /// Their required values.
        bits: u64,
    },
    /// An address inside the faulting domain's image (a RIP that is not at
    /// a fixed site: a panic's exit, a recursion's store).
    InImage,
    /// An address inside one of the faulting domain's stack guard pages.
    GuardPage,
    /// The callee's generation, as the answer's `R8` says (a `None` callee
    /// returns its own `generation()`).
    Generation,
}

/// What the answer's generation (`R8`) must be, against the faulting
/// domain's generation before the injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenRule {
    /// Unchanged: the domain did not restart.
    Same,
    /// Old or new: the answer may be written before or after the reset
    /// (docs/ABI.md, "Generation").
    SameOrNext,
}

/// The direct caller's answer: `Call`'s `RAX`, `RDI`, `RSI`, `RDX`, `R10`
/// and `R8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallerAnswer {
    /// The raw status word (`RAX`): 0, or an [`ErrorCode`].
    pub status: u64,
    /// `RDI`, `RSI`, `RDX`, `R10`: vector, RIP, error code, CR2 after a
    /// `Fault`; results after success; zeros otherwise.
    pub regs: [RegRule; 4],
    /// `R8`.
    pub generation: GenRule,
}

/// What a thread with a frame inside the faulting domain (on another
/// vCPU, running when the domain goes down) gets when that frame returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bystander {
    /// `Fault` with `DOMAIN_DOWN` (`0x104`) and zeros: it learns only that
    /// the domain went down.
    DomainDown,
    /// Its own answer, as if nothing had happened.
    Unaffected,
}

/// What the VMM's own record (`System::faults`, `Domain::fault`) of the
/// faulting domain holds afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmmRecord {
    /// The vector or pseudo-vector.
    pub vector: u64,
    /// Whether RIP, error code and CR2 equal what the direct caller got
    /// (the full report); false where the caller got no report (`Timeout`).
    pub same_as_caller: bool,
    /// Text the report's message must contain.
    pub message: Option<&'static str>,
}

/// The faulting domain afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Unchanged: same generation, no restart, serving.
    Unchanged,
    /// Restarted once (generation + 1) and serving.
    Restarts,
    /// Its restart failed: `Dead`, and every later call gets `DomainDead`.
    Dead,
}

/// Every party's answer to one injection of a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The direct caller of the faulting domain.
    pub caller: CallerAnswer,
    /// Parties further up the chain get what the relaying faulter frames
    /// return: `Ok([RELAYED, depth − 1])`, the record of the direct caller
    /// as an OUT object, and the unchanged generation of the domain they
    /// called. The same for every kind, so not a field: see
    /// [`Expected::ABOVE`].
    pub bystander: Bystander,
    /// The VMM's record, `None` where nothing is recorded.
    pub vmm: Option<VmmRecord>,
    /// The domain's state afterwards.
    pub after: After,
}

impl Expected {
    /// What every party above the direct caller gets, for every kind: the
    /// relays' own success (they are healthy), never the fault.
    pub const ABOVE: &'static str =
        "Ok([RELAYED, depth - 1]) with the direct caller's record; R8 unchanged";

    /// Whether the faulting domain restarts (the VMM resets it once).
    pub fn restarts(&self) -> bool {
        self.after != After::Unchanged
    }
}

const ZERO: RegRule = RegRule::Exact(0);

fn fault(vector: u64, rip: RegRule, error_code: RegRule, cr2: RegRule) -> Expected {
    Expected {
        caller: CallerAnswer {
            status: ErrorCode::Fault as u64,
            regs: [RegRule::Exact(vector), rip, error_code, cr2],
            generation: GenRule::SameOrNext,
        },
        bystander: Bystander::DomainDown,
        vmm: Some(VmmRecord {
            vector,
            same_as_caller: true,
            message: None,
        }),
        after: After::Restarts,
    }
}

/// Not-present, write, user-mode: the bits of a CPL3 store to an unmapped page.
const STORE_TO_UNMAPPED: RegRule = RegRule::Masked {
    mask: 0b111,
    bits: 0b110,
};

/// The table.
pub(super) fn expected(kind: FaultKind) -> Expected {
    use RegRule::{InImage, Site as At};
    match kind {
        FaultKind::None => Expected {
            caller: CallerAnswer {
                status: 0,
                regs: [
                    RegRule::Exact(wire::NONE_MAGIC),
                    RegRule::Generation,
                    ZERO,
                    ZERO,
                ],
                generation: GenRule::Same,
            },
            bystander: Bystander::Unaffected,
            vmm: None,
            after: After::Unchanged,
        },
        FaultKind::DivideError => fault(0, At(Site::Divide), ZERO, ZERO),
        FaultKind::InvalidOpcode => fault(6, At(Site::Ud2), ZERO, ZERO),
        FaultKind::GeneralProtection => fault(13, At(Site::Privileged), ZERO, ZERO),
        FaultKind::PageFault => fault(
            14,
            At(Site::Wild),
            STORE_TO_UNMAPPED,
            RegRule::Exact(wire::WILD),
        ),
        FaultKind::StackOverflow => fault(14, InImage, STORE_TO_UNMAPPED, RegRule::GuardPage),
        FaultKind::MisalignedSse => fault(13, At(Site::Sse), ZERO, ZERO),
        FaultKind::Loop => Expected {
            caller: CallerAnswer {
                status: ErrorCode::Timeout as u64,
                regs: [ZERO; 4],
                generation: GenRule::SameOrNext,
            },
            bystander: Bystander::DomainDown,
            vmm: Some(VmmRecord {
                vector: pseudo_vector::BUDGET,
                same_as_caller: false,
                message: None,
            }),
            after: After::Restarts,
        },
        FaultKind::Panic => {
            let mut e = fault(pseudo_vector::PANIC, InImage, ZERO, ZERO);
            if let Some(v) = e.vmm.as_mut() {
                v.message = Some(wire::PANIC_MESSAGE);
            }
            e
        }
        FaultKind::Exit => Expected {
            caller: CallerAnswer {
                status: ErrorCode::CalleeExited as u64,
                regs: [ZERO; 4],
                generation: GenRule::Same,
            },
            bystander: Bystander::Unaffected,
            vmm: None,
            after: After::Unchanged,
        },
        FaultKind::RestartFault => {
            let mut e = fault(6, At(Site::Ud2), ZERO, ZERO);
            // The reset fails, so the generation never moves on.
            e.caller.generation = GenRule::Same;
            e.after = After::Dead;
            e
        }
    }
}

/// Where the faulting domain's image and guard pages lie, and where the
/// image's fault sites are: what [`RegRule`]s are judged against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// `[IMAGE_BASE, image_end)`.
    pub image: std::ops::Range<u64>,
    /// The first guard page, the distance between guard pages, and their
    /// number.
    pub guards: (u64, u64, u64),
    /// Site addresses, by [`Site::selector`].
    pub sites: [u64; 5],
}

impl Frame {
    fn site(&self, s: Site) -> u64 {
        self.sites
            .get(usize::try_from(s.selector()).unwrap_or(usize::MAX))
            .copied()
            .unwrap_or(0)
    }

    /// Does `x` satisfy `rule`, in an answer whose generation is `generation`?
    pub fn holds(&self, rule: RegRule, x: u64, generation: u64) -> bool {
        match rule {
            RegRule::Exact(v) => x == v,
            RegRule::Site(s) => x == self.site(s),
            RegRule::Masked { mask, bits } => x & mask == bits,
            RegRule::InImage => self.image.contains(&x),
            RegRule::GuardPage => {
                let (first, stride, count) = self.guards;
                (0..count).any(|i| {
                    let g = first + i * stride;
                    (g..g + shared_abi::layout::PAGE_SIZE).contains(&x)
                })
            }
            RegRule::Generation => x == generation,
        }
    }

    /// The table as the guest reads it (see `wire`): rules with sites
    /// resolved to this image's addresses.
    pub fn encode_table(&self) -> Vec<u64> {
        let mut words = vec![wire::EXPECT_MAGIC];
        for kind in FaultKind::ALL {
            let e = kind.expected();
            words.push(1);
            words.push(e.caller.status);
            for r in e.caller.regs {
                words.extend_from_slice(&match r {
                    RegRule::Exact(v) => [op::EXACT, v, 0, 0],
                    RegRule::Site(s) => [op::EXACT, self.site(s), 0, 0],
                    RegRule::Masked { mask, bits } => [op::MASKED, mask, bits, 0],
                    RegRule::InImage => [op::IN_RANGE, self.image.start, self.image.end, 0],
                    RegRule::GuardPage => {
                        let (first, stride, count) = self.guards;
                        [op::STRIDED_PAGE, first, stride, count]
                    }
                    RegRule::Generation => [op::IS_GENERATION, 0, 0, 0],
                });
            }
            words.push(match e.caller.generation {
                GenRule::Same => 0,
                GenRule::SameOrNext => 1,
            });
            words.push(u64::from(e.restarts()));
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame() -> Frame {
        Frame {
            image: 0x20_0000..0x21_0000,
            guards: (0x21_0000, 0x5000, 2),
            sites: [0x20_1000, 0x20_1010, 0x20_1020, 0x20_1030, 0x20_1040],
        }
    }

    #[test]
    fn every_kind_that_brings_its_domain_down_reports_and_restarts() {
        for kind in FaultKind::ALL {
            let e = kind.expected();
            let down = e.bystander == Bystander::DomainDown;
            assert_eq!(down, e.vmm.is_some(), "{kind}");
            assert_eq!(down, e.restarts(), "{kind}");
            let faulted = e.caller.status == ErrorCode::Fault as u64;
            assert_eq!(
                faulted,
                e.vmm.is_some_and(|v| v.same_as_caller),
                "{kind}: a Fault answer is the VMM's full report"
            );
        }
        assert_eq!(
            FaultKind::Loop.expected().caller.status,
            ErrorCode::Timeout as u64
        );
        assert_eq!(
            FaultKind::Exit.expected().caller.status,
            ErrorCode::CalleeExited as u64
        );
        assert_eq!(FaultKind::RestartFault.expected().after, After::Dead);
    }

    #[test]
    fn the_encoded_table_has_one_row_per_kind_with_sites_resolved() {
        let f = frame();
        let words = f.encode_table();
        assert_eq!(words.len(), wire::EXPECT_WORDS);
        let row = |k: FaultKind| &words[1 + k.index() * wire::EXPECT_ROW..][..wire::EXPECT_ROW];
        let ud = row(FaultKind::InvalidOpcode);
        assert_eq!(&ud[..6], &[1, 9, op::EXACT, 6, 0, 0]);
        assert_eq!(&ud[6..10], &[op::EXACT, 0x20_1010, 0, 0]);
        assert_eq!(&ud[18..], &[1, 1]);
        let none = row(FaultKind::None);
        assert_eq!(none[6], op::IS_GENERATION);
        assert_eq!(&none[18..], &[0, 0]);
        let so = row(FaultKind::StackOverflow);
        assert_eq!(&so[6..10], &[op::IN_RANGE, 0x20_0000, 0x21_0000, 0]);
        assert_eq!(&so[14..18], &[op::STRIDED_PAGE, 0x21_0000, 0x5000, 2]);
    }

    #[test]
    fn rules_judge_registers() {
        let f = frame();
        assert!(f.holds(RegRule::Site(Site::Sse), 0x20_1040, 0));
        assert!(!f.holds(RegRule::Site(Site::Sse), 0x20_1041, 0));
        assert!(f.holds(STORE_TO_UNMAPPED, 0x6, 0));
        assert!(f.holds(STORE_TO_UNMAPPED, 0x16, 0));
        assert!(!f.holds(STORE_TO_UNMAPPED, 0x7, 0));
        assert!(f.holds(RegRule::GuardPage, 0x21_5ff8, 0));
        assert!(!f.holds(RegRule::GuardPage, 0x21_6000, 0));
        assert!(f.holds(RegRule::InImage, 0x20_0000, 0));
        assert!(!f.holds(RegRule::InImage, 0x21_0000, 0));
        assert!(f.holds(RegRule::Generation, 3, 3));
        assert!(!f.holds(RegRule::Generation, 3, 4));
    }
}
