//! Page-aligned heap buffers: the objects the VMM can lend
//! ([`Arg::lend`](crate::Arg::lend)) instead of copying.

use alloc::alloc::{alloc_zeroed, dealloc, Layout};
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;
use shared_abi::layout::PAGE_SIZE;

/// A zeroed heap buffer of whole pages, page-aligned: lendable as a whole
/// (and any page-aligned run of whole pages inside it).
pub struct PageBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `PageBuf` owns its allocation, like a `Box<[u8]>`.
unsafe impl Send for PageBuf {}
// SAFETY: shared access is read-only, like a `Box<[u8]>`.
unsafe impl Sync for PageBuf {}

impl PageBuf {
    /// `pages` zeroed pages, or `None` if the heap cannot hold them (or
    /// `pages` is 0).
    pub fn new(pages: usize) -> Option<Self> {
        let len = pages.checked_mul(PAGE_SIZE as usize)?;
        if len == 0 {
            return None;
        }
        let layout = Layout::from_size_align(len, PAGE_SIZE as usize).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) })?;
        Some(Self { ptr, len })
    }
}

impl Deref for PageBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `len` initialised (zeroed) bytes owned by `self`.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for PageBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for PageBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this very layout (valid there).
        unsafe {
            dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.len, PAGE_SIZE as usize),
            );
        }
    }
}
