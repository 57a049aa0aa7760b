//! `Call` requests and their descriptors: whatever bytes a guest leaves at
//! whatever address it names, the VMM reads only the header and the used
//! descriptors, only from its data region, exactly as they lie there; and
//! an argument list it accepts names only memory inside one data-region
//! piece (so inside guest memory, above the system area, off the guard
//! pages), never two overlapping outputs, within the callee's stack budget.

use super::{edges, good_addr, hostile_addr, layout, memory, runner, CASES};
use crate::guest_io::{self, CALL_REQUEST_HEADER};
use crate::region::DataRegion;
use crate::thread::arglist::{validate, ArgListError};
use proptest::prelude::*;
use shared_abi::layout::IMAGE_BASE;
use shared_abi::{ArgDesc, ArgMode, CallRequest, MAX_ARGS};
use std::cell::Cell;
use zerocopy::IntoBytes;

fn desc() -> BoxedStrategy<ArgDesc> {
    let len = prop_oneof![
        4 => 0u64..0x100,
        2 => 0u64..0x8000,
        1 => any::<u64>(),
        1 => Just(u64::MAX),
    ];
    let mode = prop_oneof![8 => 1u32..=3, 1 => any::<u32>()];
    let reserved = prop_oneof![9 => Just(0u32), 1 => any::<u32>()];
    (hostile_addr(edges()), len, mode, reserved)
        .prop_map(|(addr, len, mode, reserved)| ArgDesc {
            addr,
            len,
            mode,
            flags: reserved,
        })
        .boxed()
}

fn request() -> impl Strategy<Value = CallRequest> {
    let nargs = prop_oneof![6 => 0u32..=4, 2 => 0u32..=17, 1 => any::<u32>()];
    (
        any::<u32>(),
        nargs,
        any::<[u64; 6]>(),
        proptest::collection::vec(desc(), MAX_ARGS),
    )
        .prop_map(|(slot, nargs, scalars, descs)| {
            let mut args = [ArgDesc::default(); MAX_ARGS];
            args.copy_from_slice(&descs);
            CallRequest {
                slot,
                nargs,
                scalars,
                args,
            }
        })
}

#[test]
fn requests_are_read_only_from_the_region_and_accepted_plans_stay_inside_it() {
    let mem = memory();
    let l = layout();
    let region = DataRegion::of(&l);
    let (read_ok, planned) = (Cell::new(0u32), Cell::new(0u32));
    let strategy = (
        prop_oneof![1 => good_addr(), 1 => hostile_addr(edges())],
        request(),
        prop_oneof![Just(l.stack_size / 2), 0u64..0x1_0000],
    );
    runner()
        .run(&strategy, |(addr, written, budget)| {
            // Leave the request at `addr` if memory holds it (else the
            // bytes there are whatever earlier cases left).
            let bytes = written.as_bytes();
            let _ = guest_io::write(&mem, addr, bytes);
            let inside = |a: u64, n: u64| region.check(a, n).is_ok();
            let got = guest_io::read_call_request(&mem, addr, inside);
            let Ok(req) = got else {
                // Refused: the header, or header plus used descriptors, is
                // not inside one piece of the region.
                if inside(addr, CALL_REQUEST_HEADER) {
                    let mut head = [0u8; 8];
                    guest_io::read(&mem, addr, &mut head).unwrap();
                    let nargs = u32::from_le_bytes(head[4..8].try_into().unwrap());
                    prop_assert!(nargs as usize <= MAX_ARGS);
                    let len = guest_io::call_request_len(nargs);
                    prop_assert!(!inside(addr, len));
                }
                return Ok(());
            };
            read_ok.set(read_ok.get() + 1);
            let used = guest_io::call_request_len(req.nargs);
            prop_assert!(inside(addr, used));
            let mut there = vec![0u8; usize::try_from(used).unwrap()];
            guest_io::read(&mem, addr, &mut there).unwrap();
            let copy = req.as_bytes();
            // Exactly the bytes in guest memory, and nothing beyond the
            // used descriptors (unused ones stay zero).
            prop_assert_eq!(&copy[..there.len()], &there[..]);
            prop_assert!(copy[there.len()..].iter().all(|b| *b == 0));
            match validate(&req, &region, budget) {
                Ok(plan) => {
                    planned.set(planned.get() + 1);
                    prop_assert!(plan.invocation_offset <= budget);
                    for p in plan.objects() {
                        if p.is_empty() {
                            continue;
                        }
                        let (a, n) = (p.caller.addr(), p.len());
                        prop_assert!(inside(a, n));
                        prop_assert!(a >= IMAGE_BASE && a + n <= l.memory_size);
                        // Readable in guest memory as a whole.
                        prop_assert!(p.caller.read(&mem).is_ok());
                    }
                }
                Err(e @ ArgListError::TooManyArgs(_)) => {
                    prop_assert!(req.nargs as usize > MAX_ARGS, "{e:?}");
                }
                Err(ArgListError::BadMode { index, .. }) => {
                    let d = req.args[index];
                    prop_assert!(ArgMode::from_u32(d.mode).is_none() || d.flags != 0);
                }
                Err(_) => {}
            }
            Ok(())
        })
        .unwrap();
    // The generator gets past each stage often, not only to refusals.
    let (read_ok, planned) = (read_ok.get(), planned.get());
    assert!(read_ok > CASES / 4, "{read_ok} requests read");
    assert!(planned > CASES / 20, "{planned} argument lists accepted");
}
