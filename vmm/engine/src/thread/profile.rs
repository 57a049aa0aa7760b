//! Profiling samples a chain keeps when `ferry bench` asks for them: the
//! VMM's own cycles per call+return and the cost of each copy. Fixed
//! capacity, so a profiled call still allocates nothing.

use super::arglist::ArgPlan;
use arrayvec::ArrayVec;

/// Samples one chain keeps (later ones are dropped, not reallocated for).
pub const WORK_LOG: usize = 4096;

/// The VMM's object copies of one call+return, timed with the host TSC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopySample {
    /// Bytes copied into the callee (IN and INOUT objects).
    pub in_bytes: u64,
    /// Cycles of the copy in (OUT zero-fill included).
    pub in_cycles: u64,
    /// Bytes copied back (OUT and INOUT objects, on success).
    pub out_bytes: u64,
    /// Cycles of the copy back.
    pub out_cycles: u64,
}

impl CopySample {
    /// The sample of one call with `plan`: bytes from the plan, cycles measured.
    pub fn of(plan: &ArgPlan, in_cycles: u64, copied_back: bool, out_cycles: u64) -> Self {
        let bytes = |keep: fn(shared_abi::ArgMode) -> bool| -> u64 {
            plan.objects()
                .iter()
                .filter(|p| keep(p.mode) && !p.lent && !p.in_place)
                .map(|p| p.len())
                .sum()
        };
        Self {
            in_bytes: bytes(shared_abi::ArgMode::copies_in),
            in_cycles,
            out_bytes: if copied_back {
                bytes(shared_abi::ArgMode::copies_out)
            } else {
                0
            },
            out_cycles,
        }
    }
}

/// Per call+return, the VMM's own cycles (call path plus return path) and
/// the copies.
#[derive(Debug)]
pub struct WorkLog {
    work: ArrayVec<u64, WORK_LOG>,
    copies: ArrayVec<CopySample, WORK_LOG>,
}

impl WorkLog {
    /// An empty log whose pages are already touched: a first write to a
    /// fresh page would be a page fault inside the interval being measured
    /// (it showed up as the p99 of VMM work).
    pub fn prefaulted() -> Box<Self> {
        let mut log = Box::new(Self {
            work: ArrayVec::new(),
            copies: ArrayVec::new(),
        });
        log.work.extend(std::iter::repeat_n(0, WORK_LOG));
        log.copies
            .extend(std::iter::repeat_n(CopySample::default(), WORK_LOG));
        log.work.clear();
        log.copies.clear();
        log
    }

    /// Record one call+return's VMM cycles (dropped when full).
    pub fn work(&mut self, cycles: u64) {
        let _ = self.work.try_push(cycles);
    }

    /// Record one call+return's copies (dropped when full).
    pub fn copy(&mut self, sample: CopySample) {
        let _ = self.copies.try_push(sample);
    }

    /// The VMM-work samples so far.
    pub fn work_samples(&self) -> &[u64] {
        &self.work
    }

    /// The copy samples so far.
    pub fn copy_samples(&self) -> &[CopySample] {
        &self.copies
    }
}
