//! Opening KVM with an error a person can act on.

use kvm_ioctls::{Cap, Kvm};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Environment variable naming another KVM device node than `/dev/kvm`
/// (for tests of the error path, and hosts with an unusual `/dev`).
pub const DEVICE_ENV: &str = "FERRY_KVM_DEVICE";

/// Memory slots each domain's VM uses: its guest memory is one slot. KVM's
/// limit (`KVM_CAP_NR_MEMSLOTS`) is per VM, so it bounds nothing as long as
/// it is at least this.
pub const MEMSLOTS_PER_DOMAIN: usize = 1;

/// Why KVM cannot be used.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("{} does not exist: Ferry needs a Linux host with KVM enabled", .0.display())]
    Missing(PathBuf),
    #[error("no permission to open {}: run as root or add your user to the `kvm` group", .0.display())]
    PermissionDenied(PathBuf),
    #[error("this KVM lacks {0}, which Ferry needs")]
    Unsupported(&'static str),
    #[error("this KVM allows {0} memory slots per VM (KVM_CAP_NR_MEMSLOTS), Ferry needs {MEMSLOTS_PER_DOMAIN} per domain")]
    TooFewMemslots(usize),
    #[error("cannot open {}", path.display())]
    Open {
        /// The device node.
        path: PathBuf,
        /// The error.
        source: kvm_ioctls::Error,
    },
}

/// The KVM device node Ferry uses: `$FERRY_KVM_DEVICE` or `/dev/kvm`.
pub fn device_path() -> PathBuf {
    std::env::var_os(DEVICE_ENV).map_or_else(|| PathBuf::from("/dev/kvm"), PathBuf::from)
}

/// Open KVM and check the capabilities Ferry relies on.
pub fn open() -> Result<Kvm, KvmError> {
    let path = device_path();
    if !Path::new(&path).exists() {
        return Err(KvmError::Missing(path));
    }
    let c_path = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| KvmError::Missing(path.clone()))?;
    let kvm = Kvm::new_with_path(&c_path).map_err(|e| match e.errno() {
        libc::EACCES | libc::EPERM => KvmError::PermissionDenied(path.clone()),
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::Missing(path.clone()),
        _ => KvmError::Open {
            path: path.clone(),
            source: e,
        },
    })?;
    if !kvm.check_extension(Cap::SyncRegs) {
        return Err(KvmError::Unsupported("KVM_CAP_SYNC_REGS"));
    }
    check_memslots(kvm.get_nr_memslots())?;
    Ok(kvm)
}

/// Whether a VM with `nr` memory slots holds a domain.
fn check_memslots(nr: usize) -> Result<(), KvmError> {
    if nr < MEMSLOTS_PER_DOMAIN {
        return Err(KvmError::TooFewMemslots(nr));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kvm_without_a_memory_slot_per_vm_is_refused_in_one_sentence() {
        assert!(check_memslots(MEMSLOTS_PER_DOMAIN).is_ok());
        assert!(check_memslots(32_764).is_ok());
        let text = check_memslots(0).expect_err("no slot").to_string();
        assert!(
            text.contains("allows 0 memory slots per VM (KVM_CAP_NR_MEMSLOTS)"),
            "{text}"
        );
    }
}
