//! The server side: what an interface declares, and how the generated
//! dispatcher turns an invocation into typed references.

use crate::types::{AppError, Plain, Reply, Scalar};
use core::marker::PhantomData;
use shared_abi::{runtime_status, ArgMode, EntryDecl, Invocation, Name, MAX_ARGS};

/// One method of an interface, as the entry tables and the VMM see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodDecl {
    /// The entry's name: the method's name, behind the interface's
    /// `prefix` if it has one (at most 32 bytes, checked by the macro).
    pub entry: &'static str,
    /// The method id (see [`crate::id`]).
    pub id: u64,
}

/// An interface: its name and its methods in declaration order (a method's
/// index here is its index in the server's dispatch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceDecl {
    /// The trait's name.
    pub name: &'static str,
    /// Its methods.
    pub methods: &'static [MethodDecl],
}

impl InterfaceDecl {
    /// Method `i` as an entry-table (or import-table) record.
    pub fn entry_decl(&self, i: usize) -> Option<EntryDecl> {
        let m = self.methods.get(i)?;
        Some(EntryDecl {
            name: Name::new(m.entry),
            interface: Name::new(self.name),
            method_id: m.id,
        })
    }
}

/// A served interface, as an image's entry table holds it: the generated
/// `<Trait>Server<S>` implements it for every `S` implementing the trait.
pub trait Serve: Sync {
    /// What is served.
    fn interface(&self) -> &'static InterfaceDecl;
    /// Run method `method` (index in [`InterfaceDecl::methods`]) on the
    /// invocation; `Err` is the status to return (an application code or a
    /// `runtime_status`).
    fn dispatch(&self, method: usize, inv: &mut Incoming<'_>) -> Result<[u64; 2], u32>;
}

/// The invocation did not match the method's signature. Converts to
/// `runtime_status::MALFORMED`, the status the caller then sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

impl From<Malformed> for u32 {
    fn from(_: Malformed) -> u32 {
        runtime_status::MALFORMED
    }
}

/// What a dispatcher sees of an invocation: checked, typed access to its
/// scalars and objects, each object at most once.
pub struct Incoming<'a> {
    inv: &'a Invocation,
    taken: u32,
    _objects: PhantomData<&'a mut [u8]>,
}

impl<'a> Incoming<'a> {
    /// View `inv`.
    ///
    /// # Safety
    /// Every descriptor of `inv.args[..inv.nargs]` (at most `MAX_ARGS`)
    /// with a non-zero length names memory valid for reads and writes for
    /// `'a`, not overlapping another descriptor's or `inv`, and not
    /// otherwise referenced. (In a guest the VMM guarantees it: they are the
    /// copies it made on this invocation's stack.)
    pub unsafe fn new(inv: &'a Invocation) -> Self {
        Self {
            inv,
            taken: 0,
            _objects: PhantomData,
        }
    }

    /// The raw invocation (caller, thread, depth).
    pub fn invocation(&self) -> &Invocation {
        self.inv
    }

    /// The calling domain's id: the callee's credential of who asked.
    pub fn caller_domain(&self) -> u32 {
        self.inv.caller_domain
    }

    /// Check that exactly `n` objects came.
    #[inline(always)]
    pub fn expect_objects(&self, n: usize) -> Result<(), Malformed> {
        if self.inv.nargs as usize == n {
            Ok(())
        } else {
            Err(Malformed)
        }
    }

    /// Scalar `i` as `S`, if in range.
    #[inline(always)]
    pub fn scalar<S: Scalar>(&self, i: usize) -> Result<S, Malformed> {
        let w = *self.inv.scalars.get(i).ok_or(Malformed)?;
        S::from_word(w).ok_or(Malformed)
    }

    /// Object `i`'s bytes, once, if its mode is `mode`.
    fn bytes(&mut self, i: usize, mode: ArgMode) -> Result<(*mut u8, usize), Malformed> {
        if i >= MAX_ARGS || i >= self.inv.nargs as usize || self.taken & (1 << i) != 0 {
            return Err(Malformed);
        }
        let d = self.inv.args[i];
        if ArgMode::from_u32(d.mode) != Some(mode) {
            return Err(Malformed);
        }
        let len = usize::try_from(d.len).map_err(|_| Malformed)?;
        self.taken |= 1 << i;
        if len == 0 {
            return Ok((core::ptr::NonNull::<u128>::dangling().as_ptr().cast(), 0));
        }
        Ok((d.addr as *mut u8, len))
    }

