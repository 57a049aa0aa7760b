//! The latency sample ring, announced to the VMM in `Hello` and read by it
//! after the run: no exit per sample.

use crate::hypercall::{hypercall_scalar, rdtsc};
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, Ordering};
use shared_abi::{Hypercall, Sample, FLOOR_SLOT};

/// Samples the ring holds; older ones are overwritten (`count % capacity`).
pub const SAMPLE_CAPACITY: usize = 8192;

/// The ring. Written by any vCPU of the domain, read by the VMM only after
/// the run, hence plain (volatile) stores behind an atomic index.
pub(crate) struct Ring(UnsafeCell<[Sample; SAMPLE_CAPACITY]>);

// SAFETY: every writer claims a distinct index with `fetch_add` on
// `SAMPLE_COUNT` before storing; nothing in the guest reads the ring.
unsafe impl Sync for Ring {}

pub(crate) static SAMPLES: Ring = Ring(UnsafeCell::new(
    [Sample {
        slot: 0,
        reserved: 0,
        cycles: 0,
    }; SAMPLE_CAPACITY],
));

/// Samples ever recorded.
pub(crate) static SAMPLE_COUNT: AtomicU64 = AtomicU64::new(0);

impl Ring {
    /// Guest address of the first sample.
    pub(crate) fn addr(&self) -> u64 {
        self.0.get() as u64
    }
}

/// Record one measurement.
#[inline]
pub(crate) fn record(slot: u32, cycles: u64) {
    let i = SAMPLE_COUNT.fetch_add(1, Ordering::Relaxed) as usize % SAMPLE_CAPACITY;
    let sample = Sample {
        slot,
        reserved: 0,
        cycles,
    };
    // SAFETY: `i` is in bounds and was claimed by this thread alone (until
    // the ring wraps 8192 times during one store, which it cannot).
    unsafe { core::ptr::write_volatile(SAMPLES.0.get().cast::<Sample>().add(i), sample) };
}

/// Record one measurement of `cycles` under `slot` in the sample ring the
/// VMM reads after the run, so an image can add its own baselines (e.g.
/// `shared_abi::FUNCTION_SLOT` for a plain function call). [`call`](crate::call)
/// and [`measure_floor`] record theirs automatically. Safe from any number
/// of vCPUs at once.
pub fn record_sample(slot: u32, cycles: u64) {
    record(slot, cycles);
}

/// Measure the exit floor: `n` `Nop` hypercalls, each timed exactly like a
/// `Call` and recorded with `slot == FLOOR_SLOT`, so latencies can be
/// reported as a ratio to it.
pub fn measure_floor(n: u32) {
    for _ in 0..n {
        let t0 = rdtsc();
        hypercall_scalar(Hypercall::Nop, [0; 6]);
        let t1 = rdtsc();
        record(FLOOR_SLOT, t1.wrapping_sub(t0));
    }
}
