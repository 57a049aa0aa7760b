//! The hello and entry table a booting guest hands over: whatever it
//! writes wherever it points, the VMM accepts only a hello of its ABI
//! version whose table, names, dispatcher and sample ring lie where they
//! must, and what it accepts is exactly what guest memory holds.

use super::{edges, hostile_addr, layout, memory, runner, CASES};
use crate::domain::boot::{decode_hello, MAX_ENTRIES};
use crate::guest_io;
use crate::region::DataRegion;
use proptest::prelude::*;
use shared_abi::layout::IMAGE_BASE;
use shared_abi::{EntryDecl, Hello, Name, Sample, ABI_VERSION, ENTRY_NAME_MAX, RAW_METHOD};
use std::cell::Cell;
use zerocopy::IntoBytes;

const NAME_SIZE: u64 = size_of::<EntryDecl>() as u64;

fn name() -> impl Strategy<Value = EntryDecl> {
    let text = prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,31}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..=ENTRY_NAME_MAX),
    ];
    let len = prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)];
    let reserved = prop_oneof![9 => Just(0u32), 1 => any::<u32>()];
    (text, len, reserved).prop_map(|(bytes, len, reserved)| {
        let mut name = [0u8; ENTRY_NAME_MAX];
        name[..bytes.len()].copy_from_slice(&bytes);
        EntryDecl {
            name: Name {
                name,
                len: len.unwrap_or(u32::try_from(bytes.len()).unwrap()),
                reserved,
            },
            interface: Name::EMPTY,
            method_id: RAW_METHOD,
        }
    })
}

/// A hello as a hostile guest would write it, mostly close to a good one.
fn hello() -> impl Strategy<Value = Hello> {
    let l = layout();
    let good_table = IMAGE_BASE + 0x8000;
    (
        prop_oneof![9 => Just(ABI_VERSION), 1 => any::<u32>()],
        prop_oneof![6 => 0u32..=8, 1 => 0u32..=300, 1 => any::<u32>()],
        prop_oneof![3 => Just(good_table), 1 => hostile_addr(edges())],
        prop_oneof![3 => IMAGE_BASE..l.image_end, 1 => hostile_addr(edges())],
        prop_oneof![2 => Just(0u64), 2 => Just(l.heap_base()), 1 => hostile_addr(edges())],
        prop_oneof![3 => 0u64..64, 1 => any::<u64>()],
        prop_oneof![2 => Just(l.heap_base() + 0x4000), 1 => hostile_addr(edges())],
    )
        .prop_map(
            |(abi_version, entry_count, entries, dispatcher, samples, cap, count)| Hello {
                abi_version,
                entry_count,
                entries,
                dispatcher,
                samples,
                sample_capacity: cap,
                sample_count: count,
                imports: 0,
                import_count: 0,
                cap_capacity: 0,
                caps: 0,
            },
        )
}

#[test]
fn a_hello_is_accepted_only_as_memory_holds_it_and_where_it_must_lie() {
    let mem = memory();
    let l = layout();
    let region = DataRegion::of(&l);
    let accepted = Cell::new(0u32);
    let at = prop_oneof![3 => Just(l.heap_base() + 0x100), 1 => hostile_addr(edges())];
    let strategy = (at, hello(), proptest::collection::vec(name(), 0..=8));
    runner()
        .run(&strategy, |(addr, h, names)| {
            let _ = guest_io::write(&mem, addr, h.as_bytes());
            for (i, n) in (0u64..).zip(&names) {
                let _ = guest_io::write(
                    &mem,
                    h.entries.wrapping_add(i * NAME_SIZE),
                    IntoBytes::as_bytes(n),
                );
            }
            let Ok(info) = decode_hello(&mem, &region, l.image_end, addr) else {
                return Ok(());
            };
            accepted.set(accepted.get() + 1);
            prop_assert!(region.check(addr, size_of::<Hello>() as u64).is_ok());
            let there = guest_io::read_hello(&mem, addr).unwrap();
            prop_assert_eq!(there.abi_version, ABI_VERSION);
            prop_assert!(there.entry_count <= MAX_ENTRIES);
            prop_assert_eq!(info.entries.len(), there.entry_count as usize);
            let table_len = u64::from(there.entry_count) * NAME_SIZE;
            prop_assert!(region.check(there.entries, table_len).is_ok());
            for (i, got) in (0u64..).zip(&info.entries) {
                let e = guest_io::read_entry_decl(&mem, there.entries, i).unwrap();
                let bytes = e.name.as_bytes().unwrap();
                prop_assert!(bytes.len() <= ENTRY_NAME_MAX);
                prop_assert_eq!(got.as_bytes(), bytes);
            }
            prop_assert_eq!(info.dispatcher, there.dispatcher);
            prop_assert!((IMAGE_BASE..l.image_end).contains(&info.dispatcher));
            if info.samples.addr != 0 {
                let ring = info.samples.capacity * size_of::<Sample>() as u64;
                prop_assert!(region.check(info.samples.addr, ring).is_ok());
                prop_assert!(region.check(info.samples.count_addr, 8).is_ok());
            }
            Ok(())
        })
        .unwrap();
    let accepted = accepted.get();
    assert!(accepted > CASES / 20, "{accepted} hellos accepted");
}
