//! Typed interfaces on real VMs (hand-written `Probe` in images `typed_v1`
//! and `typed_v2`, no macro): a handle bound by name calls a served
//! method; a client and a server built from different definitions are
//! refused at boot naming both sides; a raw invocation that does not match
//! a served method's signature is answered `MALFORMED`, never run.

use crate::common::{boot, STACK_KIB};
use ferry_engine::manifest::{Document, DomainEntry};
use ferry_engine::shared_abi::runtime_status;
use ferry_engine::system::{System, SystemError};
use ferry_engine::thread::ThreadResult;

fn server() -> DomainEntry {
    DomainEntry::new("server", "typed_v1")
        .stacks(2, STACK_KIB)
        .exports(["probe_add"])
}

fn client(image: &str) -> DomainEntry {
    DomainEntry::new("client", image)
        .stacks(2, STACK_KIB)
        .exports(["drive"])
        .capabilities(["server.probe_add"])
}

#[test]
fn a_handle_bound_by_name_calls_the_served_method() {
    let doc = Document::default()
        .domain(client("typed_v1"))
        .domain(server());
    let (_dog, sys) = boot("typed call", doc);
    let out = sys.run_thread("client", "drive", &[7, 5]);
    assert!(
        matches!(
            out.result,
            ThreadResult::Returned {
                status: 0,
                results: [12, 12]
            }
        ),
        "{:?}",
        out.result
    );
}

#[test]
fn a_client_of_another_definition_is_refused_naming_both_sides() {
    let _dog = crate::common::Watchdog::arm("typed incompatible");
    crate::common::require_kvm();
    let doc = Document::default()
        .domain(client("typed_v2"))
        .domain(server());
    let spec = ferry_engine::manifest::System::from_document(&doc, None).unwrap();
    let Err(e) = System::boot(spec, None) else {
        panic!("booted a client and a server of different Probe definitions")
    };
    assert!(matches!(e, SystemError::Incompatible(_)), "{e:?}");
    let msg = e.to_string();
    for part in [
        "client domain `client` (image typed_v2) imports Probe.probe_add with method id 0x",
        "but server domain `server` (image typed_v1) serves it with 0x",
        "they were built from different definitions of interface Probe",
    ] {
        assert!(msg.contains(part), "{msg}");
    }
}

#[test]
fn a_malformed_raw_invocation_of_a_served_method_is_answered_malformed() {
    // A raw caller (testguest's `forward`: no objects) is not checked at
    // boot; the server's dispatcher refuses the invocation itself.
    let doc = Document::default()
        .domain(
            DomainEntry::new("raw", "testguest")
                .stacks(2, STACK_KIB)
                .exports(["forward"])
                .capabilities(["server.probe_add"]),
        )
        .domain(server());
    let (_dog, sys) = boot("typed malformed", doc);
    let out = sys.run_thread("raw", "forward", &[5]);
    // `forward` reports the callee's application status n as 0x8000 | n.
    let want = u64::from(0x8000 | runtime_status::MALFORMED);
    assert!(
        matches!(out.result, ThreadResult::Returned { status, .. } if status == want),
        "{:?}",
        out.result
    );
    // A thread started at the method itself (no objects) is refused alike.
    let out = sys.run_thread("server", "probe_add", &[1]);
    assert!(
        matches!(out.result, ThreadResult::Returned { status, .. } if status == u64::from(runtime_status::MALFORMED)),
        "{:?}",
        out.result
    );
}
