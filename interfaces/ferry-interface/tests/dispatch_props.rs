//! The generated dispatcher under random invocations — what a hostile raw
//! caller can send a typed server: any object count (also above the ABI's
//! 16), any mode word, lengths and addresses (within the callee's copy
//! area, where the VMM puts objects, OUT ones zero-filled as the VMM does),
//! any scalar bits, any method index.
//! Whatever arrives, the dispatcher answers without panicking; the answer
//! is a success, one of the interface's own errors, `MALFORMED` (and then
//! the implementation never ran), `BAD_ERROR` (the implementation's error
//! code was 0 or the runtime's) or `UNKNOWN_ENTRY`.

mod common;

use common::kv::*;
use common::mock::leak;
use ferry_interface::{AppError, Incoming, Serve};
use proptest::prelude::*;
use shared_abi::{runtime_status, ArgDesc, ArgMode, Invocation, MAX_ARGS};

/// Bytes per object chunk: objects never overlap.
const CHUNK: usize = 512;

/// The callee's copy area: 16-byte aligned, one chunk per descriptor.
#[repr(C, align(16))]
struct Mem([u8; CHUNK * MAX_ARGS]);

/// One random descriptor: chunk offset, length, mode word.
fn desc() -> impl Strategy<Value = (usize, u64, u32)> {
    (
        prop_oneof![3 => Just(0usize), 1 => 0usize..48],
        prop_oneof![
            2 => prop::sample::select(vec![0u64, 1, 4, 8, 16, 24, 32, 64, 200]),
            1 => 0u64..(CHUNK as u64 - 48),
        ],
        prop_oneof![4 => 0u32..4, 1 => any::<u32>()],
    )
}

fn scalars() -> impl Strategy<Value = [u64; 6]> {
    let one = prop_oneof![
        3 => 0u64..4,
        1 => prop::sample::select(vec![255u64, 256, 65_536, 1 << 31, 1 << 32, u64::MAX, 1 << 63]),
        1 => any::<u64>(),
    ];
    prop::array::uniform6(one)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    #[test]
    fn any_invocation_gets_an_answer_and_malformed_ones_never_run(
        method in 0usize..(KV_INTERFACE.methods.len() + 2),
        descs in prop::collection::vec(desc(), 0..=MAX_ARGS),
        extra_nargs in prop_oneof![9 => Just(0u32), 1 => 1u32..1000],
        scalars in scalars(),
        fill in any::<u8>(),
    ) {
        let mut mem = Box::new(Mem([fill; CHUNK * MAX_ARGS]));
        let mut inv = Invocation {
            caller_domain: 1,
            entry: 0,
            thread_id: 1,
            depth: 1,
            nargs: u32::try_from(descs.len()).unwrap() + extra_nargs,
            scalars,
            args: [ArgDesc::default(); MAX_ARGS],
        };
        for (i, &(offset, len, mode)) in descs.iter().enumerate() {
            // The VMM zero-fills an OUT object before the callee runs.
            if mode == ArgMode::Out as u32 {
                let at = i * CHUNK + offset;
                mem.0[at..at + usize::try_from(len).unwrap()].fill(0);
            }
            inv.args[i] = ArgDesc {
                addr: mem.0[i * CHUNK + offset..].as_mut_ptr() as u64,
                len,
                mode,
                flags: 0,
            };
        }
        let imp = leak(KvImpl::default());
        let server = KvServer(imp);
        // SAFETY: descriptors 0..descs.len() name disjoint ranges inside
        // their own chunk of `mem` (offset + len < CHUNK), alive and used by
        // nothing else during the dispatch; a count above that is answered
        // before any descriptor is read (the ABI's `nargs` ≤ 16 check).
        let mut inc = unsafe { Incoming::new(&inv) };
        let answer = server.dispatch(method, &mut inc);
        let ran = imp.called() > 0;
        match answer {
            Ok(_) => prop_assert!(ran, "answered Ok without running"),
            Err(runtime_status::MALFORMED) => prop_assert!(!ran, "ran a malformed invocation"),
            // An implementation's error that would read as success or as
            // the runtime's own (the `code` method passes its scalar on).
            Err(runtime_status::BAD_ERROR) => prop_assert!(ran),
            Err(runtime_status::UNKNOWN_ENTRY) => {
                prop_assert!(method >= KV_INTERFACE.methods.len());
                prop_assert!(!ran);
            }
            Err(code) => {
                prop_assert!(ran, "app error {code} without running");
                prop_assert!(
                    KvError::from_code(code).is_some() || code < runtime_status::BASE,
                    "status {code:#x} is neither the interface's nor a bare code"
                );
            }
        }
        if extra_nargs > 0 || descs.len() > MAX_ARGS {
            prop_assert!(!ran, "ran with nargs {}", inv.nargs);
        }
    }
}
