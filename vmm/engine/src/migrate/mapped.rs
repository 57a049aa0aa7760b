//! Mapped stack mode: a thread's one stack in the stack window, mapped at
//! the same guest address in every `mapped` domain it runs in. Every frame
//! in a `mapped` domain runs on it, below the frame that called (or, when
//! the caller is on a pool stack, below the thread's deepest live window
//! frame, or at the slot's top for the first one).
//!
//! What this file owns: lending the thread its slot and mapping it
//! (pre-mapped into every reachable `mapped` domain at the thread's start,
//! or at the call into a domain that does not have it yet); the view of a
//! domain's memory and data region with the slot added, which the VMM uses
//! for every frame on the window; and the check of the caller's stack
//! pointer, a hostile guest's claim, before a frame goes below it.

use super::{Chain, Engine, Frame};
use crate::domain::Domain;
use crate::ids::DomainId;
use crate::manifest::{Mapping, StackMode};
use crate::region::DataRegion;
use crate::window::{StackWindow, WindowError, WindowSlot};
use shared_abi::layout::{MAPPED_MIN_STACK, RED_ZONE};
use shared_abi::ErrorCode;
use std::cell::RefCell;
use vm_memory::GuestMemoryMmap;

/// A domain's memory and data region as a frame on the window sees them:
/// the domain's own, plus the thread's window slot (only its own).
#[derive(Debug)]
pub(super) struct FrameView {
    pub(super) mem: GuestMemoryMmap,
    pub(super) region: DataRegion,
}

/// The slot a thread holds and the domains it is mapped into. Dropped
/// with the chain: every mapping still there goes, then the slot is zeroed
/// and free for another thread.
pub(super) struct ThreadWindow<'e> {
    window: &'e StackWindow,
    slot: Option<WindowSlot>,
    /// Domains the slot is mapped into now.
    mapped: RefCell<Vec<&'e Domain>>,
}

impl<'e> ThreadWindow<'e> {
    /// Lend a slot of `window`; pre-mapped, it goes into each of `reach`
    /// at once.
    pub(super) fn take(
        window: &'e StackWindow,
        mapping: Mapping,
        reach: impl Iterator<Item = &'e Domain>,
    ) -> Result<Self, WindowError> {
        let tw = Self {
            window,
            slot: Some(window.take()?),
            mapped: RefCell::new(Vec::new()),
        };
        if mapping == Mapping::Premapped {
            for d in reach {
                // A domain that refuses it is mapped at the call instead.
                let _ = tw.map(d);
            }
        }
        Ok(tw)
    }

    /// The slot (present until the drop).
    pub(super) fn slot(&self) -> Option<&WindowSlot> {
        self.slot.as_ref()
    }

    /// Whether the slot is mapped into `domain` now.
    fn is_mapped(&self, domain: DomainId) -> bool {
        self.mapped.borrow().iter().any(|d| d.id == domain)
    }

    fn map(&self, domain: &'e Domain) -> Result<(), ErrorCode> {
        let Some(slot) = &self.slot else {
            return Err(ErrorCode::Internal);
        };
        if let Err(e) = domain.map_window(slot) {
            log::warn!(
                "[{}] mapping window slot {} failed: {e}",
                domain.name,
                slot.index()
            );
            return Err(ErrorCode::Internal);
        }
        self.mapped.borrow_mut().push(domain);
        Ok(())
    }

    /// Make sure the slot is mapped into `domain` for a new frame there:
    /// `Ok(true)` if this frame mapped it (and must unmap it when it goes:
    /// map-on-call, or a domain pre-mapping missed).
    pub(super) fn map_for_frame(&self, domain: &'e Domain) -> Result<bool, ErrorCode> {
        if self.is_mapped(domain.id) {
            return Ok(false);
        }
        self.map(domain).map(|()| true)
    }

