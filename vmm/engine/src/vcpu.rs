//! One vCPU of one domain: creation, the `KVM_RUN` call, and the mapping of
//! KVM's exits to the few events Ferry cares about.
//!
//! Registers travel through KVM sync regs (the `kvm_run` page): reading a
//! hypercall's arguments and writing its answer cost no ioctl. The exit
//! mapping is a plain function over [`VcpuExit`], so unit tests feed it
//! made-up exits without a VM.

use crate::arch;
use crate::watch::kick::RunSlot;
use crate::watch::Meter;
use kvm_bindings::{kvm_regs, CpuId};
use kvm_ioctls::{SyncReg, VcpuExit, VcpuFd, VmFd};
use shared_abi::{FAULT_PORT_BASE, HYPERCALL_PORT};
use std::sync::atomic::{AtomicU64, Ordering};

/// `KVM_RUN` ioctls issued by all vCPUs (process-wide).
static RUN_IOCTLS: AtomicU64 = AtomicU64::new(0);
/// Every other vCPU ioctl (registers, special registers, CPUID, …).
static OTHER_IOCTLS: AtomicU64 = AtomicU64::new(0);

/// `(KVM_RUN, other)` vCPU ioctls so far: the hot path must issue only the
/// first kind (registers travel through the sync-regs page). Read by the
/// hot-path test through the `test-util` feature.
#[cfg(feature = "test-util")]
pub fn ioctl_counts() -> (u64, u64) {
    (
        RUN_IOCTLS.load(Ordering::Relaxed),
        OTHER_IOCTLS.load(Ordering::Relaxed),
    )
}

fn other_ioctls(n: u64) {
    OTHER_IOCTLS.fetch_add(n, Ordering::Relaxed);
}

/// What stopped the guest, in Ferry's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `out` to the hypercall port; the number is in `RAX`.
    Hypercall,
    /// An exception stub reported `vector`; the CPU's frame is at `RSP`.
    Exception {
        /// The CPU exception vector.
        vector: u64,
    },
    /// The vCPU shut down (triple fault).
    Shutdown,
    /// An access to unbacked guest-physical memory.
    Unbacked {
        /// The guest-physical address.
        addr: u64,
    },
    /// The run was interrupted by a signal (`EINTR`); running again resumes.
    Interrupted,
    /// Anything else: KVM could not run the guest, or it did something no
    /// Ferry guest does (port input, an unknown port, `hlt`, …).
    Unexpected(&'static str),
}

/// Map a KVM exit to an [`Exit`].
pub fn classify(exit: &VcpuExit<'_>) -> Exit {
    match exit {
        VcpuExit::IoOut(port, _) if *port == HYPERCALL_PORT => Exit::Hypercall,
        VcpuExit::IoOut(port, _)
            if (FAULT_PORT_BASE..FAULT_PORT_BASE + arch::STUB_PORTS).contains(port) =>
        {
            Exit::Exception {
                vector: u64::from(port - FAULT_PORT_BASE),
            }
        }
        VcpuExit::IoOut(..) => Exit::Unexpected("out to an unknown port"),
        VcpuExit::IoIn(..) => Exit::Unexpected("port input"),
        VcpuExit::MmioRead(addr, _) | VcpuExit::MmioWrite(addr, _) => {
            Exit::Unbacked { addr: *addr }
        }
        VcpuExit::MemoryFault { gpa, .. } => Exit::Unbacked { addr: *gpa },
        VcpuExit::Shutdown => Exit::Shutdown,
        VcpuExit::Intr => Exit::Interrupted,
        VcpuExit::Hlt => Exit::Unexpected("hlt"),
        VcpuExit::InternalError => Exit::Unexpected("KVM internal error"),
        VcpuExit::FailEntry(..) => Exit::Unexpected("KVM failed to enter the guest"),
        _ => Exit::Unexpected("unexpected KVM exit"),
    }
}

/// A vCPU ready to run Ferry guest code at CPL3 in its domain.
#[derive(Debug)]
pub struct Vcpu {
    fd: VcpuFd,
    slot: u32,
    /// The vCPU's architectural state is unknown (it faulted): its special
    /// registers must be reloaded before it runs guest code again.
    needs_reset: bool,
}

impl Vcpu {
    /// Create vCPU `slot` of `vm` with its own TSS and CPL3 long-mode state.
    pub fn create(vm: &VmFd, slot: u32, cpuid: &CpuId) -> Result<Self, kvm_ioctls::Error> {
        other_ioctls(2);
        let fd = vm.create_vcpu(u64::from(slot))?;
        fd.set_cpuid2(cpuid)?;
        let mut v = Self {
            fd,
            slot,
            needs_reset: true,
        };
        v.reset()?;
        v.fd.set_sync_valid_reg(SyncReg::Register);
        Ok(v)
    }

