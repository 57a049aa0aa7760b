//! The generated dispatcher against hand-made invocations that do not match
//! the signature: each is answered `MALFORMED` and the implementation is
//! never called.

mod common;

use common::kv::*;
use common::mock::leak;
use ferry_interface::__private::ArgMode;
use ferry_interface::{Incoming, Serve};
use shared_abi::{runtime_status, ArgDesc, Invocation, MAX_ARGS};

/// Callee memory for the objects: 16-byte aligned, disjoint 256-byte
/// chunks.
#[repr(C, align(16))]
struct Mem([u8; 256 * 4]);

impl Mem {
    fn new() -> Box<Self> {
        Box::new(Mem([0; 256 * 4]))
    }

    /// Object `i` of `len` bytes at `offset` into its chunk.
    fn obj(&mut self, i: usize, offset: usize, len: u64, mode: ArgMode) -> ArgDesc {
        ArgDesc {
            addr: self.0[i * 256 + offset..].as_mut_ptr() as u64,
            len,
            mode: mode as u32,
            flags: 0,
        }
    }
}

fn inv(scalars: [u64; 6], args: &[ArgDesc]) -> Invocation {
    let mut inv = Invocation {
        caller_domain: 1,
        entry: 0,
        thread_id: 1,
        depth: 1,
        nargs: u32::try_from(args.len()).unwrap(),
        scalars,
        args: [ArgDesc::default(); MAX_ARGS],
    };
    inv.args[..args.len()].copy_from_slice(args);
    inv
}

/// Index of `entry` in `KV_INTERFACE`.
fn method(entry: &str) -> usize {
    KV_INTERFACE
        .methods
        .iter()
        .position(|m| m.entry == entry)
        .unwrap()
}

/// Dispatch `inv` to a fresh `KvImpl`: the answer and whether the
/// implementation ran.
fn run(entry: &str, inv: &Invocation) -> (Result<[u64; 2], u32>, bool) {
    let imp = leak(KvImpl::default());
    let server = KvServer(imp);
    // SAFETY: every descriptor of the invocations built here names a
    // disjoint chunk of a live `Mem` (or, in the alignment cases, bytes
    // within one chunk), used by nothing else during the dispatch.
    let mut inc = unsafe { Incoming::new(inv) };
    let r = server.dispatch(method(entry), &mut inc);
    (r, imp.called() > 0)
}

const MALFORMED: Result<[u64; 2], u32> = Err(runtime_status::MALFORMED);

/// A well-formed call of each shape first, so the rejections below are
/// about the one thing changed.
#[test]
fn well_formed_invocations_run() {
    let mut m = Mem::new();
    let i = inv(
        [0; 6],
        &[m.obj(0, 0, 16, ArgMode::In), m.obj(1, 0, 24, ArgMode::Out)],
    );
    m.0[0] = 5; // q.key = 5
    assert_eq!(run("stat", &i), (Ok([5, 0]), true));
    let i = inv([0; 6], &[m.obj(0, 0, 12, ArgMode::In)]);
    assert_eq!(run("sum", &i), (Ok([5, 0]), true));
    let i = inv([1, 2, 3, 4, 0, 1], &[]);
    assert_eq!(run("scalars", &i), (Ok([2, 0]), true));
    let i = inv(
        [0; 6],
        &[m.obj(0, 0, 0, ArgMode::In), m.obj(1, 0, 0, ArgMode::InOut)],
    );
    assert_eq!(run("get", &i), (Err(1), true), "NotFound: an app error");
}

#[test]
fn wrong_object_count() {
    let mut m = Mem::new();
    let one = inv([0; 6], &[m.obj(0, 0, 16, ArgMode::In)]);
    assert_eq!(run("stat", &one), (MALFORMED, false));
    let three = inv(
        [0; 6],
        &[
            m.obj(0, 0, 16, ArgMode::In),
            m.obj(1, 0, 24, ArgMode::Out),
            m.obj(2, 0, 8, ArgMode::In),
        ],
    );
    assert_eq!(run("stat", &three), (MALFORMED, false));
    assert_eq!(
        run("scalars", &one),
        (MALFORMED, false),
        "objects to a scalar-only method"
    );
    let none = inv([0; 6], &[]);
    assert_eq!(run("sum", &none), (MALFORMED, false));
}