    /// The frame that mapped the slot into `domain` left: unmap it (the
    /// pre-mapped variant keeps its mappings until the thread ends).
    pub(super) fn frame_left(&self, domain: &Domain) {
        let Some(slot) = &self.slot else { return };
        let mut mapped = self.mapped.borrow_mut();
        if let Some(i) = mapped.iter().position(|d| d.id == domain.id) {
            let d = mapped.swap_remove(i);
            d.unmap_window(slot);
        }
    }

    /// The view of `domain` a frame on the slot uses.
    pub(super) fn view(&self, domain: &Domain) -> Result<FrameView, ErrorCode> {
        let Some(slot) = &self.slot else {
            return Err(ErrorCode::Internal);
        };
        let mem = slot.view(domain.mem()).map_err(|e| {
            log::error!("[{}] window view: {e}", domain.name);
            ErrorCode::Internal
        })?;
        Ok(FrameView {
            mem,
            region: slot.region(&domain.region),
        })
    }
}

impl Drop for ThreadWindow<'_> {
    fn drop(&mut self) {
        let Some(slot) = self.slot.take() else { return };
        for d in self.mapped.get_mut().drain(..) {
            d.unmap_window(&slot);
        }
        self.window.give(slot);
    }
}

/// Where a new window frame's stack starts, and how much it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WindowTop {
    /// The frame's top: objects and the invocation frame go below it.
    pub(super) top: u64,
    /// Bytes objects and the invocation frame may take (the callee keeps
    /// at least [`MAPPED_MIN_STACK`] below them).
    pub(super) budget: u64,
}

/// Where a frame on the window called from a frame with stack pointer
/// `rsp` (a guest's claim), whose own frame lies in `[bottom, frame_top)`,
/// may start: below the red zone, 16-aligned; `BadStack` if `rsp` is not
/// in the caller's part of the slot or leaves the callee less than
/// [`MAPPED_MIN_STACK`].
pub(super) fn below_caller(rsp: u64, bottom: u64, frame_top: u64) -> Result<u64, ErrorCode> {
    if rsp > frame_top || rsp < bottom {
        return Err(ErrorCode::BadStack);
    }
    let top = rsp.saturating_sub(RED_ZONE) & !15;
    if top < bottom.saturating_add(MAPPED_MIN_STACK) {
        return Err(ErrorCode::BadStack);
    }
    Ok(top)
}

/// The room a frame starting at `top` of a slot whose lowest byte is
/// `bottom` has for its objects and invocation frame.
pub(super) fn window_top(top: u64, bottom: u64) -> Result<WindowTop, ErrorCode> {
    let budget = top
        .checked_sub(bottom.saturating_add(MAPPED_MIN_STACK))
        .ok_or(ErrorCode::BadStack)?;
    Ok(WindowTop { top, budget })
}

impl<'e, E: Engine> Chain<'e, E> {
    /// Lend this thread a window slot if it can reach a `mapped` domain
    /// from `start` and has none yet. `Err` if the window is full.
    pub(super) fn ensure_window(&mut self, start: &'e Domain) -> Result<(), WindowError> {
        if self.window.is_some() {
            return Ok(());
        }
        let Some(window) = self.engine.window() else {
            return Ok(());
        };
        let reach = self.engine.mapped_reach(start.id);
        if reach.is_empty() {
            return Ok(());
        }
        let engine = self.engine;
        let domains = reach.iter().filter_map(|d| engine.domain(*d));
        self.window = Some(ThreadWindow::take(
            window,
            engine.window_mapping(),
            domains,
        )?);
        Ok(())
    }

    /// Where the next window frame starts: below the deepest live window
    /// frame's noted floor (its checked stack pointer less the red zone,
    /// see [`Chain::note_window_floor`]), or at the slot's top for the
    /// thread's first one.
    pub(super) fn next_window_top(&self) -> Result<WindowTop, ErrorCode> {
        let slot = self
            .window
            .as_ref()
            .and_then(ThreadWindow::slot)
            .ok_or(ErrorCode::Internal)?;
        let floor = self
            .frames
            .iter()
            .rev()
            .find_map(|f| f.window_floor)
            .unwrap_or(slot.top());
        window_top(floor, slot.bottom())
    }

