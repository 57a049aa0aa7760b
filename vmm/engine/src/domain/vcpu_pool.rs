//! A domain's vCPUs: created on demand (at most one per stack, plus the
//! boot vCPU), kept for the domain's lifetime, and handed from frame to
//! frame without a shared lock. Each vCPU lives in its own slot; the
//! lock-free [`FreeList`] of idle slot numbers decides who owns a slot, so a
//! slot's mutex is only ever taken by its one owner and never contended.

use super::free_list::FreeList;
use crate::vcpu::Vcpu;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// The vCPUs of one domain.
#[derive(Debug)]
pub struct VcpuPool {
    slots: Box<[Mutex<Option<Vcpu>>]>,
    idle: FreeList,
    created: AtomicU32,
    /// Slots whose vCPU is gone (creation or reset failed). KVM keeps a
    /// vCPU id taken once it was created, even after its fd is closed, so
    /// such a slot is never reused; it is only no longer counted as live.
    lost: AtomicU32,
    /// Test hook: creations still to fail as if KVM were out of memory.
    #[cfg(feature = "test-util")]
    fail_next: AtomicU32,
}

impl VcpuPool {
    /// Room for `capacity` vCPUs, none created yet.
    pub fn new(capacity: u32) -> Self {
        Self {
            slots: (0..capacity).map(|_| Mutex::new(None)).collect(),
            idle: FreeList::empty(capacity),
            created: AtomicU32::new(0),
            lost: AtomicU32::new(0),
            #[cfg(feature = "test-util")]
            fail_next: AtomicU32::new(0),
        }
    }

    /// The most vCPUs this pool will ever create.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// An idle vCPU, or a new one made by `create(slot)` while there is room.
    pub fn take(
        &self,
        create: impl FnOnce(u32) -> Result<Vcpu, kvm_ioctls::Error>,
    ) -> Result<Vcpu, kvm_ioctls::Error> {
        while let Some(i) = self.idle.take() {
            let parked = self
                .slots
                .get(i as usize)
                .and_then(|s| s.lock().ok().and_then(|mut s| s.take()));
            if let Some(v) = parked {
                return Ok(v);
            }
        }
        let slot = self.created.fetch_add(1, Ordering::AcqRel);
        if slot as usize >= self.slots.len() {
            self.created.fetch_sub(1, Ordering::AcqRel);
            return Err(kvm_ioctls::Error::new(libc::ENOSPC));
        }
        let made = if self.injected_failure() {
            Err(kvm_ioctls::Error::new(libc::ENOMEM))
        } else {
            create(slot)
        };
        made.inspect_err(|e| {
            // The id may be taken in KVM: the slot stays used, and is lost.
            log::warn!("vCPU slot {slot} could not be created: {e}");
            self.lose();
        })
    }

    /// Make the next `n` creations fail (tests only).
    #[cfg(feature = "test-util")]
    pub fn fail_next_creations(&self, n: u32) {
        self.fail_next.store(n, Ordering::Release);
    }

    #[cfg(feature = "test-util")]
    fn injected_failure(&self) -> bool {
        self.fail_next
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    #[cfg(not(feature = "test-util"))]
    fn injected_failure(&self) -> bool {
        false
    }

    /// A vCPU taken from the pool was destroyed (its reset failed): it will
    /// never be given back, so it stops counting as live.
    pub fn lose(&self) {
        self.lost.fetch_add(1, Ordering::AcqRel);
    }

    /// Park `v` in its slot and mark the slot idle.
    pub fn give(&self, v: Vcpu) {
        let i = v.slot();
        match self.slots.get(i as usize).map(|s| s.lock()) {
            Some(Ok(mut s)) => {
                *s = Some(v);
                drop(s);
                self.idle.give_back(i);
            }
            _ => log::error!("vCPU slot {i} does not exist; vCPU dropped"),
        }
    }

    /// Slots used so far (`0..created()`), lost ones included: the slots
    /// whose TSS the domain's memory must hold.
    pub fn created(&self) -> u32 {
        self.created
            .load(Ordering::Acquire)
            .min(u32::try_from(self.slots.len()).unwrap_or(u32::MAX))
    }

    /// vCPUs that exist: created and not lost. When the domain is idle,
    /// every one of them is parked.
    pub fn live(&self) -> u32 {
        self.created
            .load(Ordering::Acquire)
            .saturating_sub(self.lost.load(Ordering::Acquire))
    }

    /// Whether [`VcpuPool::take`] could hand out a vCPU now: one is idle,
    /// or a slot is still unused (a racy hint, for a growing stack pool).
    pub fn can_supply(&self) -> bool {
        self.idle.free_count() > 0 || (self.created() as usize) < self.slots.len()
    }

    /// vCPUs parked idle right now.
    pub fn idle_count(&self) -> usize {
        self.idle.free_count()
    }

    /// Apply `f` to every idle vCPU (the caller guarantees none is being
    /// taken meanwhile, e.g. during a reset with no frame in the domain).
    pub fn for_each_idle(&self, mut f: impl FnMut(&mut Vcpu)) {
        for slot in self.slots.iter() {
            if let Ok(mut s) = slot.lock() {
                if let Some(v) = s.as_mut() {
                    f(v);
                }
            }
        }
    }
}