    /// Object `i` (mode IN) as a `&T` (`T` sized or a slice), if its length
    /// and alignment fit `T`.
    #[inline(always)]
    pub fn input<T: ?Sized + Plain>(&mut self, i: usize) -> Result<&'a T, Malformed> {
        let (p, len) = self.bytes(i, ArgMode::In)?;
        // SAFETY: `new`'s contract: `p..p+len` is valid for `'a` and not
        // referenced elsewhere; `taken` hands it out once.
        let b = unsafe { core::slice::from_raw_parts(p.cast_const(), len) };
        T::ref_from_bytes(b).map_err(|_| Malformed)
    }

    /// Object `i` (mode `mode`, OUT or INOUT) as a `&mut T`, if its length
    /// and alignment fit `T`.
    #[inline(always)]
    pub fn output<T: ?Sized + Plain>(
        &mut self,
        i: usize,
        mode: ArgMode,
    ) -> Result<&'a mut T, Malformed> {
        if !mode.copies_out() {
            return Err(Malformed);
        }
        let (p, len) = self.bytes(i, mode)?;
        // SAFETY: as in `input`; objects do not overlap, so this borrow is
        // unique.
        let b = unsafe { core::slice::from_raw_parts_mut(p, len) };
        T::mut_from_bytes(b).map_err(|_| Malformed)
    }
}

/// Encode what a method returned as the dispatcher's answer: an error's
/// code, or `runtime_status::BAD_ERROR` for a code that would read as
/// success or as the runtime's.
#[inline(always)]
pub fn reply<R: Reply, E: AppError>(r: Result<R, E>) -> Result<[u64; 2], u32> {
    match r {
        Ok(v) => Ok(v.to_words()),
        Err(e) => {
            let c = e.code();
            if c == 0 || c >= runtime_status::BASE {
                Err(runtime_status::BAD_ERROR)
            } else {
                Err(c)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_abi::ArgDesc;

    #[repr(C, align(16))]
    struct Buf([u8; 64]);

    fn inv(args: &[ArgDesc]) -> Invocation {
        let mut inv = Invocation {
            caller_domain: 0,
            entry: 0,
            thread_id: 1,
            depth: 1,
            nargs: u32::try_from(args.len()).unwrap(),
            scalars: [0; 6],
            args: [ArgDesc::default(); MAX_ARGS],
        };
        inv.args[..args.len()].copy_from_slice(args);
        inv
    }

    fn d(p: *mut u8, len: u64, mode: ArgMode) -> ArgDesc {
        ArgDesc {
            addr: p as u64,
            len,
            mode: mode as u32,
            flags: 0,
        }
    }

    #[test]
    fn objects_are_checked_for_mode_length_alignment_and_reuse() {
        let mut buf = Buf([0; 64]);
        let p = buf.0.as_mut_ptr();
        let iv = inv(&[
            d(p, 8, ArgMode::In),
            // SAFETY: within `buf`.
            d(unsafe { p.add(17) }, 8, ArgMode::Out),
            // SAFETY: within `buf`.
            d(unsafe { p.add(32) }, 12, ArgMode::InOut),
        ]);
        // SAFETY: the three objects are disjoint parts of `buf`.
        let mut inc = unsafe { Incoming::new(&iv) };
        assert_eq!(inc.expect_objects(3), Ok(()));
        assert_eq!(inc.expect_objects(2), Err(Malformed));
        assert_eq!(inc.input::<u64>(0).copied(), Ok(0));
        assert_eq!(inc.input::<u64>(0).err(), Some(Malformed), "taken twice");
        assert!(inc.output::<u64>(1, ArgMode::Out).is_err(), "misaligned");
        assert!(inc.output::<[u32]>(2, ArgMode::Out).is_err(), "mode");
        assert_eq!(
            inc.output::<[u32]>(2, ArgMode::InOut).map(|s| s.len()),
            Ok(3)
        );
        assert!(inc.input::<u8>(3).is_err(), "no such object");
    }

    #[test]
    fn lengths_must_fit_the_type() {
        let mut buf = Buf([0; 64]);
        let p = buf.0.as_mut_ptr();
        let iv = inv(&[d(p, 6, ArgMode::In), d(p, 0, ArgMode::In)]);
        // SAFETY: read-only views of `buf`.
        let mut inc = unsafe { Incoming::new(&iv) };
        assert!(inc.input::<u64>(0).is_err());
        assert_eq!(inc.input::<[u64]>(1).map(|s| s.len()), Ok(0));
    }

    #[test]
    fn errors_that_read_as_success_or_runtime_become_bad_error() {
        assert_eq!(reply::<(), u32>(Err(0)), Err(runtime_status::BAD_ERROR));
        assert_eq!(
            reply::<(), u32>(Err(0xFFFF)),
            Err(runtime_status::BAD_ERROR)
        );
        assert_eq!(reply::<(), u32>(Err(4)), Err(4));
        assert_eq!(reply::<u8, u32>(Ok(9)), Ok([9, 0]));
    }
}
