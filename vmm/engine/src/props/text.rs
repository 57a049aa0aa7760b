//! The print and panic paths: whatever bytes a guest names, at whatever
//! address and length, the VMM reads at most the cap, only from its data
//! region, and the line it logs is one line with nothing that breaks,
//! hides or reorders text, from which the guest's text can be recovered
//! exactly (escaping loses nothing and is unambiguous).

use super::{edges, good_addr, hostile_addr, layout, memory, runner, CASES};
use crate::fault::MAX_PANIC_MESSAGE;
use crate::guest_io;
use crate::guest_text::{escape, print_line, MAX_PRINT};
use crate::region::DataRegion;
use proptest::prelude::*;
use std::cell::Cell;

/// Whether a reader's terminal or log viewer could be fooled by `c`.
fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2028}' | '\u{2029}' | '\u{202A}'
                ..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// The inverse of [`escape`], written from its documented rules.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next()? {
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'x' => {
                let hex: String = it.by_ref().take(2).collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            'u' => {
                if it.next()? != '{' {
                    return None;
                }
                let hex: String = it.by_ref().take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// Bytes a hostile guest prints: text with control characters, escapes,
/// bidi overrides and line separators, or plain garbage.
fn guest_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => "[ -~]{0,64}".prop_map(String::into_bytes),
        2 => "(\\PC|[\\x00-\\x1f\\x7f\\u{80}-\\u{9f}\\u{202a}-\\u{202e}\\u{2028}\\u{2066}\\\\])*"
            .prop_map(String::into_bytes),
        2 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

#[test]
fn a_print_or_panic_is_read_within_bounds_and_logged_as_one_safe_line() {
    let mem = memory();
    let l = layout();
    let region = DataRegion::of(&l);
    let read = Cell::new(0u32);
    let strategy = (
        prop_oneof![1 => good_addr(), 1 => hostile_addr(edges())],
        guest_bytes(),
        prop_oneof![3 => 0u64..256, 1 => any::<u64>()],
        prop_oneof![Just(MAX_PRINT), Just(MAX_PANIC_MESSAGE)],
    );
    runner()
        .run(&strategy, |(addr, bytes, len, max)| {
            let _ = guest_io::write(&mem, addr, &bytes);
            let text = region.read_text(&mem, addr, len, max);
            let take = len.min(max);
            match region.check(addr, take) {
                Ok(_) => {
                    read.set(read.get() + 1);
                    let mut there = vec![0u8; usize::try_from(take).unwrap()];
                    guest_io::read(&mem, addr, &mut there).unwrap();
                    prop_assert_eq!(&text, &String::from_utf8_lossy(&there));
                }
                Err(_) => prop_assert!(text.starts_with("(text refused: "), "{}", text),
            }
            let line = print_line(&text);
            prop_assert!(!line.chars().any(dangerous), "{:?}", line);
            let back = unescape(&line);
            prop_assert_eq!(back.as_deref(), Some(text.trim_end_matches(['\n', '\r'])));
            // Plain printable ASCII without a backslash is logged as is.
            let plain = String::from_utf8_lossy(&bytes);
            if plain.chars().all(|c| (' '..='~').contains(&c) && c != '\\') {
                prop_assert_eq!(escape(&plain), plain.as_ref());
            }
            Ok(())
        })
        .unwrap();
    let read = read.get();
    assert!(read > CASES / 4, "{read} texts read");
}