#[test]
fn wrong_mode() {
    let mut m = Mem::new();
    let cases = [
        (ArgMode::In, ArgMode::In, "OUT object sent as IN"),
        (ArgMode::In, ArgMode::InOut, "OUT object sent as INOUT"),
        (ArgMode::Out, ArgMode::Out, "IN object sent as OUT"),
        (ArgMode::InOut, ArgMode::Out, "IN object sent as INOUT"),
    ];
    for (q, s, why) in cases {
        let i = inv([0; 6], &[m.obj(0, 0, 16, q), m.obj(1, 0, 24, s)]);
        assert_eq!(run("stat", &i), (MALFORMED, false), "{why}");
    }
    // INOUT expected (`bump`), OUT given; and a mode no ABI defines.
    let i = inv([0; 6], &[m.obj(0, 0, 24, ArgMode::Out)]);
    assert_eq!(run("bump", &i), (MALFORMED, false));
    let mut d = m.obj(0, 0, 24, ArgMode::InOut);
    d.mode = 7;
    assert_eq!(run("bump", &inv([0; 6], &[d])), (MALFORMED, false));
}

#[test]
fn lengths_that_do_not_fit_the_type() {
    let mut m = Mem::new();
    for (q, s) in [(15, 24), (17, 24), (16, 23), (16, 32), (0, 24)] {
        let i = inv(
            [0; 6],
            &[m.obj(0, 0, q, ArgMode::In), m.obj(1, 0, s, ArgMode::Out)],
        );
        assert_eq!(
            run("stat", &i),
            (MALFORMED, false),
            "Query {q} B, Stats {s} B"
        );
    }
    for len in [1, 2, 3, 6, 13] {
        let i = inv([0; 6], &[m.obj(0, 0, len, ArgMode::In)]);
        assert_eq!(run("sum", &i), (MALFORMED, false), "[u32] of {len} B");
    }
}

#[test]
fn misaligned_objects() {
    let mut m = Mem::new();
    for off in [1, 2, 3, 6] {
        let i = inv([0; 6], &[m.obj(0, off, 8, ArgMode::In)]);
        assert_eq!(run("sum", &i), (MALFORMED, false), "[u32] at +{off}");
    }
    let i = inv(
        [0; 6],
        &[m.obj(0, 4, 16, ArgMode::In), m.obj(1, 0, 24, ArgMode::Out)],
    );
    assert_eq!(run("stat", &i), (MALFORMED, false), "Query at +4");
    let i = inv(
        [0; 6],
        &[m.obj(0, 0, 16, ArgMode::In), m.obj(1, 8, 24, ArgMode::Out)],
    );
    // `Stats` needs 8-byte alignment only: at +8 it is fine.
    assert!(run("stat", &i).1, "Stats at +8 is aligned enough");
}

#[test]
fn scalars_out_of_range() {
    let ok = [1, 2, 3, 4, 0, 1];
    assert!(run("scalars", &inv(ok, &[])).1);
    let cases: [(usize, u64, &str); 6] = [
        (0, 300, "300 for a u8"),
        (1, 1 << 16, "65536 for a u16"),
        (2, 1 << 32, "2^32 for a u32"),
        (4, 128, "128 for an i8"),
        (4, 0xFFFF_FFFF_FFFF_FF00, "-256 for an i8"),
        (5, 2, "2 for a bool"),
    ];
    for (k, w, why) in cases {
        let mut s = ok;
        s[k] = w;
        assert_eq!(run("scalars", &inv(s, &[])), (MALFORMED, false), "{why}");
    }
    // `put`'s u32 flags is its only scalar: index 0.
    let mut m = Mem::new();
    let i = inv(
        [u64::MAX, 0, 0, 0, 0, 0],
        &[m.obj(0, 0, 1, ArgMode::In), m.obj(1, 0, 1, ArgMode::In)],
    );
    assert_eq!(run("put", &i), (MALFORMED, false));
}

#[test]
fn an_unknown_method_index() {
    let imp = leak(KvImpl::default());
    let i = inv([0; 6], &[]);
    // SAFETY: no objects.
    let mut inc = unsafe { Incoming::new(&i) };
    assert_eq!(
        KvServer(imp).dispatch(KV_INTERFACE.methods.len(), &mut inc),
        Err(runtime_status::UNKNOWN_ENTRY)
    );
    assert_eq!(imp.called(), 0);
}