    /// The top frame runs on the window and calls out: note how far down
    /// its stack is live (below its checked stack pointer and red zone),
    /// so a later window frame goes below it.
    pub(super) fn note_window_floor(&mut self) -> Result<(), ErrorCode> {
        let Some(bottom) = self
            .window
            .as_ref()
            .and_then(ThreadWindow::slot)
            .map(WindowSlot::bottom)
        else {
            return Ok(());
        };
        let Some(top) = self.frames.last_mut() else {
            return Ok(());
        };
        if top.view.is_none() {
            return Ok(());
        }
        let floor = below_caller(top.vcpu.regs().rsp, bottom, top.top)?;
        top.window_floor = Some(floor);
        Ok(())
    }

    /// A frame leaves: if it mapped the window slot into its domain, the
    /// mapping goes with it.
    pub(super) fn window_frame_left(&self, frame: &Frame<'_>) {
        if frame.maps_window {
            if let Some(w) = &self.window {
                w.frame_left(frame.domain);
            }
        }
    }
}

/// Whether frames in `domain` run on the window.
pub(super) fn on_window(domain: &Domain) -> bool {
    domain.stack_mode == StackMode::Mapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_stack_pointer_is_checked() {
        let (bottom, top) = (0x1000_1000, 0x1004_1000);
        assert_eq!(below_caller(top, bottom, top), Ok(top - RED_ZONE));
        assert_eq!(below_caller(top - 8, bottom, top), Ok(top - RED_ZONE - 16));
        assert_eq!(below_caller(top + 8, bottom, top), Err(ErrorCode::BadStack));
        assert_eq!(
            below_caller(bottom - 8, bottom, top),
            Err(ErrorCode::BadStack)
        );
        assert_eq!(
            below_caller(bottom + MAPPED_MIN_STACK, bottom, top),
            Err(ErrorCode::BadStack),
            "no room for the callee below the red zone"
        );
        assert_eq!(
            below_caller(u64::MAX, bottom, top),
            Err(ErrorCode::BadStack)
        );
        assert_eq!(below_caller(0, bottom, top), Err(ErrorCode::BadStack));
        let t = below_caller(top - 0x1003, bottom, top).unwrap();
        assert_eq!(t % 16, 0);
        assert!(t + RED_ZONE <= top - 0x1003);
    }

    proptest::proptest! {
        /// Whatever stack pointer a guest claims, an accepted one lies in
        /// the caller's part of the slot and the callee's top is 16-aligned,
        /// below the red zone, with the minimum stack left below it.
        #[test]
        fn accepted_stack_pointers_leave_room(rsp in proptest::prelude::any::<u64>(),
                                              near in 0u64..0x5_0000, pick in 0u8..2) {
            let (bottom, top) = (0x1000_1000u64, 0x1004_1000u64);
            let rsp = if pick == 0 { rsp } else { bottom.wrapping_sub(0x1000).wrapping_add(near) };
            match below_caller(rsp, bottom, top) {
                Ok(t) => {
                    proptest::prop_assert!((bottom..=top).contains(&rsp));
                    proptest::prop_assert_eq!(t % 16, 0);
                    proptest::prop_assert!(t + RED_ZONE <= rsp);
                    proptest::prop_assert!(t >= bottom + MAPPED_MIN_STACK);
                    proptest::prop_assert!(window_top(t, bottom).is_ok());
                }
                Err(e) => {
                    proptest::prop_assert_eq!(e, ErrorCode::BadStack);
                    proptest::prop_assert!(
                        rsp < bottom || rsp > top || rsp < bottom + MAPPED_MIN_STACK + RED_ZONE + 16
                    );
                }
            }
        }
    }

    #[test]
    fn a_window_frame_keeps_the_minimum_below_it() {
        let bottom = 0x1000_1000;
        let w = window_top(bottom + MAPPED_MIN_STACK + 0x100, bottom).unwrap();
        assert_eq!(w.budget, 0x100);
        assert_eq!(window_top(bottom + 0x10, bottom), Err(ErrorCode::BadStack));
    }
}
