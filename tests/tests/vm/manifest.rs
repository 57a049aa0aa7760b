//! Host-side refusals: a system that cannot be started is refused before
//! any thread runs, with a message naming both sides of the problem.

use ferry_engine::domain::BootFailure;
use ferry_engine::system::{System, SystemError};

fn boot_err(toml: &str) -> SystemError {
    let _dog = crate::common::Watchdog::arm("manifest boot error");
    crate::common::require_kvm();
    let spec = ferry_engine::manifest::System::parse(toml, None).unwrap();
    match System::boot(spec, None) {
        Ok(_) => panic!("booted a system that should be refused"),
        Err(e) => e,
    }
}

#[test]
fn entry_table_mismatch_names_both_sides() {
    let e = boot_err(
        "[[domain]]\nname = \"kv\"\nimage = \"testguest\"\nexports = [\"null\", \"frobnicate\"]\n",
    );
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
    let e = boot_err("[[domain]]\nname = \"old\"\nimage = \"badabi\"\nexports = [\"null\"]\n");
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
    let e = boot_err("[[domain]]\nname = \"x\"\nimage = \"/nonexistent/x.elf\"\n");
    assert!(
        e.to_string()
            .contains("cannot read image /nonexistent/x.elf"),
        "{e}"
    );
    let e = boot_err("[[domain]]\nname = \"x\"\nimage = \"nosuchimage\"\n");
    assert!(
        e.to_string().contains("no built-in image `nosuchimage`"),
        "{e}"
    );
}

#[test]
fn garbage_image_is_refused() {
    let path = std::env::temp_dir().join(format!("ferry-garbage-{}.elf", std::process::id()));
    std::fs::write(&path, b"this is not an ELF file").unwrap();
    let e = boot_err(&format!(
        "[[domain]]\nname = \"x\"\nimage = \"{}\"\n",
        path.display()
    ));
    let _ = std::fs::remove_file(&path);
    assert!(
        matches!(&e, SystemError::Boot(b) if matches!(*b.failure, BootFailure::Image { .. })),
        "{e:?}"
    );
}

#[test]
fn too_little_memory_is_refused() {
    let e =
        boot_err("[[domain]]\nname = \"x\"\nimage = \"testguest\"\nmemory_mib = 3\nstacks = 16\n");
    assert!(
        crate::common::chain(&e).contains("do not hold the image"),
        "{e}"
    );
    // Memory that ends below the image base: the loader refuses the segments.
    let e = boot_err("[[domain]]\nname = \"x\"\nimage = \"testguest\"\nmemory_mib = 1\n");
    assert!(
        crate::common::chain(&e).contains("outside the image area"),
        "{}",
        crate::common::chain(&e)
    );
}
