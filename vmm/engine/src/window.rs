//! The stack window's host memory: one stack per live thread of a system
//! with `mapped` domains, each its own host mapping, lent to one thread at
//! a time and mapped (as a KVM memory slot of its own) at the same guest
//! address in every domain the thread runs on it. A slot is zeroed when its
//! thread gives it back, so the next thread never reads an earlier one's
//! frames.

use crate::region::DataRegion;
use shared_abi::layout::WindowLayout;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use vm_memory::{GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// KVM memory-slot id of window slot `i` in every domain is
/// `WINDOW_MEMSLOT_BASE + i` (a domain's own memory is slot 0; other
/// windows take ids of their own below this).
pub const WINDOW_MEMSLOT_BASE: u32 = 0x1000;

/// Why a window slot could not be lent.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("every one of the {slots} stack-window slots is lent to a live thread")]
    Full {
        /// Slots in the window.
        slots: u32,
    },
    #[error("the host refused memory for a stack-window slot")]
    Map(#[source] vm_memory::mmap::MmapRegionError),
    #[error("the stack-window slot's memory could not be placed in a domain's view")]
    View(#[source] vm_memory::GuestRegionCollectionError),
}

/// The stack window of one system: its slots' host memory (made on first
/// use, kept for reuse) and which slots are free.
#[derive(Debug)]
pub struct StackWindow {
    layout: WindowLayout,
    regions: Vec<OnceLock<Arc<GuestRegionMmap>>>,
    free: Mutex<Vec<u32>>,
}

/// One slot, lent to one thread until it gives it back with
/// [`StackWindow::give`].
#[derive(Debug)]
pub struct WindowSlot {
    index: u32,
    bottom: u64,
    top: u64,
    region: Arc<GuestRegionMmap>,
}

impl WindowSlot {
    /// Its index in the window.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Its lowest usable guest address (a guard page lies below).
    pub fn bottom(&self) -> u64 {
        self.bottom
    }

    /// One past its highest guest address: where its first frame starts.
    pub fn top(&self) -> u64 {
        self.top
    }

    /// Its KVM memory-slot id (the same in every domain).
    pub fn memslot(&self) -> u32 {
        WINDOW_MEMSLOT_BASE + self.index
    }

    /// The host address of its memory (what a memory slot registers).
    pub fn host_addr(&self) -> u64 {
        self.region.as_ptr() as u64
    }

    /// A domain's memory with this slot added: what the VMM reads and
    /// writes on behalf of a frame that runs on the slot.
    pub fn view(&self, mem: &GuestMemoryMmap) -> Result<GuestMemoryMmap, WindowError> {
        mem.insert_region(Arc::clone(&self.region))
            .map_err(WindowError::View)
    }

    /// A domain's data region with this slot added: what descriptors and
    /// hypercall pointers of a frame on the slot may name (only this
    /// thread's own slot, never another thread's).
    pub fn region(&self, region: &DataRegion) -> DataRegion {
        let mut pieces = region.pieces().to_vec();
        pieces.push((self.bottom, self.top));
        DataRegion::from_pieces(pieces)
    }
}

impl StackWindow {
    /// A window cut as `layout`; no memory is taken until a slot is lent.
    pub fn new(layout: WindowLayout) -> Self {
        let slots = layout.slots();
        Self {
            layout,
            regions: (0..slots).map(|_| OnceLock::new()).collect(),
            // Popped from the end: slot 0 is lent first.
            free: Mutex::new((0..slots).rev().collect()),
        }
    }

    /// Slots not lent right now.
    pub fn free_slots(&self) -> usize {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Lend a free slot.
    pub fn take(&self) -> Result<WindowSlot, WindowError> {
        let index = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or(WindowError::Full {
                slots: self.layout.slots(),
            })?;
        match self.region(index) {
            Ok(region) => Ok(WindowSlot {
                index,
                bottom: self.layout.bottom(index),
                top: self.layout.top(index),
                region,
            }),
            Err(e) => {
                self.put_back(index);
                Err(e)
            }
        }
    }

    fn region(&self, index: u32) -> Result<Arc<GuestRegionMmap>, WindowError> {
        let cell = self.regions.get(index as usize).ok_or(WindowError::Full {
            slots: self.layout.slots(),
        })?;
        if let Some(r) = cell.get() {
            return Ok(Arc::clone(r));
        }
        let size = usize::try_from(self.layout.stack_size).unwrap_or(usize::MAX);
        let mapping = MmapRegion::new(size).map_err(WindowError::Map)?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(self.layout.bottom(index))).ok_or(
            WindowError::Full {
                slots: self.layout.slots(),
            },
        )?;
        Ok(Arc::clone(cell.get_or_init(|| Arc::new(region))))
    }

    /// Take a slot back: its memory is zeroed (given back to the host) and
    /// it is free for the next thread. The thread must have unmapped it
    /// from every domain.
    pub fn give(&self, slot: WindowSlot) {
        let len = usize::try_from(self.layout.stack_size).unwrap_or(0);
        // SAFETY: the range is exactly the private anonymous mapping owned
        // by the slot's region (kept alive by the `Arc` we hold); no vCPU
        // runs on it (it is mapped in no domain any more) and no copy
        // touches it; MADV_DONTNEED makes later reads return zeros.
        let rc = unsafe { libc::madvise(slot.region.as_ptr().cast(), len, libc::MADV_DONTNEED) };
        if rc != 0 {
            // Not zeroed: never lend it again rather than leak a frame.
            log::error!(
                "stack-window slot {} could not be zeroed ({}); retired",
                slot.index,
                std::io::Error::last_os_error()
            );
            return;
        }
        self.put_back(slot.index);
    }

    fn put_back(&self, index: u32) {
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    #[test]
    fn slots_are_lent_once_and_zeroed_on_return() {
        let w = StackWindow::new(WindowLayout { stack_size: 0x8000 });
        let total = w.free_slots();
        let a = w.take().unwrap();
        let b = w.take().unwrap();
        assert_ne!(a.index(), b.index());
        assert_eq!(w.free_slots(), total - 2);
        assert_eq!(a.top() - a.bottom(), 0x8000);
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let view = a.view(&mem).unwrap();
        view.write_obj(0xabu64, GuestAddress(a.top() - 8)).unwrap();
        let idx = a.index();
        w.give(a);
        w.give(b);
        assert_eq!(w.free_slots(), total);
        // The slot that comes back next is the one given last, zeroed.
        let c = w.take().unwrap();
        let c = if c.index() == idx {
            c
        } else {
            w.take().unwrap()
        };
        assert_eq!(c.index(), idx);
        let view = c.view(&mem).unwrap();
        assert_eq!(view.read_obj::<u64>(GuestAddress(c.top() - 8)).unwrap(), 0);
    }

    #[test]
    fn a_full_window_refuses() {
        let layout = WindowLayout {
            stack_size: shared_abi::layout::STACK_WINDOW_SIZE / 2,
        };
        let w = StackWindow::new(layout);
        assert_eq!(layout.slots(), 1);
        let _a = w.take().unwrap();
        assert!(matches!(w.take(), Err(WindowError::Full { slots: 1 })));
    }
}
