//! What an image declares ([`image!`](crate::image), [`entries!`](crate::entries)):
//! the interfaces it serves, those it calls, its raw entries and its init
//! function; and the tables the runtime builds from that at boot — the
//! entry table and imports sent in `Hello`, the dispatch targets, and the
//! capability table the VMM fills in.

use crate::entry::EntryFn;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicPtr, Ordering};
use ferry_interface::{InterfaceDecl, Serve};
use shared_abi::{CapDecl, EntryDecl};
use zerocopy::FromZeros;

/// An image's declaration, built by [`image!`](crate::image) or
/// [`entries!`](crate::entries) as the `#[no_mangle]` static the runtime
/// reads at boot.
pub struct ImageDecl {
    /// Run once at boot, after the heap is up and `Hello` was accepted.
    pub init: Option<fn()>,
    /// Served interfaces, in order: their methods come first in the entry
    /// table, interface by interface, each in declaration order.
    pub served: &'static [&'static dyn Serve],
    /// Interfaces this image calls: the VMM checks at boot that the
    /// servers it may reach were built from the same definitions.
    pub uses: &'static [&'static InterfaceDecl],
    /// Raw entries' names, after the served methods in the entry table.
    pub raw_names: &'static [EntryDecl],
    /// Raw entries' functions, same order as `raw_names`.
    pub raw_fns: &'static [EntryFn],
}

extern "Rust" {
    /// Defined by the image through [`image!`](crate::image) or
    /// [`entries!`](crate::entries).
    static __FERRY_IMAGE: ImageDecl;
}

/// The image's declaration.
pub(crate) fn declaration() -> &'static ImageDecl {
    // SAFETY: `image!`/`entries!` define this immutable static with this
    // exact type; an image without either fails to link.
    unsafe { &__FERRY_IMAGE }
}

/// What entry index `i` runs.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// Method `.1` of a served interface.
    Served(&'static dyn Serve, usize),
    /// A raw entry.
    Raw(EntryFn),
}

/// The tables built at boot from the [`ImageDecl`].
pub(crate) struct Tables {
    /// The entry table sent in `Hello` (index = entry number).
    pub(crate) entries: Vec<EntryDecl>,
    /// What each entry runs, same order.
    pub(crate) targets: Vec<Target>,
    /// Every method of every interface in `uses` (sent in `Hello`).
    pub(crate) imports: Vec<EntryDecl>,
    /// The capability table, written by the VMM when it accepts `Hello`
    /// (`BootInfo::cap_count` records, slot order).
    pub(crate) caps: Vec<CapDecl>,
    /// The interfaces the image calls.
    pub(crate) uses: &'static [&'static InterfaceDecl],
}

/// Tables before boot (nothing declared, nothing granted).
static EMPTY: Tables = Tables {
    entries: Vec::new(),
    targets: Vec::new(),
    imports: Vec::new(),
    caps: Vec::new(),
    uses: &[],
};

/// The tables, published once at boot before `Ready` (so before any
/// invocation) and never changed after.
static TABLES: AtomicPtr<Tables> = AtomicPtr::new(core::ptr::null_mut());

/// The tables (empty before boot built them).
#[inline(always)]
pub(crate) fn tables() -> &'static Tables {
    let p = TABLES.load(Ordering::Acquire);
    if p.is_null() {
        &EMPTY
    } else {
        // SAFETY: `publish` stored a leaked, never-freed `Tables` that
        // nothing mutates after publication.
        unsafe { &*p }
    }
}

/// Make `t` the tables for the rest of this boot.
pub(crate) fn publish(t: &'static mut Tables) {
    TABLES.store(core::ptr::from_mut(t), Ordering::Release);
}

