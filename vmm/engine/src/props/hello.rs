//! The hello, entry table and imports a booting guest hands over: whatever
//! it writes wherever it points, the VMM accepts only a hello of its ABI
//! version whose tables, names, dispatcher, sample ring and capability
//! buffer lie where they must, and what it accepts is exactly what guest
//! memory holds; the capability table it then writes lands inside the
//! checked buffer, `cap_count` records and not one byte more.

use super::{edges, hostile_addr, layout, memory, runner, CASES};
use crate::domain::boot::{decode_hello, write_cap_table, MAX_ENTRIES, MAX_IMPORTS};
use crate::guest_io;
use crate::region::DataRegion;
use proptest::prelude::*;
use shared_abi::layout::IMAGE_BASE;
use shared_abi::{
    CapDecl, EntryDecl, Hello, Name, Sample, ABI_VERSION, ENTRY_NAME_MAX, RAW_METHOD,
};
use std::cell::Cell;
use zerocopy::IntoBytes;

const NAME_SIZE: u64 = size_of::<EntryDecl>() as u64;

fn text_name() -> impl Strategy<Value = Name> {
    let text = prop_oneof![
        4 => "[a-z_][a-z0-9_]{0,31}".prop_map(String::into_bytes),
        1 => proptest::collection::vec(any::<u8>(), 0..=ENTRY_NAME_MAX),
    ];
    let len = prop_oneof![6 => Just(None), 1 => any::<u32>().prop_map(Some)];
    let reserved = prop_oneof![9 => Just(0u32), 1 => any::<u32>()];
    (text, len, reserved).prop_map(|(bytes, len, reserved)| {
        let mut name = [0u8; ENTRY_NAME_MAX];
        name[..bytes.len()].copy_from_slice(&bytes);
        Name {
            name,
            len: len.unwrap_or(u32::try_from(bytes.len()).unwrap()),
            reserved,
        }
    })
}

/// An entry (or import) record: mostly a raw entry or a method of an
/// interface with its id, sometimes any mix.
fn name() -> impl Strategy<Value = EntryDecl> {
    let interface = prop_oneof![
        3 => Just((Name::EMPTY, RAW_METHOD)),
        3 => (1u64..).prop_map(|id| (Name::new("Kv"), id)),
        1 => (text_name(), any::<u64>()),
    ];
    (text_name(), interface).prop_map(|(name, (interface, method_id))| EntryDecl {
        name,
        interface,
        method_id,
    })
}

/// Where the well-behaved parts of a hello point.
struct Spots {
    table: u64,
    imports: u64,
    caps: u64,
}

fn spots() -> Spots {
    let l = layout();
    Spots {
        table: IMAGE_BASE + 0x8000,
        imports: IMAGE_BASE + 0xA000,
        caps: l.heap_base() + 0x8000,
    }
}

/// A well-formed record: a name, and a raw entry or a method of `Kv`.
fn good_name() -> impl Strategy<Value = EntryDecl> {
    let raw = prop_oneof![1 => Just(true), 1 => Just(false)];
    ("[a-z_][a-z0-9_]{0,31}", raw, 1u64..).prop_map(|(n, raw, id)| {
        if raw {
            EntryDecl::raw(&n)
        } else {
            EntryDecl {
                name: Name::new(&n),
                interface: Name::new("Kv"),
                method_id: id,
            }
        }
    })
}

/// A well-formed import: a method of `Kv`.
fn good_import() -> impl Strategy<Value = EntryDecl> {
    ("[a-z_][a-z0-9_]{0,31}", 1u64..).prop_map(|(n, id)| EntryDecl {
        name: Name::new(&n),
        interface: Name::new("Kv"),
        method_id: id,
    })
}

/// A table: mostly well-formed records, sometimes hostile ones.
fn table<S: Strategy<Value = EntryDecl>>(good: S) -> impl Strategy<Value = Vec<EntryDecl>> {
    prop_oneof![
        3 => proptest::collection::vec(good, 0..=8),
        1 => proptest::collection::vec(name(), 0..=8),
    ]
}

