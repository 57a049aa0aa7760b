//! Method ids are the documented hash of the documented canonical text
//! (recomputed here independently), stay the same when only parameter
//! names change, and change with a type, a mode, the order or the result.

mod common;

use common::kv::{KV_INTERFACE, MATH_INTERFACE};

/// FNV-1a 64 as `ferry_interface::id` documents it, written again here.
fn fnv1a(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn id(decl: &ferry_interface::InterfaceDecl, entry: &str) -> u64 {
    decl.methods.iter().find(|m| m.entry == entry).unwrap().id
}

#[test]
fn ids_hash_the_canonical_text() {
    let cases = [
        ("get", "Kv.get(in [u8]:1,inout [u8]:1)->usize|KvError"),
        ("fill", "Kv.fill(out [u8]:1)->u64"),
        ("put", "Kv.put(in [u8]:1,in [u8]:1,u32)->()|KvError"),
        (
            "stat",
            "Kv.stat(in Query:16,out Stats:24)->(u64,u64)|KvError",
        ),
        ("bump", "Kv.bump(inout Stats:24)->()"),
        ("sum", "Kv.sum(in [u32]:4)->u64"),
        (
            "scalars",
            "Kv.scalars(u8,u16,u32,u64,i8,bool)->(i64,bool)|KvError",
        ),
        ("more", "Kv.more(i16,i32,i64,usize,isize)->(u64,u64)"),
        ("code", "Kv.code(u32)->()|u32"),
        ("last", "Kv.last()->u8|KvError"),
    ];
    for (entry, text) in cases {
        assert_eq!(id(&KV_INTERFACE, entry), fnv1a(text), "{text}");
    }
    // The method's name, not the prefixed entry name, is hashed.
    assert_eq!(
        id(&MATH_INTERFACE, "m_add"),
        fnv1a("Math.add(u64,u64)->u64")
    );
    assert_eq!(
        id(&MATH_INTERFACE, "m_div"),
        fnv1a("Math.div(u32,u32)->u32|MathError")
    );
    assert_eq!(id(&MATH_INTERFACE, "m_noop"), fnv1a("Math.noop()->()"));
}

/// Arrays, paths and generic-free spellings: only the last path segment,
/// no spaces, the size of the element for slices.
mod spelled {
    #![allow(dead_code)]
    #[ferry_interface::interface]
    pub trait Spell {
        fn a(&self, d: &[u8; 16], q: &crate::common::kv::Query, w: &mut [[u16; 3]]) -> u64;
        fn b(
            &self,
            x: &core::primitive::u64,
        ) -> core::result::Result<u8, crate::common::kv::KvError>;
    }
}

#[test]
fn types_are_spelled_without_paths_or_spaces() {
    assert_eq!(
        id(&spelled::SPELL_INTERFACE, "a"),
        fnv1a("Spell.a(in [u8;16]:16,in Query:16,inout [[u16;3]]:6)->u64")
    );
    assert_eq!(
        id(&spelled::SPELL_INTERFACE, "b"),
        fnv1a("Spell.b(in u64:8)->u8|KvError")
    );
}

/// Versions of one interface `V`: `base`, and one change each.
macro_rules! version {
    ($name:ident: $($sig:tt)*) => {
        mod $name {
            #![allow(dead_code, unused_imports)]
            use crate::common::kv::{KvError, MathError, Query};
            #[ferry_interface::interface]
            pub trait V {
                $($sig)*
            }
        }
    };
}

version! {
    base:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32) -> Result<usize, KvError>;
}

version! {
    renamed:
    fn m(&self, k: &[u8], buf: &mut [u8], query: &Query, count: u32) -> Result<usize, KvError>;
}

version! {
    added:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32) -> Result<usize, KvError>;
    fn extra(&self);
}

version! {
    scalar_type:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u64) -> Result<usize, KvError>;
}

version! {
    object_type:
    fn m(&self, key: &[u16], value: &mut [u8], q: &Query, n: u32) -> Result<usize, KvError>;
}

version! {
    slice_vs_one:
    fn m(&self, key: &[u8], value: &mut [u8], q: &[Query], n: u32) -> Result<usize, KvError>;
}

version! {
    mode_out:
    fn m(&self, key: &[u8], #[out] value: &mut [u8], q: &Query, n: u32) -> Result<usize, KvError>;
}

version! {
    mode_in:
    fn m(&self, key: &[u8], value: &[u8], q: &Query, n: u32) -> Result<usize, KvError>;
}

version! {
    order:
    fn m(&self, value: &mut [u8], key: &[u8], q: &Query, n: u32) -> Result<usize, KvError>;
}

version! {
    ok_type:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32) -> Result<u64, KvError>;
}

version! {
    err_type:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32) -> Result<usize, MathError>;
}

version! {
    bare:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32) -> usize;
}

version! {
    more_scalars:
    fn m(&self, key: &[u8], value: &mut [u8], q: &Query, n: u32, o: u32) -> Result<usize, KvError>;
}

#[test]
fn renaming_a_parameter_or_adding_a_method_keeps_the_id() {
    let b = base::V_INTERFACE.methods[0].id;
    assert_eq!(renamed::V_INTERFACE.methods[0].id, b);
    assert_eq!(added::V_INTERFACE.methods[0].id, b);
    assert_eq!(
        b,
        fnv1a("V.m(in [u8]:1,inout [u8]:1,in Query:16,u32)->usize|KvError")
    );
}

#[test]
fn changing_a_type_a_mode_the_order_or_the_result_changes_the_id() {
    let b = base::V_INTERFACE.methods[0].id;
    let changed = [
        ("scalar type", scalar_type::V_INTERFACE.methods[0].id),
        ("object type", object_type::V_INTERFACE.methods[0].id),
        ("slice vs one", slice_vs_one::V_INTERFACE.methods[0].id),
        ("mode out", mode_out::V_INTERFACE.methods[0].id),
        ("mode in", mode_in::V_INTERFACE.methods[0].id),
        ("order", order::V_INTERFACE.methods[0].id),
        ("ok type", ok_type::V_INTERFACE.methods[0].id),
        ("error type", err_type::V_INTERFACE.methods[0].id),
        ("bare result", bare::V_INTERFACE.methods[0].id),
        ("one more scalar", more_scalars::V_INTERFACE.methods[0].id),
    ];
    for (what, id) in changed {
        assert_ne!(id, b, "{what}");
    }
    let mut all: Vec<u64> = changed.iter().map(|c| c.1).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), changed.len(), "every change gives its own id");
}

/// A struct's size is part of its object's text: growing `Query` (same
/// name) changes the id.
mod grown {
    #![allow(dead_code)]
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
    #[repr(C)]
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct Query {
        pub key: u64,
        pub flags: u32,
        pub pad: u32,
        pub more: u64,
    }
    #[ferry_interface::interface]
    pub trait V {
        fn m(
            &self,
            key: &[u8],
            value: &mut [u8],
            q: &Query,
            n: u32,
        ) -> Result<usize, crate::common::kv::KvError>;
    }
}

#[test]
fn a_grown_struct_changes_the_id() {
    assert_ne!(
        grown::V_INTERFACE.methods[0].id,
        base::V_INTERFACE.methods[0].id
    );
    assert_eq!(
        grown::V_INTERFACE.methods[0].id,
        fnv1a("V.m(in [u8]:1,inout [u8]:1,in Query:24,u32)->usize|KvError")
    );
}
