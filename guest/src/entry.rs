//! Exported entries: the table an image declares with [`entries!`], and the
//! dispatcher the VMM starts every invocation at.

use crate::hypercall::hypercall_scalar;
use shared_abi::{ArgMode, EntryDecl, Hypercall, Invocation, MAX_ARGS};

/// An entry: reads its invocation through [`Call`], returns two results or
/// a non-zero application status (the caller sees `CallError::App(status)`).
pub type EntryFn = fn(&mut Call) -> Result<[u64; 2], u32>;

/// Status returned when the VMM starts an entry index the table lacks.
pub const UNKNOWN_ENTRY_STATUS: u64 = 0xFFFF;

/// Status reported when an entry returns `Err(0)` (0 would read as success).
pub const BAD_ERROR_STATUS: u64 = 0xFFFE;

/// An image's entry table, built by [`entries!`]: names (sent in `Hello`,
/// index = entry number), the functions in the same order, and an optional
/// init function run once before `Ready`.
pub struct EntryTable {
    /// Entry names, in entry-index order (the VMM checks them against the
    /// manifest).
    pub names: &'static [EntryDecl],
    /// Entry functions, same order as `names`.
    pub fns: &'static [EntryFn],
    /// Run once at boot, after the heap is up and `Hello` was accepted.
    pub init: Option<fn()>,
}

extern "Rust" {
    /// Defined by the image through [`entries!`].
    static __FERRY_ENTRY_TABLE: EntryTable;
}

/// The image's entry table.
pub(crate) fn table() -> &'static EntryTable {
    // SAFETY: `entries!` defines this immutable static with this exact type;
    // an image without `entries!` fails to link.
    unsafe { &__FERRY_ENTRY_TABLE }
}

/// Declare the image's entries, in entry-index order, and optionally an
/// init function (`fn()`), run once at boot before `Ready`:
///
/// ```ignore
/// ferry_guest::entries! {
///     init = my_init;
///     "put" => put,
///     "get" => get,
/// }
/// ```
#[macro_export]
macro_rules! entries {
    ($(init = $init:path;)? $($name:literal => $f:path),* $(,)?) => {
        #[no_mangle]
        static __FERRY_ENTRY_TABLE: $crate::EntryTable = $crate::EntryTable {
            names: &[$($crate::shared_abi::EntryDecl::raw($name)),*],
            fns: &[$($f as $crate::EntryFn),*],
            init: $crate::__ferry_init!($($init)?),
        };
    };
}

/// Implementation detail of [`entries!`].
#[doc(hidden)]
#[macro_export]
macro_rules! __ferry_init {
    () => {
        ::core::option::Option::None
    };
    ($init:path) => {
        ::core::option::Option::Some($init as fn())
    };
}

/// What an entry sees of its invocation: scalars, objects (the copies on
/// this stack) and who called.
pub struct Call {
    inv: &'static mut Invocation,
}

impl Call {
    /// Scalar `i` (0 for `i >= 6`).
    pub fn scalar(&self, i: usize) -> u64 {
        self.inv.scalars.get(i).copied().unwrap_or(0)
    }

    /// Number of objects.
    pub fn nargs(&self) -> usize {
        (self.inv.nargs as usize).min(MAX_ARGS)
    }

    /// Object `i`'s bytes (any mode), or `None` if there is no object `i`.
    pub fn arg(&self, i: usize) -> Option<&[u8]> {
        let d = self.inv.args[..self.nargs()].get(i)?;
        if d.len == 0 {
            return Some(&[]);
        }
        // SAFETY: the VMM copied object `i` to `addr..addr+len` on this
        // invocation's stack, which stays live until the dispatcher's Return;
        // the borrow of `self` keeps `arg_mut` from aliasing it.
        Some(unsafe { core::slice::from_raw_parts(d.addr as *const u8, d.len as usize) })
    }

    /// Object `i`'s bytes, writable, if it is OUT or INOUT (`None` for IN
    /// objects and missing ones). What is here when the entry returns `Ok`
    /// goes back to the caller.
    pub fn arg_mut(&mut self, i: usize) -> Option<&mut [u8]> {
        let n = self.nargs();
        let d = self.inv.args[..n].get(i)?;
        if !ArgMode::from_u32(d.mode)?.copies_out() {
            return None;
        }
        if d.len == 0 {
            return Some(&mut []);
        }
        // SAFETY: as in `arg`; objects do not overlap each other or the
        // invocation frame, and `&mut self` makes this borrow unique.
        Some(unsafe { core::slice::from_raw_parts_mut(d.addr as *mut u8, d.len as usize) })
    }

    /// The calling domain's id (`shared_abi::NO_CALLER` for a thread's
    /// first frame): the callee's credential of who asked.
    pub fn caller_domain(&self) -> u32 {
        self.inv.caller_domain
    }

    /// The migrating thread's id (the same in every domain it visits).
    pub fn thread_id(&self) -> u64 {
        self.inv.thread_id
    }

    /// Depth of this invocation in the thread's chain (first frame: 0).
    pub fn depth(&self) -> u32 {
        self.inv.depth
    }

    /// The raw invocation frame.
    pub fn invocation(&self) -> &Invocation {
        self.inv
    }
}

/// Where the VMM starts every invocation (announced in `Hello`): RDI → the
/// `Invocation` on the fresh stack, RSI = entry index. Runs the entry and
/// returns its outcome with the `Return` hypercall; never returns itself.
pub(crate) extern "C" fn dispatch(inv: *mut Invocation, entry: u64) -> ! {
    let (status, r) = match table().fns.get(entry as usize) {
        Some(f) => {
            // SAFETY: the VMM passes a valid, exclusively ours frame that
            // lives on this stack until Return (which never comes back).
            let inv = unsafe { &mut *inv };
            let mut call = Call { inv };
            match f(&mut call) {
                Ok(r) => (0, r),
                Err(0) => (BAD_ERROR_STATUS, [0, 0]),
                Err(code) => (code as u64, [0, 0]),
            }
        }
        None => (UNKNOWN_ENTRY_STATUS, [0, 0]),
    };
    loop {
        hypercall_scalar(Hypercall::Return, [status, r[0], r[1], 0, 0, 0]);
    }
}
