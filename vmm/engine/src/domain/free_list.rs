//! A lock-free LIFO free list of small indices: a domain's pool of stacks
//! and its idle vCPU slots. Threads entering the same domain never
//! serialise on a lock, and the index given back last — its stack or vCPU
//! still warm in the caches — is the next one handed out.
//!
//! The list lives in two atomics: `head` packs a 32-bit ABA tag with the
//! index (+1) of the first free stack; `next[i]` holds the index (+1) of the
//! stack after `i`. Every successful update bumps the tag, so a head that
//! was popped and pushed back between a load and its compare-exchange is
//! never mistaken for the one that was loaded (the classic Treiber ABA).

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

const EMPTY: u32 = 0;

fn pack(tag: u32, index_plus_one: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(index_plus_one)
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "splitting a packed word into its two halves"
)]
fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// Free indices `0..count` (stacks of one domain, or its vCPU slots).
#[derive(Debug)]
pub struct FreeList {
    head: AtomicU64,
    next: Box<[AtomicU32]>,
    free: AtomicUsize,
    count: u32,
}

impl FreeList {
    /// A list holding `0..count`, all free (0 on top).
    pub fn new(count: u32) -> Self {
        let next: Box<[AtomicU32]> = (0..count)
            .map(|i| AtomicU32::new(if i + 1 < count { i + 2 } else { EMPTY }))
            .collect();
        let head = if count > 0 { 1 } else { EMPTY };
        Self {
            head: AtomicU64::new(pack(0, head)),
            next,
            free: AtomicUsize::new(count as usize),
            count,
        }
    }

    /// A list with room for `0..count`, none of them free yet.
    pub fn empty(count: u32) -> Self {
        let next: Box<[AtomicU32]> = (0..count).map(|_| AtomicU32::new(EMPTY)).collect();
        Self {
            head: AtomicU64::new(pack(0, EMPTY)),
            next,
            free: AtomicUsize::new(0),
            count,
        }
    }

    /// Take a free index, if any: the most recently given back.
    pub fn take(&self) -> Option<u32> {
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(cur);
            let index = top.checked_sub(1)?;
            let after = self.next.get(index as usize)?.load(Ordering::Acquire);
            match self.head.compare_exchange_weak(
                cur,
                pack(tag.wrapping_add(1), after),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.free.fetch_sub(1, Ordering::Relaxed);
                    return Some(index);
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Give `index` back. An index out of range is refused (a VMM bug,
    /// logged); callers give back only indices they took (or, for an
    /// `empty` list, indices they own).
    pub fn give_back(&self, index: u32) {
        let Some(link) = self.next.get(index as usize) else {
            log::error!("index {index} given back but the list holds {}", self.count);
            return;
        };
        let mut cur = self.head.load(Ordering::Acquire);
        loop {
            let (tag, top) = unpack(cur);
            link.store(top, Ordering::Release);
            match self.head.compare_exchange_weak(
                cur,
                pack(tag.wrapping_add(1), index + 1),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    self.free.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(seen) => cur = seen,
            }
        }
    }

    /// Indices currently free.
    pub fn free_count(&self) -> usize {
        self.free.load(Ordering::Relaxed)
    }

    /// Indices the list can hold.
    pub fn capacity(&self) -> u32 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn take_all_then_give_back_lifo() {
        let p = FreeList::new(3);
        let taken: Vec<_> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(taken, [0, 1, 2]);
        assert_eq!(p.take(), None);
        p.give_back(1);
        p.give_back(2);
        assert_eq!(p.take(), Some(2), "the warmest stack first");
        assert_eq!(p.take(), Some(1));
        p.give_back(7);
        assert_eq!(p.free_count(), 0);
        assert_eq!(FreeList::new(0).take(), None);
        let e = FreeList::empty(2);
        assert_eq!(e.take(), None);
        e.give_back(1);
        assert_eq!((e.take(), e.take()), (Some(1), None));
    }

    #[test]
    fn threads_never_hold_the_same_stack() {
        let p = FreeList::new(4);
        let held = std::sync::Mutex::new(HashSet::new());
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20_000 {
                        if let Some(i) = p.take() {
                            assert!(held.lock().unwrap().insert(i), "stack {i} handed out twice");
                            std::hint::spin_loop();
                            assert!(held.lock().unwrap().remove(&i));
                            p.give_back(i);
                        }
                    }
                });
            }
        });
        assert_eq!(p.free_count(), 4);
        let all: HashSet<_> = std::iter::from_fn(|| p.take()).collect();
        assert_eq!(all, (0..4).collect());
    }
}
