//! A domain's stack pool: the stacks that exist (its boot reservation, plus
//! any it grew under `stack_policy = "grow"`) and which of them are free.
//!
//! The address space of every stack up to the pool's maximum is laid out at
//! boot (the heap starts after the last one and never moves); a stack only
//! *exists* once the pool counts it, so growing touches no memory and takes
//! no lock: one compare-and-swap on the count hands out the next index. A
//! restart shrinks the pool back to its boot reservation.

use super::free_list::FreeList;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// The stacks of one domain.
#[derive(Debug)]
pub struct StackPool {
    /// Free stacks among `0..count`; room for `0..max`.
    free: FreeList,
    /// Stacks that exist: `boot..=max`.
    count: AtomicU32,
    /// Stacks reserved at boot (and after every restart).
    boot: u32,
    /// Times the pool grew by a stack (since the domain booted).
    grown: AtomicU64,
}

impl StackPool {
    /// `boot` stacks, all free, with room to grow to `max` (`max` is
    /// raised to `boot` if smaller: a fixed pool has `max == boot`).
    pub fn new(boot: u32, max: u32) -> Self {
        let max = max.max(boot);
        let free = FreeList::empty(max);
        // Given back in reverse, so stack 0 is on top, as in a full list.
        for i in (0..boot).rev() {
            free.give_back(i);
        }
        Self {
            free,
            count: AtomicU32::new(boot),
            boot,
            grown: AtomicU64::new(0),
        }
    }

    /// A free stack, if any: the most recently given back.
    pub fn take(&self) -> Option<u32> {
        self.free.take()
    }

    /// Add a stack and hand it out at once (it is never free in between),
    /// unless the pool already has its maximum.
    pub fn grow(&self) -> Option<u32> {
        let max = self.max();
        let index = self
            .count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        self.grown.fetch_add(1, Ordering::Relaxed);
        Some(index)
    }

    /// Give a stack back.
    pub fn give_back(&self, index: u32) {
        self.free.give_back(index);
    }

    /// Stacks that exist now.
    pub fn count(&self) -> u32 {
        self.count.load(Ordering::Acquire)
    }

    /// Stacks reserved at boot.
    pub fn boot(&self) -> u32 {
        self.boot
    }

    /// The most stacks the pool may have.
    pub fn max(&self) -> u32 {
        self.free.capacity()
    }

    /// Stacks free now.
    pub fn free_count(&self) -> usize {
        self.free.free_count()
    }

    /// Whether every existing stack is free (no frame holds one).
    pub fn all_free(&self) -> bool {
        self.free_count() == self.count() as usize
    }

    /// Times the pool grew since the domain booted (restarts included).
    pub fn times_grown(&self) -> u64 {
        self.grown.load(Ordering::Relaxed)
    }

    /// Back to the boot reservation, all free: for a restart, when no
    /// frame holds a stack and none can take one (the domain is being
    /// reset). `false`, with the pool unchanged in count, if a stack is out.
    pub fn shrink_to_boot(&self) -> bool {
        if !self.all_free() {
            return false;
        }
        while self.free.take().is_some() {}
        self.count.store(self.boot, Ordering::Release);
        for i in (0..self.boot).rev() {
            self.free.give_back(i);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn a_fixed_pool_never_grows() {
        let p = StackPool::new(2, 2);
        assert_eq!((p.take(), p.take(), p.take()), (Some(0), Some(1), None));
        assert_eq!(p.grow(), None);
        assert_eq!((p.count(), p.max(), p.times_grown()), (2, 2, 0));
        assert_eq!(StackPool::new(3, 1).max(), 3, "max is at least boot");
    }

    #[test]
    fn grows_to_its_max_and_no_further_then_shrinks_to_boot() {
        let p = StackPool::new(1, 3);
        assert_eq!(p.take(), Some(0));
        assert_eq!(p.take(), None);
        assert_eq!((p.grow(), p.grow(), p.grow()), (Some(1), Some(2), None));
        assert_eq!((p.count(), p.times_grown()), (3, 2));
        assert!(!p.shrink_to_boot(), "stacks are out");
        assert_eq!(p.count(), 3);
        for i in [2, 0, 1] {
            p.give_back(i);
        }
        assert_eq!(p.take(), Some(1), "grown stacks are reused first (LIFO)");
        p.give_back(1);
        assert!(p.shrink_to_boot());
        assert_eq!((p.count(), p.free_count()), (1, 1));
        assert_eq!((p.take(), p.take()), (Some(0), None));
        assert_eq!(p.grow(), Some(1), "it grows again after a shrink");
    }

    #[test]
    fn concurrent_growers_never_share_a_stack_nor_pass_the_max() {
        let p = StackPool::new(1, 8);
        let got = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..8 {
                        if let Some(i) = p.take().or_else(|| p.grow()) {
                            got.lock().unwrap().push(i);
                        }
                    }
                });
            }
        });
        let got = got.into_inner().unwrap();
        let unique: HashSet<_> = got.iter().copied().collect();
        assert_eq!(got.len(), 8, "exactly max stacks handed out");
        assert_eq!(unique, (0..8).collect());
        assert_eq!(p.count(), 8);
    }
}
