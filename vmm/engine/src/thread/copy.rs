//! Moving objects between two guests' memories: straight from one mmap to
//! the other through `vm-memory` volatile slices, no bounce buffer. Ranges
//! come from a validated [`ArgPlan`]; a failure here means a VMM bug or a
//! plan used with the wrong memory, and is reported, never unwrapped.
//!
//! When someone outside the guests must judge what crossed (the call
//! observer), a copy goes through a host buffer instead and the buffer is
//! kept ([`Kept`]): the bytes written are exactly the bytes kept, whatever
//! another vCPU of either guest writes meanwhile. Without a keeper nothing
//! changes: no buffer, no allocation.

use super::arglist::ArgPlan;
use crate::guest_io::GuestMemError;
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileSlice};

static ZEROS: [u8; 4096] = [0; 4096];

/// The `len` bytes of `mem` at `addr`, checked against that memory.
fn slice(
    mem: &GuestMemoryMmap,
    addr: u64,
    len: u64,
) -> Result<VolatileSlice<'_, ()>, GuestMemError> {
    let n = usize::try_from(len).map_err(|_| GuestMemError {
        addr,
        len: usize::MAX,
    })?;
    mem.get_slice(GuestAddress(addr), n)
        .map_err(|_| GuestMemError { addr, len: n })
}

/// The source and destination slices of one `len`-byte move, checked
/// against both memories.
fn slices<'m>(
    src: &'m GuestMemoryMmap,
    from: u64,
    dst: &'m GuestMemoryMmap,
    to: u64,
    len: u64,
) -> Result<(VolatileSlice<'m, ()>, VolatileSlice<'m, ()>), GuestMemError> {
    Ok((slice(src, from, len)?, slice(dst, to, len)?))
}

fn copy(
    src: &GuestMemoryMmap,
    from: u64,
    dst: &GuestMemoryMmap,
    to: u64,
    len: u64,
) -> Result<(), GuestMemError> {
    let (s, d) = slices(src, from, dst, to, len)?;
    s.copy_to_volatile_slice(d);
    Ok(())
}

/// The bytes a copy moved, one entry per object of the plan in descriptor
/// order (empty for an object the copy did not move in that direction).
pub type Kept = Vec<Vec<u8>>;

/// Copy through a host buffer: read the source once, write those very
/// bytes, keep them.
fn copy_kept(
    src: &GuestMemoryMmap,
    from: u64,
    dst: &GuestMemoryMmap,
    to: u64,
    len: u64,
) -> Result<Vec<u8>, GuestMemError> {
    let (s, d) = slices(src, from, dst, to, len)?;
    let mut buf = vec![0u8; s.len()];
    if s.copy_to(&mut buf[..]) != buf.len() {
        return Err(GuestMemError {
            addr: from,
            len: buf.len(),
        });
    }
    d.copy_from(&buf[..]);
    Ok(buf)
}

/// Copy one object, through a kept buffer when `keep` (else the bytes are
/// not kept and the returned buffer is empty, unallocated).
fn copy_maybe_kept(
    src: &GuestMemoryMmap,
    from: u64,
    dst: &GuestMemoryMmap,
    to: u64,
    len: u64,
    keep: bool,
) -> Result<Vec<u8>, GuestMemError> {
    if keep {
        copy_kept(src, from, dst, to, len)
    } else {
        copy(src, from, dst, to, len).map(|()| Vec::new())
    }
}

/// Zero `len` bytes of `dst` at `to` (checked against that memory).
pub fn zero(dst: &GuestMemoryMmap, to: u64, len: u64) -> Result<(), GuestMemError> {
    let d = slice(dst, to, len)?;
    let n = d.len();
    let mut off = 0;
    while off < n {
        let chunk = (n - off).min(ZEROS.len());
        let part = d
            .subslice(off, chunk)
            .map_err(|_| GuestMemError { addr: to, len: n })?;
        part.copy_from(ZEROS.get(..chunk).unwrap_or(&[]));
        off += chunk;
    }
    Ok(())
}

/// Lay the objects of `plan` on the callee stack whose top is `top`: IN and
/// INOUT objects copied from the caller, OUT objects zero-filled. With
/// `keep`, every IN/INOUT object's bytes are kept there as copied.
pub fn copy_in(
    caller: &GuestMemoryMmap,
    callee: &GuestMemoryMmap,
    plan: &ArgPlan,
    top: u64,
    mut keep: Option<&mut Kept>,
) -> Result<(), GuestMemError> {
    for p in plan.objects() {
        let to = top - p.offset_from_top;
        let bytes = if p.is_empty() || p.lent || p.in_place {
            // A lent object is mapped (the lease, not this); one in place
            // is already where the callee runs.
            Vec::new()
        } else if p.mode.copies_in() {
            copy_maybe_kept(caller, p.caller.addr(), callee, to, p.len(), keep.is_some())?
        } else {
            zero(callee, to, p.len())?;
            Vec::new()
        };
        if let Some(k) = keep.as_deref_mut() {
            k.push(bytes);
        }
    }
    Ok(())
}

