//! Memory density, in a process of its own (it reads the whole process's
//! resident memory): an idle small domain costs what it touched, not its
//! `memory_mib`, and a restart gives back what the guest touched since.

mod common;

use common::{boot, ok, settled, testguest};
use ferry_engine::manifest::{Document, DomainEntry, System as Manifest};
use ferry_engine::system::System;
use ferry_engine::testing;

/// Domains booted at once by the density test.
const DOMAINS: usize = 256;
/// The bound on resident memory per idle small domain (issue 12's target:
/// 4,096 domains in about 1 GiB). Measured here: about 130 KiB.
const PER_DOMAIN_BOUND: u64 = 256 << 10;

/// `n` idle `logger` domains of 4 MiB and 2 stacks, named `{prefix}{i}`.
fn loggers(prefix: &str, n: usize) -> Manifest {
    let mut doc = Document::default();
    for i in 0..n {
        doc = doc.domain(
            DomainEntry::new(format!("{prefix}{i}"), "logger")
                .memory_mib(4)
                .stacks(2, 64)
                .exports(["count"]),
        );
    }
    Manifest::from_document(&doc, None).expect("manifest")
}

/// The process's resident memory (`VmRSS`), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in {status}"));
    kib << 10
}

#[test]
fn hundreds_of_idle_domains_cost_what_they_touched() {
    let _dog = common::Watchdog::arm("density");
    common::require_kvm();
    // A first system pays the process's one-time costs (images, pools,
    // threads): the measurement is the second one's growth.
    let warm = System::boot(loggers("warm", 4), None).expect("warm-up boot");
    let before = rss();
    let sys = System::boot(loggers("log", DOMAINS), None).expect("boot");
    let after = rss();
    let per_domain = after.saturating_sub(before) / DOMAINS as u64;
    let guest: Vec<u64> = sys
        .domains()
        .iter()
        .map(|d| d.resident_bytes().expect("mincore"))
        .collect();
    let guest_max = guest.iter().copied().max().unwrap_or(0);
    let guest_mean = guest.iter().sum::<u64>() / DOMAINS as u64;
    eprintln!(
        "{DOMAINS} idle loggers of 4 MiB: process RSS {} KiB → {} KiB, {} KiB per domain; \
         guest memory resident {guest_mean} B mean, {guest_max} B max",
        before >> 10,
        after >> 10,
        per_domain >> 10,
    );
    assert!(
        per_domain <= PER_DOMAIN_BOUND,
        "{} KiB resident per idle domain (bound {} KiB)",
        per_domain >> 10,
        PER_DOMAIN_BOUND >> 10
    );
    // Not a byte of any domain's 4 MiB beyond what boot wrote and the
    // guest touched: far from all of it (huge pages would make it 4 MiB).
    assert!(
        guest_max <= PER_DOMAIN_BOUND,
        "{guest_max} B resident in one domain"
    );
    // Every domain still serves.
    for name in ["log0", "log255"] {
        ok(&sys.run_thread(name, "count", &[]).result);
    }
    drop(sys);
    drop(warm);
}

#[test]
fn a_restart_returns_a_domain_to_its_boot_footprint() {
    // The target overflows its stack (touching all 64 KiB of it) and
    // faults; its reset must give those pages back.
    let doc = Document::default()
        .domain(testguest(
            "driver",
            &["target.stack_overflow", "target.sites"],
        ))
        .domain(testguest("target", &[]).memory_mib(8));
    let (_dog, sys) = boot("restart footprint", doc);
    let target = sys.domain_by_name("target").expect("target");
    let booted = target.resident_bytes().expect("mincore");
    ok(&sys.run_thread("target", "bump", &[]).result);
    let used = target.resident_bytes().expect("mincore");
    let mut after = Vec::new();
    for generation in 1..=3 {
        // Status aside, the call ends in the target's fault.
        let _ = sys.run_thread("driver", "drive_fault", &[0]);
        settled(target);
        assert_eq!(target.generation(), generation, "the target restarted");
        after.push(target.resident_bytes().expect("mincore"));
    }
    eprintln!(
        "target resident: booted {booted} B, after a call {used} B, after restarts {after:?}"
    );
    // The same footprint after every restart…
    assert!(after.iter().all(|&a| a == after[0]), "{after:?}");
    // …and about that of a fresh boot: its one vCPU's TSS is rewritten,
    // the stack it overflowed is not resident any more.
    assert!(
        after[0] <= booted + (8 << 10),
        "after a restart {} B, at boot {booted} B",
        after[0]
    );
    // It serves again, from a fresh state.
    assert_eq!(ok(&sys.run_thread("target", "bump", &[]).result), [1, 3]);
}

#[test]
fn a_restart_after_a_short_call_zeroes_memory_in_place() {
    // A call that touches no page its boot did not (a fault straight
    // away) leaves only boot pages resident: the reset zeroes them where
    // they are instead of giving them back, which would cost a call into
    // every VM's MMU notifier of the process.
    let doc = Document::default().domain(testguest("target", &[]));
    let (_dog, sys) = boot("restart in place", doc);
    let target = sys.domain_by_name("target").expect("target");
    let booted = target.resident_bytes().expect("mincore");
    // A page of stacks or heap its boot touched: marked before each
    // restart, it must read (nearly) zero after it — the guest's init may
    // write a few bytes of it again, not the whole page.
    let page = *testing::resident_pages(target)
        .expect("mincore")
        .iter()
        .rfind(|&&a| a >= target.layout.image_end)
        .expect("a resident page above the image");
    const MARK: u8 = 0xA5;
    let mut after = Vec::new();
    for generation in 1..=3 {
        testing::write_guest(target, page, &[MARK; 4096]).expect("mark");
        let _ = sys.run_thread("target", "ud2", &[]);
        settled(target);
        let left = testing::read_guest(target, page, 4096).expect("read");
        let marked = left.iter().filter(|&&b| b == MARK).count();
        assert!(
            marked <= 64,
            "{marked} marked bytes of page {page:#x} survived the reset"
        );
        assert_eq!(target.generation(), generation, "the target restarted");
        after.push(target.resident_bytes().expect("mincore"));
    }
    eprintln!(
        "target resident: booted {booted} B, after restarts {after:?}, {} of 3 in place",
        target.resets_in_place()
    );
    // The same footprint after every restart: the boot's, plus the
    // exception-stack page the fault wrote (the VMM's system area, kept).
    assert!(after.iter().all(|&a| a == after[0]), "{after:?}");
    assert!(
        after[0] <= booted + (8 << 10),
        "after a restart {} B, at boot {booted} B",
        after[0]
    );
    assert_eq!(target.resets_in_place(), 3);
    // Zeroed for real: it serves again from a fresh state.
    assert_eq!(ok(&sys.run_thread("target", "bump", &[]).result), [1, 3]);
}
