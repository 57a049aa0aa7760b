//! Fault injection (issue 9, item 2): the `faulter` chain raises every
//! fault kind at depth 1 and at depth 3, and every party gets exactly the
//! answer `ferry_hostile::inject`'s table states — the direct caller, the
//! parties above it, a bystander caught inside the domain, the VMM's own
//! record — after which the restarted domain serves the next call. A fault
//! during the restart leaves the domain `Dead`; a storm injects every kind
//! many times per host round trip and its tallies match the VMM's counts.
//! (A binary of its own: it checks that pools are full when idle.)

mod common;

use common::boot;
use ferry_engine::domain::Health;
use ferry_engine::manifest::Document;
use ferry_engine::shared_abi::ErrorCode;
use ferry_hostile::inject::{After, ChainSpec, FaultKind, Injector};
use std::time::Instant;

fn chain(prefix: &str, links: u32) -> ChainSpec {
    ChainSpec::new(prefix, links).expect("a valid chain")
}

/// Inject `kind` at `depth` (with a bystander if asked), failing the test
/// with the injector's sentence.
fn inject(inj: &Injector<'_>, kind: FaultKind, depth: u32, bystander: bool) {
    let r = if bystander {
        inj.inject_with_bystander(kind, depth)
    } else {
        inj.inject(kind, depth)
    };
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn every_kind_at_depth_one_and_three_then_the_restarted_domain_serves() {
    let spec = chain("inj", 3);
    let (_dog, sys) = boot(
        "every_kind_at_depth_one_and_three",
        spec.add_to(Document::default()),
    );
    let inj = Injector::new(&sys, &spec).unwrap();
    let start = Instant::now();
    for depth in [1, 3] {
        for kind in FaultKind::SOAK {
            inject(&inj, kind, depth, false);
        }
    }
    // Each restarting kind restarted exactly its own domain once per depth;
    // the relay between (depth 2) and the root never restarted.
    let restarting = FaultKind::SOAK
        .iter()
        .filter(|k| k.expected().restarts())
        .count() as u64;
    assert_eq!(restarting, 8);
    for (depth, want) in [(0, 0), (1, restarting), (2, 0), (3, restarting)] {
        let d = inj.domain(depth).unwrap();
        assert_eq!((d.generation(), d.resets()), (want, want), "{}", d.name);
        assert_eq!(d.health(), Health::Running);
    }
    eprintln!(
        "every kind at depths 1 and 3: {} injections in {:?}",
        2 * FaultKind::SOAK.len(),
        start.elapsed()
    );
}

#[test]
fn a_bystander_inside_the_domain_gets_domain_down_or_its_own_answer() {
    let spec = chain("by", 3);
    let (_dog, sys) = boot(
        "a_bystander_gets_domain_down",
        spec.add_to(Document::default()),
    );
    let inj = Injector::new(&sys, &spec).unwrap();
    for (kind, depth) in [
        (FaultKind::None, 1),
        (FaultKind::PageFault, 1),
        (FaultKind::Loop, 1),
        (FaultKind::Exit, 3),
        (FaultKind::Panic, 3),
        (FaultKind::StackOverflow, 3),
    ] {
        inject(&inj, kind, depth, true);
    }
}

#[test]
fn a_fault_during_the_restart_leaves_the_domain_dead_and_refused() {
    let spec = chain("frag", 3).fragile();
    let (_dog, sys) = boot(
        "a_fault_during_the_restart",
        spec.add_to(Document::default()),
    );
    let inj = Injector::new(&sys, &spec).unwrap();
    assert_eq!(inj.expected(FaultKind::RestartFault).after, After::Dead);
    // Depth 3 first: once the first link is dead, nothing reaches deeper.
    for depth in [3, 1] {
        // A first, harmless call: the fragile image serves like any other.
        inject(&inj, FaultKind::None, depth, false);
        inject(&inj, FaultKind::RestartFault, depth, false);
        let d = inj.domain(depth).unwrap();
        assert_eq!(d.health(), Health::Dead, "{}", d.name);
        assert_eq!(d.generation(), 0);
        // Every later call is refused with the documented code, at once.
        let again = inj.inject(FaultKind::None, depth);
        let msg = format!("{again:?}");
        assert!(again.is_err(), "a dead domain answered: {msg}");
        assert!(
            msg.contains(&format!("status: {}", ErrorCode::DomainDead as u64)),
            "{msg}"
        );
    }
    // The link between the two dead ones never restarted.
    let two = inj.domain(2).unwrap();
    assert_eq!((two.health(), two.generation()), (Health::Running, 0));
    assert!(inj.check_idle().is_ok(), "{:?}", inj.check_idle());
    // The restart-fault kind needs a fragile chain; storms never take it.
    assert!(inj.storm(1, 10, &[FaultKind::None]).is_err());
}

#[test]
fn a_storm_injects_every_kind_and_its_tallies_match_the_vmm() {
    let spec = chain("storm", 3);
    let (_dog, sys) = boot(
        "a_storm_injects_every_kind",
        spec.add_to(Document::default()),
    );
    let inj = Injector::new(&sys, &spec).unwrap();
    assert!(inj.storm(7, 10, &[FaultKind::RestartFault]).is_err());
    let rep = inj.storm(0x5eed, 400, &FaultKind::SOAK).unwrap();
    assert!(rep.is_clean(), "{:#?}", rep.problems);
    assert_eq!(rep.injected, 403, "400 and one probe per depth");
    for k in FaultKind::SOAK {
        assert!(rep.by_kind[k.index()] >= 20, "{k}: {:?}", rep.by_kind);
    }
    assert_eq!(rep.by_kind[FaultKind::RestartFault.index()], 0);
    let restarting: u64 = FaultKind::SOAK
        .iter()
        .filter(|k| k.expected().restarts())
        .map(|k| rep.by_kind[k.index()])
        .sum();
    assert_eq!(rep.restarts, restarting);
    assert_eq!(rep.rejudged, 64);
    eprintln!(
        "storm: {} injections ({} restarts) in {:?}: {:.0}/s, VMM fault counter +{}",
        rep.injected,
        rep.restarts,
        rep.elapsed,
        rep.rate(),
        rep.vmm_faults
    );
}

/// The figures of docs/RELIABILITY.md ("Fault injection"): what each kind
/// answered, the cost of a fault and restart, and storm rates. Ignored by
/// `cargo test` (it takes about a minute); run it with
/// `cargo test -p ferry-tests --test inject -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: run by hand for docs/RELIABILITY.md"]
fn measure_answers_restart_cost_and_storm_rates() {
    let one = chain("one", 1);
    let three = chain("three", 3);
    let doc = three.add_to(one.add_to(Document::default()));
    let (_dog, sys) = common::boot_for(
        "measure_answers_restart_cost_and_storm_rates",
        doc,
        std::time::Duration::from_secs(600),
    );
    let (inj1, inj3) = (
        Injector::new(&sys, &one).unwrap(),
        Injector::new(&sys, &three).unwrap(),
    );
    for kind in FaultKind::SOAK {
        let i = inj3.inject(kind, 3).unwrap_or_else(|e| panic!("{e}"));
        let r = i.observed.record;
        println!(
            "{kind:>18}: status {:>2} regs {:x?} vmm {:x?}",
            r.status,
            r.regs,
            i.report.map(|f| (f.vector, f.rip, f.error_code, f.cr2))
        );
    }
    // One link: every injection hits the same domain, so the next one waits
    // for the restart: the per-injection difference to `None` is the cost
    // of a fault plus its restart on the caller's critical path.
    let n = 2000;
    let mut base = 0.0;
    for kinds in [
        &[FaultKind::None][..],
        &[FaultKind::Exit],
        &[FaultKind::InvalidOpcode],
        &[FaultKind::PageFault],
        &[FaultKind::Panic],
        &[FaultKind::Loop],
    ] {
        let rep = inj1.storm(1, n, kinds).unwrap();
        assert!(rep.is_clean(), "{:#?}", rep.problems);
        let us = rep.elapsed.as_secs_f64() * 1e6 / rep.injected as f64;
        if kinds == [FaultKind::None] {
            base = us;
        }
        println!(
            "1 link, {:>14}: {} injections, {:>7.1} µs each ({:+.1} µs vs none), {:.0}/s",
            kinds[0].name(),
            rep.injected,
            us,
            us - base,
            rep.rate()
        );
    }
    for (inj, name) in [(&inj1, "1 link"), (&inj3, "3 links")] {
        let rep = inj.storm(2, 5 * n, &FaultKind::SOAK).unwrap();
        assert!(rep.is_clean(), "{:#?}", rep.problems);
        println!(
            "{name}, soak mix: {} injections ({} restarts) in {:.2} s: {:.0}/s",
            rep.injected,
            rep.restarts,
            rep.elapsed.as_secs_f64(),
            rep.rate()
        );
    }
}