/// A hello as a hostile guest would write it, mostly close to a good one.
fn hello() -> impl Strategy<Value = Hello> {
    let l = layout();
    let at = spots();
    let tables = (
        prop_oneof![6 => 0u32..=8, 1 => 0u32..=MAX_IMPORTS + 1, 1 => any::<u32>()],
        prop_oneof![3 => Just(at.imports), 1 => Just(0u64), 1 => hostile_addr(edges())],
        prop_oneof![6 => 0u32..=8, 1 => any::<u32>()],
        prop_oneof![3 => Just(at.caps), 1 => Just(0u64), 1 => hostile_addr(edges())],
    );
    (
        (
            prop_oneof![9 => Just(ABI_VERSION), 1 => any::<u32>()],
            prop_oneof![6 => 0u32..=8, 1 => 0u32..=300, 1 => any::<u32>()],
            prop_oneof![3 => Just(at.table), 1 => hostile_addr(edges())],
            prop_oneof![3 => IMAGE_BASE..l.image_end, 1 => hostile_addr(edges())],
        ),
        (
            prop_oneof![2 => Just(0u64), 2 => Just(l.heap_base()), 1 => hostile_addr(edges())],
            prop_oneof![3 => 0u64..64, 1 => any::<u64>()],
            prop_oneof![2 => Just(l.heap_base() + 0x4000), 1 => hostile_addr(edges())],
        ),
        tables,
    )
        .prop_map(
            |(
                (abi_version, entry_count, entries, dispatcher),
                (samples, cap, count),
                (import_count, imports, cap_capacity, caps),
            )| Hello {
                abi_version,
                entry_count,
                entries,
                dispatcher,
                samples,
                sample_capacity: cap,
                sample_count: count,
                imports,
                import_count,
                cap_capacity,
                caps,
            },
        )
}

/// A capability record the VMM might write (its content is the VMM's:
/// only where it lands is at stake).
fn cap_decl() -> impl Strategy<Value = CapDecl> {
    (any::<u64>(), any::<u32>()).prop_map(|(method_id, slot)| CapDecl {
        domain: Name::new("kv"),
        entry: Name::new("get"),
        interface: Name::new("Kv"),
        method_id,
        slot,
        reserved: 0,
    })
}

/// Check what `decode_hello` accepted from `there` against memory.
fn check_table(
    mem: &vm_memory::GuestMemoryMmap,
    region: &DataRegion,
    table: u64,
    got: &[crate::domain::EntryInfo],
) -> Result<(), TestCaseError> {
    let table_len = got.len() as u64 * NAME_SIZE;
    prop_assert!(got.is_empty() || region.check(table, table_len).is_ok());
    for (i, got) in (0u64..).zip(got) {
        let e = guest_io::read_entry_decl(mem, table, i).unwrap();
        let bytes = e.name.as_bytes().unwrap();
        prop_assert!(!bytes.is_empty() && bytes.len() <= ENTRY_NAME_MAX);
        prop_assert_eq!(got.name.as_bytes(), bytes);
        prop_assert_eq!(e.name.reserved, 0);
        prop_assert_eq!(e.interface.reserved, 0);
        prop_assert_eq!(Some(got.interface.as_bytes()), e.interface.as_bytes());
        prop_assert_eq!(got.method_id, e.method_id);
        prop_assert_eq!(got.interface.is_empty(), got.method_id == RAW_METHOD);
    }
    Ok(())
}