/// Copy the OUT and INOUT objects of `plan` back from the callee stack whose
/// top is `top` into the caller's ranges. With `keep`, every OUT/INOUT
/// object's bytes are kept there as copied.
pub fn copy_out(
    callee: &GuestMemoryMmap,
    caller: &GuestMemoryMmap,
    plan: &ArgPlan,
    top: u64,
    mut keep: Option<&mut Kept>,
) -> Result<(), GuestMemError> {
    for p in plan.objects() {
        let bytes = if p.is_empty() || p.lent || p.in_place || !p.mode.copies_out() {
            Vec::new()
        } else {
            copy_maybe_kept(
                callee,
                top - p.offset_from_top,
                caller,
                p.caller.addr(),
                p.len(),
                keep.is_some(),
            )?
        };
        if let Some(k) = keep.as_deref_mut() {
            k.push(bytes);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::arglist::{validate, INVOCATION_FOOTPRINT};
    use super::*;
    use crate::region::DataRegion;
    use shared_abi::{ArgDesc, ArgMode, CallRequest};
    use vm_memory::Bytes;

    #[test]
    fn in_out_inout_move_the_right_way() {
        let a = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let b = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        a.write_slice(&[1; 8], GuestAddress(0x100)).unwrap();
        a.write_slice(&[2; 8], GuestAddress(0x200)).unwrap();
        a.write_slice(&[3; 8], GuestAddress(0x300)).unwrap();
        b.write_slice(&[0xee; 0x1000], GuestAddress(0x8000))
            .unwrap();
        let mut req = CallRequest {
            nargs: 3,
            ..Default::default()
        };
        req.args[0] = ArgDesc {
            addr: 0x100,
            len: 8,
            mode: ArgMode::In as u32,
            flags: 0,
        };
        req.args[1] = ArgDesc {
            addr: 0x200,
            len: 8,
            mode: ArgMode::Out as u32,
            flags: 0,
        };
        req.args[2] = ArgDesc {
            addr: 0x300,
            len: 8,
            mode: ArgMode::InOut as u32,
            flags: 0,
        };
        let plan = validate(&req, &DataRegion::from_pieces(vec![(0, 0x1000)]), 0x1000).unwrap();
        let top = 0x9000;
        copy_in(&a, &b, &plan, top, None).unwrap();
        let at = |i: usize| GuestAddress(top - plan.objects()[i].offset_from_top);
        assert_eq!(b.read_obj::<[u8; 8]>(at(0)).unwrap(), [1; 8]);
        assert_eq!(
            b.read_obj::<[u8; 8]>(at(1)).unwrap(),
            [0; 8],
            "OUT is zero-filled"
        );
        assert_eq!(b.read_obj::<[u8; 8]>(at(2)).unwrap(), [3; 8]);
        assert!(plan.invocation_offset == 48 + INVOCATION_FOOTPRINT);
        for i in 0..3 {
            b.write_slice(&[9; 8], at(i)).unwrap();
        }
        copy_out(&b, &a, &plan, top, None).unwrap();
        assert_eq!(
            a.read_obj::<[u8; 8]>(GuestAddress(0x100)).unwrap(),
            [1; 8],
            "IN never written back"
        );
        assert_eq!(a.read_obj::<[u8; 8]>(GuestAddress(0x200)).unwrap(), [9; 8]);
        assert_eq!(a.read_obj::<[u8; 8]>(GuestAddress(0x300)).unwrap(), [9; 8]);
    }

    #[test]
    fn kept_copies_hold_exactly_the_bytes_moved() {
        let a = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        let b = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
        a.write_slice(&[1; 8], GuestAddress(0x100)).unwrap();
        a.write_slice(&[3; 5], GuestAddress(0x300)).unwrap();
        let mut req = CallRequest {
            nargs: 4,
            ..Default::default()
        };
        let desc = |addr, len, mode: ArgMode| ArgDesc {
            addr,
            len,
            mode: mode as u32,
            flags: 0,
        };
        req.args[0] = desc(0x100, 8, ArgMode::In);
        req.args[1] = desc(0x200, 8, ArgMode::Out);
        req.args[2] = desc(0x300, 5, ArgMode::InOut);
        req.args[3] = desc(0x400, 0, ArgMode::InOut);
        let plan = validate(&req, &DataRegion::from_pieces(vec![(0, 0x1000)]), 0x1000).unwrap();
        let top = 0x9000;
        let mut inputs = Kept::new();
        copy_in(&a, &b, &plan, top, Some(&mut inputs)).unwrap();
        assert_eq!(inputs, [vec![1; 8], vec![], vec![3; 5], vec![]]);
        let at = |i: usize| GuestAddress(top - plan.objects()[i].offset_from_top);
        assert_eq!(b.read_obj::<[u8; 8]>(at(1)).unwrap(), [0; 8]);
        b.write_slice(&[7; 8], at(1)).unwrap();
        b.write_slice(&[8; 5], at(2)).unwrap();
        let mut outputs = Kept::new();
        copy_out(&b, &a, &plan, top, Some(&mut outputs)).unwrap();
        assert_eq!(outputs, [vec![], vec![7; 8], vec![8; 5], vec![]]);
        assert_eq!(a.read_obj::<[u8; 8]>(GuestAddress(0x200)).unwrap(), [7; 8]);
        assert_eq!(a.read_obj::<[u8; 5]>(GuestAddress(0x300)).unwrap(), [8; 5]);
    }
}