    /// Reload the special registers (segments, TR, paging, EFER) and clear
    /// the general ones: the state a fresh invocation starts from.
    pub fn reset(&mut self) -> Result<(), kvm_ioctls::Error> {
        other_ioctls(3);
        let base = self.fd.get_sregs()?;
        self.fd.set_sregs(&arch::sregs(&base, self.slot))?;
        self.fd.set_regs(&kvm_regs {
            rflags: 0x2,
            ..Default::default()
        })?;
        self.needs_reset = false;
        Ok(())
    }

    /// Make the vCPU usable again if a fault left it in an unknown state.
    pub fn ensure_clean(&mut self) -> Result<(), kvm_ioctls::Error> {
        if self.needs_reset {
            self.reset()?;
        }
        Ok(())
    }

    /// Note that a fault left this vCPU in an unknown state.
    pub fn mark_dirty(&mut self) {
        self.needs_reset = true;
    }

    /// Its TSS slot (and KVM vCPU id) in the domain.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// Run until the next exit Ferry must handle. With a `meter`, the run
    /// can be kicked: this vCPU's `immediate_exit` is published as the
    /// kick's target first, then the meter is checked (a budget that ran
    /// out while the thread was in VMM code is `Interrupted` without a
    /// run), and after the run both the target and `immediate_exit` are
    /// cleared, so no stale kick reaches the vCPU's next run or next owner.
    /// No system call but `KVM_RUN`.
    pub fn run(&mut self, meter: Option<&Meter>) -> Result<Exit, kvm_ioctls::Error> {
        let Some(meter) = meter else {
            RUN_IOCTLS.fetch_add(1, Ordering::Relaxed);
            let exit = self.fd.run()?;
            return Ok(classify(&exit));
        };
        RunSlot::arm(&raw mut self.fd.get_kvm_run().immediate_exit);
        if meter.expired() {
            RunSlot::disarm();
            self.fd.set_kvm_immediate_exit(0);
            return Ok(Exit::Interrupted);
        }
        RUN_IOCTLS.fetch_add(1, Ordering::Relaxed);
        let exit = self.fd.run().map(|e| classify(&e));
        RunSlot::disarm();
        self.fd.set_kvm_immediate_exit(0);
        exit
    }

    /// The general registers as of the last exit (sync regs: no ioctl).
    pub fn regs(&mut self) -> &kvm_regs {
        &self.fd.sync_regs_mut().regs
    }

    /// Change general registers for the next run (marked dirty, no ioctl).
    pub fn set_regs(&mut self, f: impl FnOnce(&mut kvm_regs)) {
        f(&mut self.fd.sync_regs_mut().regs);
        self.fd.set_sync_dirty_reg(SyncReg::Register);
    }

    /// Special registers by ioctl (fault reports only: not on the hot path).
    pub fn sregs(&self) -> Result<kvm_bindings::kvm_sregs, kvm_ioctls::Error> {
        other_ioctls(1);
        self.fd.get_sregs()
    }

    /// General registers by ioctl (after a shutdown, when sync regs may be stale).
    pub fn regs_by_ioctl(&self) -> Result<kvm_regs, kvm_ioctls::Error> {
        other_ioctls(1);
        self.fd.get_regs()
    }

    /// The guest's TSC frequency as KVM sets it.
    pub fn tsc_khz(&self) -> Result<u32, kvm_ioctls::Error> {
        other_ioctls(1);
        self.fd.get_tsc_khz()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_map_to_events() {
        let data = [0u8; 4];
        assert_eq!(
            classify(&VcpuExit::IoOut(HYPERCALL_PORT, &data)),
            Exit::Hypercall
        );
        assert_eq!(
            classify(&VcpuExit::IoOut(FAULT_PORT_BASE + 14, &data)),
            Exit::Exception { vector: 14 }
        );
        assert!(matches!(
            classify(&VcpuExit::IoOut(FAULT_PORT_BASE + 32, &data)),
            Exit::Unexpected(_)
        ));
        assert!(matches!(
            classify(&VcpuExit::IoOut(0x3f8, &data)),
            Exit::Unexpected(_)
        ));
        assert_eq!(
            classify(&VcpuExit::MmioWrite(0xdead_0000, &data)),
            Exit::Unbacked { addr: 0xdead_0000 }
        );
        assert_eq!(classify(&VcpuExit::Shutdown), Exit::Shutdown);
        assert_eq!(classify(&VcpuExit::Intr), Exit::Interrupted);
        assert!(matches!(classify(&VcpuExit::Hlt), Exit::Unexpected(_)));
    }
}
