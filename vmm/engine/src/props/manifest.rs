//! The manifest parser: arbitrary bytes, TOML-shaped noise, and TOML that is
//! well formed but wrong (wrong types, out-of-range numbers, unknown keys,
//! dangling capabilities and threads, duplicate names) never panic, and
//! whatever is accepted satisfies every rule the engine relies on.

use super::{runner, CASES};
use crate::manifest::{System, MAX_DOMAINS, MAX_LIMIT_MS};
use proptest::prelude::*;
use shared_abi::layout::{MAX_MEMORY, MAX_VCPUS, PAGE_SIZE};
use shared_abi::{ENTRY_NAME_MAX, MAX_SCALARS};
use std::cell::Cell;
use std::time::Duration;

/// Every rule an accepted system must satisfy, checked from the outside.
fn check_accepted(s: &System) -> Result<(), TestCaseError> {
    prop_assert!(!s.domains.is_empty() && s.domains.len() <= MAX_DOMAINS);
    let mut names = std::collections::HashSet::new();
    for d in &s.domains {
        prop_assert!(!d.name.is_empty() && !d.name.contains('.'), "{}", d.name);
        prop_assert!(names.insert(d.name.as_str()), "{} twice", d.name);
        prop_assert!((1 << 20..=MAX_MEMORY).contains(&d.memory) && d.memory % (1 << 20) == 0);
        prop_assert!((1..=MAX_VCPUS).contains(&d.stacks));
        prop_assert!((d.stacks..=MAX_VCPUS).contains(&d.stack_max));
        if d.stack_policy != crate::manifest::StackPolicy::Grow {
            prop_assert_eq!(d.stack_max, d.stacks, "only a growing pool grows");
        } else {
            prop_assert_eq!(d.ipc, crate::manifest::Ipc::Migrate);
        }
        prop_assert!(d.stack_size >= 2 * PAGE_SIZE && d.stack_size % PAGE_SIZE == 0);
        prop_assert!(d.stack_size <= d.memory);
        let mut exports = std::collections::HashSet::new();
        for e in &d.exports {
            prop_assert!(!e.is_empty() && e.len() <= ENTRY_NAME_MAX);
            prop_assert!(exports.insert(e.as_str()));
        }
        let finite = |t: Option<Duration>| {
            t.is_none_or(|t| t >= Duration::from_millis(1) && t.as_millis() <= MAX_LIMIT_MS.into())
        };
        prop_assert!(finite(d.limits.budget) && finite(d.limits.wait));
        prop_assert!(finite(Some(d.limits.restart)));
        for c in &d.capabilities {
            let target = s.domains.get(c.domain);
            prop_assert!(target.is_some_and(|t| t.exports.contains(&c.entry)));
        }
    }
    for t in &s.threads {
        let home = s.domains.get(t.domain);
        prop_assert!(home.is_some_and(|h| h.exports.contains(&t.entry)));
        prop_assert!(t.args.len() <= MAX_SCALARS);
    }
    Ok(())
}

/// A TOML value for a key, right or wrong in type and range.
fn value(good: BoxedStrategy<String>) -> BoxedStrategy<String> {
    prop_oneof![
        40 => good,
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "\"[a-z.]{0,6}\"",
        1 => Just("[]".to_owned()),
        1 => Just("true".to_owned()),
        1 => Just("1.5".to_owned()),
        1 => Just("{ a = 1 }".to_owned()),
    ]
    .boxed()
}

fn quoted(names: &'static [&'static str]) -> BoxedStrategy<String> {
    proptest::sample::select(names)
        .prop_map(|n| format!("\"{n}\""))
        .boxed()
}

fn list(items: BoxedStrategy<String>, max: usize) -> BoxedStrategy<String> {
    proptest::collection::vec(items, 0..=max)
        .prop_map(|v| format!("[{}]", v.join(", ")))
        .boxed()
}

/// Domain names: `d0`…`d3` (what a well-formed manifest uses) and bad ones.
const DOMAINS: &[&str] = &["d0", "d1", "d2", "d3", "", "a.b"];
const ENTRIES: &[&str] = &["x", "y", "", "a_name_that_is_longer_than_32_bytes"];
const GOOD_CAPS: &[&str] = &["d0.x", "d1.y", "d2.x", "d0.y", "d1.x"];
const BAD_CAPS: &[&str] = &["zz.x", "d1", "d0.", ".x", "d0.b.x", "d3.zz"];

/// Mostly one of the `good` names, now and then one of the `bad`.
fn mostly(good: &'static [&'static str], bad: &'static [&'static str]) -> BoxedStrategy<String> {
    prop_oneof![16 => quoted(good), 1 => quoted(bad)].boxed()
}

fn number(good: std::ops::RangeInclusive<u64>) -> BoxedStrategy<String> {
    prop_oneof![
        18 => good.prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| (n >> 1).to_string()),
        1 => Just("0".to_owned()),
    ]
    .boxed()
}

fn limit() -> BoxedStrategy<String> {
    prop_oneof![
        12 => (1u64..=5000).prop_map(|n| n.to_string()),
        1 => Just("\"unlimited\"".to_owned()),
        1 => Just("\"forever\"".to_owned()),
        1 => Just((MAX_LIMIT_MS + 1).to_string()),
    ]
    .boxed()
}