#[test]
fn a_hello_is_accepted_only_as_memory_holds_it_and_where_it_must_lie() {
    let mem = memory();
    let l = layout();
    let region = DataRegion::of(&l);
    let accepted = Cell::new(0u32);
    let wrote = Cell::new(0u32);
    let at = prop_oneof![3 => Just(l.heap_base() + 0x100), 1 => hostile_addr(edges())];
    let strategy = (
        (at, hello(), 0u32..=6),
        (table(good_name()), any::<bool>()),
        (table(good_import()), any::<bool>()),
        proptest::collection::vec(cap_decl(), 7),
    );
    runner()
        .run(
            &strategy,
            |((addr, mut h, cap_count), (names, fit), (imports, ifit), decls)| {
                // Mostly, the counts say how many records there are.
                if fit {
                    h.entry_count = u32::try_from(names.len()).unwrap();
                }
                if ifit {
                    h.import_count = u32::try_from(imports.len()).unwrap();
                }
                let _ = guest_io::write(&mem, addr, h.as_bytes());
                for (table, records) in [(h.entries, &names), (h.imports, &imports)] {
                    for (i, n) in (0u64..).zip(records) {
                        let _ = guest_io::write(
                            &mem,
                            table.wrapping_add(i * NAME_SIZE),
                            IntoBytes::as_bytes(n),
                        );
                    }
                }
                let Ok(info) = decode_hello(&mem, &region, l.image_end, addr, cap_count) else {
                    return Ok(());
                };
                accepted.set(accepted.get() + 1);
                prop_assert!(region.check(addr, size_of::<Hello>() as u64).is_ok());
                let there = guest_io::read_hello(&mem, addr).unwrap();
                prop_assert_eq!(there.abi_version, ABI_VERSION);
                prop_assert!(there.entry_count <= MAX_ENTRIES);
                prop_assert_eq!(info.entries.len(), there.entry_count as usize);
                check_table(&mem, &region, there.entries, &info.entries)?;
                prop_assert!(there.import_count <= MAX_IMPORTS);
                prop_assert_eq!(info.imports.len(), there.import_count as usize);
                check_table(&mem, &region, there.imports, &info.imports)?;
                prop_assert!(info.imports.iter().all(|i| !i.interface.is_empty()));
                prop_assert_eq!(info.dispatcher, there.dispatcher);
                prop_assert!((IMAGE_BASE..l.image_end).contains(&info.dispatcher));
                if info.samples.addr != 0 {
                    let ring = info.samples.capacity * size_of::<Sample>() as u64;
                    prop_assert!(region.check(info.samples.addr, ring).is_ok());
                    prop_assert!(region.check(info.samples.count_addr, 8).is_ok());
                }
                let Some(range) = info.caps else {
                    prop_assert!(there.caps == 0 || cap_count == 0);
                    return Ok(());
                };
                // The buffer: inside the region, exactly cap_count records.
                let want = u64::from(cap_count) * size_of::<CapDecl>() as u64;
                prop_assert_eq!((range.addr(), range.len()), (there.caps, want));
                prop_assert!(there.cap_capacity >= cap_count);
                prop_assert!(region.check(range.addr(), range.len()).is_ok());
                // What the VMM writes there lands inside it and nowhere else.
                let lo = range.addr().saturating_sub(256);
                let hi = range.end().saturating_add(256).min(l.memory_size);
                let mut before = vec![0u8; usize::try_from(hi - lo).unwrap()];
                guest_io::read(&mem, lo, &mut before).unwrap();
                let table = &decls[..cap_count as usize];
                prop_assert!(write_cap_table(&mem, range, table).is_ok());
                prop_assert!(
                    write_cap_table(&mem, range, &decls[..cap_count as usize + 1]).is_err()
                );
                wrote.set(wrote.get() + 1);
                let mut after = vec![0u8; before.len()];
                guest_io::read(&mem, lo, &mut after).unwrap();
                let (start, end) = (
                    usize::try_from(range.addr() - lo).unwrap(),
                    usize::try_from(range.end() - lo).unwrap(),
                );
                prop_assert_eq!(&after[..start], &before[..start]);
                prop_assert_eq!(&after[end..], &before[end..]);
                prop_assert_eq!(&after[start..end], table.as_bytes());
                Ok(())
            },
        )
        .unwrap();
    let accepted = accepted.get();
    assert!(accepted > CASES / 20, "{accepted} hellos accepted");
    let wrote = wrote.get();
    assert!(wrote > CASES / 100, "{wrote} capability tables written");
}
