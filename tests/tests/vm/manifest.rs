//! Host-side refusals: a system that cannot be started is refused before
//! any thread runs, with a message naming both sides of the problem. The
//! manifests are valid (text parsing and its errors are the engine's own
//! unit tests); it is booting them that must fail.

use crate::common::STACK_KIB;
use ferry_engine::domain::BootFailure;
use ferry_engine::manifest::{Document, DomainEntry};
use ferry_engine::system::{System, SystemError};

fn boot_err(domain: DomainEntry) -> SystemError {
    let _dog = crate::common::Watchdog::arm("manifest boot error");
    crate::common::require_kvm();
    let doc = Document::default().domain(domain);
    let spec = ferry_engine::manifest::System::from_document(&doc, None).unwrap();
    match System::boot(spec, None) {
        Ok(_) => panic!("booted a system that should be refused"),
        Err(e) => e,
    }
}

#[test]
fn entry_table_mismatch_names_both_sides() {
    let e = boot_err(DomainEntry::new("kv", "testguest").exports(["null", "frobnicate"]));
    assert!(
        matches!(&e, SystemError::Boot(b) if matches!(*b.failure, BootFailure::EntryMismatch { .. })),
        "{e:?}"
    );
    let msg = crate::common::chain(&e);
    assert!(
        msg.contains("frobnicate") && msg.contains("drive_basic"),
        "{msg}"
    );
}

#[test]
fn abi_version_mismatch_names_both_versions() {
    let e = boot_err(DomainEntry::new("old", "badabi").exports(["null"]));
    let SystemError::Boot(b) = e else {
        panic!("{e:?}")
    };
    let BootFailure::AbiVersion { guest, vmm } = *b.failure else {
        panic!("{b:?}")
    };
    assert_eq!(vmm, ferry_engine::shared_abi::ABI_VERSION);
    assert_ne!(guest, vmm);
}

#[test]
fn missing_image_is_refused() {
    let e = boot_err(DomainEntry::new("x", "/nonexistent/x.elf"));
    assert!(
        e.to_string()
            .contains("cannot read image /nonexistent/x.elf"),
        "{e}"
    );
    let e = boot_err(DomainEntry::new("x", "nosuchimage"));
    assert!(
        e.to_string().contains("no built-in image `nosuchimage`"),
        "{e}"
    );
}

#[test]
fn garbage_image_is_refused() {
    let path = std::env::temp_dir().join(format!("ferry-garbage-{}.elf", std::process::id()));
    std::fs::write(&path, b"this is not an ELF file").unwrap();
    let e = boot_err(DomainEntry::new("x", path.to_str().unwrap()));
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(&e, SystemError::Boot(b) if matches!(*b.failure, BootFailure::Image { .. })),
        "{e:?}"
    );
}

#[test]
fn too_little_memory_is_refused() {
    let e = boot_err(
        DomainEntry::new("x", "testguest")
            .memory_mib(3)
            .stacks(16, STACK_KIB),
    );
    assert!(
        crate::common::chain(&e).contains("do not hold the image"),
        "{e}"
    );
    // Memory that ends below the image base: refused before any VM exists,
    // from the image's headers, with the size that fits — and that size
    // boots, while one MiB less does not.
    let e = boot_err(DomainEntry::new("x", "testguest").memory_mib(1));
    let fits = match &e {
        SystemError::Boot(b) => match *b.failure {
            BootFailure::TooSmall { fits_mib, .. } => fits_mib,
            ref other => panic!("not TooSmall: {other:?}"),
        },
        other => panic!("not a boot error: {other:?}"),
    };
    let text = crate::common::chain(&e);
    assert!(
        text.contains(&format!("the smallest `memory_mib` that fits is {fits}")),
        "{text}"
    );
    assert!(fits > 2, "the image alone starts at 2 MiB: {fits}");
    let too_small = boot_err(DomainEntry::new("x", "testguest").memory_mib(fits - 1));
    assert!(
        crate::common::chain(&too_small).contains(&format!("fits is {fits}")),
        "{}",
        crate::common::chain(&too_small)
    );
    let doc = Document::default().domain(DomainEntry::new("x", "testguest").memory_mib(fits));
    let spec = ferry_engine::manifest::System::from_document(&doc, None).unwrap();
    let _dog = crate::common::Watchdog::arm("smallest memory boots");
    System::boot(spec, None).unwrap_or_else(|e| panic!("{fits} MiB should boot: {e}"));
}

/// Tests that set only the number of stacks pass [`STACK_KIB`]: it must be
/// what a manifest that omits `stack_kib` gets.
#[test]
fn stack_kib_is_the_manifest_default() {
    assert_eq!(DomainEntry::new("x", "testguest").stack_kib, STACK_KIB);
}
