//! Opening KVM with an error a person can act on.

use kvm_ioctls::{Cap, Kvm};
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Environment variable naming another KVM device node than `/dev/kvm`
/// (for tests of the error path, and hosts with an unusual `/dev`).
pub const DEVICE_ENV: &str = "FERRY_KVM_DEVICE";

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
    Ok(kvm)
}