/// One `key = value` line of a `[[domain]]` table (or an unknown key).
fn domain_line() -> BoxedStrategy<String> {
    let line = |key: &'static str, v: BoxedStrategy<String>| {
        value(v).prop_map(move |v| format!("{key} = {v}")).boxed()
    };
    prop_oneof![
        1 => line("colour", quoted(&["blue"])),
        4 => line("image", quoted(&["testguest", "kv", "dir/x.elf", ""])),
        4 => line("memory_mib", number(1..=300)),
        4 => line("stacks", number(1..=40)),
        4 => line(
            "stack_kib",
            prop_oneof![
                4 => (2u64..=20).prop_map(|k| (k * 4).to_string()),
                1 => number(1..=80),
            ]
            .boxed()
        ),
        4 => line(
            "exports",
            prop_oneof![
                4 => Just("[\"x\", \"y\"]".to_owned()),
                1 => list(mostly(&["x", "y"], ENTRIES), 3),
            ]
            .boxed()
        ),
        4 => line("capabilities", list(mostly(GOOD_CAPS, BAD_CAPS), 2)),
        4 => line("stack_policy", mostly(&["block", "fail", "grow"], &["spin"])),
        3 => line("stack_max", number(0..=40)),
        2 => line("grow_fallback", mostly(&["block", "fail"], &["grow"])),
        4 => line("max_spawned", number(0..=8)),
        4 => line("ipc", mostly(&["migrate", "message"], &["carrier pigeon"])),
        4 => line("budget_ms", limit()),
        4 => line("wait_ms", limit()),
        4 => line("restart_ms", limit()),
    ]
    .boxed()
}

fn thread_line() -> BoxedStrategy<String> {
    let line = |key: &'static str, v: BoxedStrategy<String>| {
        value(v).prop_map(move |v| format!("{key} = {v}")).boxed()
    };
    prop_oneof![
        line("domain", mostly(&["d0", "d1", "d2"], DOMAINS)),
        line("entry", mostly(&["x", "y"], ENTRIES)),
        line("args", list(number(0..=9), 8)),
    ]
    .boxed()
}

/// A whole manifest: domains that usually have a name and an image,
/// threads, and a top-level key now and then.
fn manifest_text() -> impl Strategy<Value = String> {
    let domain = |i: usize| {
        (
            proptest::option::weighted(
                0.95,
                mostly(DOMAINS.get(i..=i).unwrap_or_default(), DOMAINS),
            ),
            proptest::option::weighted(0.95, quoted(&["testguest", "kv"])),
            proptest::collection::vec(domain_line(), 0..6),
        )
            .prop_map(|(name, image, lines)| {
                let mut t = String::from("[[domain]]\n");
                if let Some(n) = name {
                    t += &format!("name = {n}\n");
                }
                if let Some(i) = image {
                    t += &format!("image = {i}\n");
                }
                // A key given twice is a TOML error: keep the first of each.
                let mut seen = std::collections::HashSet::new();
                for l in lines {
                    let key = l.split(' ').next().unwrap_or_default().to_owned();
                    if seen.insert(key) {
                        t += &l;
                        t.push('\n');
                    }
                }
                t
            })
    };
    let domains = prop_oneof![1 => Just(0usize), 6 => 1usize..=4]
        .prop_flat_map(move |n| (0..n).map(domain).collect::<Vec<_>>());
    let thread = (
        proptest::option::weighted(0.95, mostly(&["d0", "d1", "d2"], DOMAINS)),
        proptest::option::weighted(0.95, mostly(&["x", "y"], ENTRIES)),
        proptest::collection::vec(thread_line(), 0..3),
    )
        .prop_map(|(domain, entry, lines)| {
            let mut t = String::from("[[thread]]\n");
            let mut seen = std::collections::HashSet::new();
            if let Some(d) = domain {
                t += &format!("domain = {d}\n");
                seen.insert("domain".to_owned());
            }
            if let Some(e) = entry {
                t += &format!("entry = {e}\n");
                seen.insert("entry".to_owned());
            }
            for l in lines {
                let key = l.split(' ').next().unwrap_or_default().to_owned();
                if seen.insert(key) {
                    t += &l;
                    t.push('\n');
                }
            }
            t
        });
    (
        proptest::option::weighted(0.2, number(0..=4096)),
        domains,
        proptest::collection::vec(thread, 0..3),
    )
        .prop_map(|(total, domains, threads)| {
            let mut t = total.map_or(String::new(), |n| format!("max_spawned_total = {n}\n"));
            t += &domains.concat();
            t += &threads.concat();
            t
        })
}

#[test]
fn structured_but_wrong_manifests_are_refused_or_sound() {
    let (accepted, refused) = (Cell::new(0u32), Cell::new(0u32));
    runner()
        .run(&manifest_text(), |text| {
            match System::parse(&text, None) {
                Ok(s) => {
                    accepted.set(accepted.get() + 1);
                    check_accepted(&s)?;
                }
                Err(e) => {
                    refused.set(refused.get() + 1);
                    // Every refusal says something.
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
    let (accepted, refused) = (accepted.get(), refused.get());
    // Both sides are reached often: the generator is not all noise.
    assert!(
        accepted > CASES / 50,
        "{accepted} accepted, {refused} refused"
    );
    assert!(
        refused > CASES / 2,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn arbitrary_bytes_and_toml_noise_never_panic_the_parser() {
    let accepted = Cell::new(0u32);
    let noise = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..400)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        "(\\[\\[domain\\]\\]\n|\\[\\[thread\\]\\]\n|name = \"a\"\n|image = \"kv\"\n|exports = \\[\"x\"\\]\n|[a-z_]{1,8} = [-0-9\"\\[\\]{}a-z.,]{0,12}\n|[\\[\\]=\"{}., \n#a-z0-9]{0,16}){0,12}",
    ];
    runner()
        .run(&noise, |text| {
            if let Ok(s) = System::parse(&text, None) {
                accepted.set(accepted.get() + 1);
                check_accepted(&s)?;
            }
            Ok(())
        })
        .unwrap();
    // Noise is almost always refused; what gets through is still sound.
    assert!(accepted.get() < CASES);
}