impl Tables {
    /// Build the tables of `decl` with room for `cap_count` capabilities.
    /// Panics (failing the boot with the message) if two entries share a
    /// name or an interface's method has no entry record.
    pub(crate) fn build(decl: &'static ImageDecl, cap_count: u32) -> &'static mut Self {
        let mut entries = Vec::new();
        let mut targets = Vec::new();
        for s in decl.served {
            let iface = s.interface();
            for m in 0..iface.methods.len() {
                entries.push(method_record(iface, m));
                targets.push(Target::Served(*s, m));
            }
        }
        for (name, f) in decl.raw_names.iter().zip(decl.raw_fns) {
            entries.push(*name);
            targets.push(Target::Raw(*f));
        }
        for (i, e) in entries.iter().enumerate() {
            if entries[..i].iter().any(|o| o.name == e.name) {
                panic!(
                    "ferry-guest: entry `{}` is declared twice in this image (served methods and raw entries share one table; give one interface a prefix)",
                    e.name.as_str().unwrap_or("?")
                );
            }
        }
        let imports = decl
            .uses
            .iter()
            .flat_map(|iface| (0..iface.methods.len()).map(move |m| method_record(iface, m)))
            .collect();
        let mut caps = Vec::new();
        caps.resize(cap_count as usize, CapDecl::new_zeroed());
        Box::leak(Box::new(Self {
            entries,
            targets,
            imports,
            caps,
            uses: decl.uses,
        }))
    }
}

/// Method `m` of `iface` as an entry (or import) record.
fn method_record(iface: &InterfaceDecl, m: usize) -> EntryDecl {
    match iface.entry_decl(m) {
        Some(e) => e,
        None => panic!("ferry-guest: interface {} has no method {m}", iface.name),
    }
}

/// Declare the image: its init function, the interfaces it serves (each a
/// `&'static`-able value implementing [`Serve`](ferry_interface::Serve),
/// e.g. a generated `KvServer(&STORE)`), the interfaces it calls (their
/// `*_INTERFACE` descriptions), and raw entries written against
/// [`Call`](crate::Call). Every section is optional; they come in this
/// order:
///
/// ```ignore
/// ferry_guest::image! {
///     init: setup,
///     serves: [kv_api::KvServer(&STORE), log_api::LogServer(&LOG)],
///     uses: [hash_api::HASHER_INTERFACE],
///     raw: ["crash" => crash, "stats" => stats],
/// }
/// ```
///
/// The entry table is every served method (interface by interface, in
/// declaration order) and then the raw entries; an entry name used twice
/// makes the image panic at boot, naming it.
#[macro_export]
macro_rules! image {
    (
        $(init: $($init:ident)::+ $(,)?)?
        $(serves: [$($served:expr),* $(,)?] $(,)?)?
        $(uses: [$($used:expr),* $(,)?] $(,)?)?
        $(raw: [$($name:literal => $f:path),* $(,)?] $(,)?)?
    ) => {
        #[no_mangle]
        static __FERRY_IMAGE: $crate::ImageDecl = $crate::ImageDecl {
            init: $crate::__ferry_init!($($($init)::+)?),
            served: &[$($(&$served as &'static dyn $crate::interface::Serve),*)?],
            uses: &[$($(&$used),*)?],
            raw_names: &[$($($crate::shared_abi::EntryDecl::raw($name)),*)?],
            raw_fns: &[$($($f as $crate::EntryFn),*)?],
        };
    };
}

/// Declare a raw-only image: its entries, in entry-index order, and
/// optionally an init function (`fn()`), run once at boot before `Ready`
/// (the form images used before [`image!`](crate::image), which it
/// equals with only `init` and `raw`):
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
        static __FERRY_IMAGE: $crate::ImageDecl = $crate::ImageDecl {
            init: $crate::__ferry_init!($($init)?),
            served: &[],
            uses: &[],
            raw_names: &[$($crate::shared_abi::EntryDecl::raw($name)),*],
            raw_fns: &[$($f as $crate::EntryFn),*],
        };
    };
}

/// Implementation detail of [`image!`](crate::image) and
/// [`entries!`](crate::entries).
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
