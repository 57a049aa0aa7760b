//! Opening `/dev/kvm` with an error a person can act on.

use kvm_ioctls::{Cap, Kvm};
use std::path::Path;

/// Why KVM cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    /// The device node is missing.
    #[error("/dev/kvm does not exist: Ferry needs a Linux host with KVM enabled (load kvm_intel, kvm_amd or kvm_pvm)")]
    Missing,
    /// No permission to open it.
    #[error("no permission to open /dev/kvm: run as root or add your user to the `kvm` group")]
    PermissionDenied,
    /// It opened but lacks something Ferry needs.
    #[error("this KVM lacks {0}, which Ferry needs")]
    Unsupported(&'static str),
    /// Any other failure.
    #[error("cannot open /dev/kvm: {0}")]
    Open(kvm_ioctls::Error),
}

/// Open KVM and check the capabilities Ferry relies on.
pub fn open() -> Result<Kvm, KvmError> {
    if !Path::new("/dev/kvm").exists() {
        return Err(KvmError::Missing);
    }
    let kvm = Kvm::new().map_err(|e| match e.errno() {
        libc::EACCES | libc::EPERM => KvmError::PermissionDenied,
        libc::ENOENT | libc::ENODEV | libc::ENXIO => KvmError::Missing,
        _ => KvmError::Open(e),
    })?;
    if !kvm.check_extension(Cap::SyncRegs) {
        return Err(KvmError::Unsupported("KVM_CAP_SYNC_REGS"));
    }
    Ok(kvm)
}
