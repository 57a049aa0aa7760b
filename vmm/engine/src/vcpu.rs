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
use kvm_bindings::{kvm_regs, CpuId, Xsave};
use kvm_ioctls::{Cap, SyncReg, VcpuExit, VcpuFd, VmFd};
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

/// The x87 control word after `FNINIT` (all exceptions masked, 64-bit precision).
const X87_RESET_FCW: u32 = 0x037F;
/// MXCSR after reset (all SIMD exceptions masked, round to nearest).
const MXCSR_RESET: u32 = 0x1F80;

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
    /// Bytes KVM reads for `KVM_SET_XSAVE` on this VM (`KVM_CAP_XSAVE2`, at
    /// least the 4 KiB of the plain `kvm_xsave`).
    xsave_size: usize,
    /// The vCPU's architectural state is unknown (it faulted): its special
    /// registers must be reloaded before it runs guest code again.
    needs_reset: bool,
    /// Its last exit was an MMIO access (to unbacked memory, e.g. a stack
    /// window slot not mapped into the domain): KVM completes the access
    /// at the next `KVM_RUN`, with the registers of the old instruction,
    /// so a reset runs it once first (with `immediate_exit`) or the
    /// completion would overwrite the reset's registers.
    mmio_pending: bool,
}

impl Vcpu {
    /// Create vCPU `slot` of `vm` with its own TSS and CPL3 long-mode state.
    pub fn create(vm: &VmFd, slot: u32, cpuid: &CpuId) -> Result<Self, kvm_ioctls::Error> {
        other_ioctls(2);
        let fd = vm.create_vcpu(u64::from(slot))?;
        fd.set_cpuid2(cpuid)?;
        let xsave_size = usize::try_from(vm.check_extension_int(Cap::Xsave2))
            .unwrap_or(0)
            .max(std::mem::size_of::<kvm_bindings::kvm_xsave>());
        let mut v = Self {
            fd,
            slot,
            xsave_size,
            needs_reset: true,
            mmio_pending: false,
        };
        v.reset()?;
        v.fd.set_sync_valid_reg(SyncReg::Register);
        Ok(v)
    }

    /// Reload the special registers (segments, TR, paging, EFER), clear the
    /// general ones and put every extended register (x87, SSE, AVX, AVX-512)
    /// in its reset state: the state a fresh invocation starts from.
    pub fn reset(&mut self) -> Result<(), kvm_ioctls::Error> {
        if self.mmio_pending {
            self.complete_mmio()?;
        }
        self.reset_xstate()?;
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

    /// x87, SSE, AVX and AVX-512 state (ymm/zmm upper halves, zmm16–31, the
    /// k mask registers, …) back to the reset state with `KVM_SET_XSAVE`:
    /// PVM runs AVX and AVX-512 at CPL3 although the guest's CPUID hides
    /// them, and `KVM_SET_FPU` would leave all but x87 and the low xmm
    /// halves. XSTATE_BV = 0 means "every component in its init state";
    /// FCW and MXCSR get their reset values too. ~11 µs: never on the hot
    /// path (only on creation and on a reset).
    fn reset_xstate(&mut self) -> Result<(), kvm_ioctls::Error> {
        // Bytes KVM may read past the plain 4 KiB `kvm_xsave`, as 4-byte
        // FAM entries.
        let extra = self
            .xsave_size
            .saturating_sub(std::mem::size_of::<kvm_bindings::kvm_xsave>())
            .div_ceil(4);
        let mut xsave = Xsave::new(extra).map_err(|_| kvm_ioctls::Error::new(libc::ENOMEM))?;
        // SAFETY: only the register image is written, never the FAM
        // length field.
        let image = unsafe { &mut xsave.as_mut_fam_struct().xsave.region };
        // FXSAVE layout: FCW in bytes 0..2, MXCSR in bytes 24..28; the
        // XSAVE header (XSTATE_BV at byte 512) stays zero.
        for (word, value) in [(0, X87_RESET_FCW), (6, MXCSR_RESET)] {
            if let Some(w) = image.get_mut(word) {
                *w = value;
            }
        }
        other_ioctls(1);
        // SAFETY: `xsave` holds `xsave_size` bytes (at least what
        // `KVM_CAP_XSAVE2` says KVM reads for this VM, and at least the
        // plain 4 KiB), so KVM never reads past it; it is a plain buffer
        // KVM only reads.
        unsafe { self.fd.set_xsave2(&xsave) }
    }

    /// Let KVM finish the MMIO access the last exit reported: one
    /// `KVM_RUN` with `immediate_exit` set completes it and returns `EINTR`
    /// before any guest instruction runs (cloud-hypervisor does the same
    /// before it saves a vCPU's state after an I/O exit).
    fn complete_mmio(&mut self) -> Result<(), kvm_ioctls::Error> {
        self.fd.set_kvm_immediate_exit(1);
        RUN_IOCTLS.fetch_add(1, Ordering::Relaxed);
        let done = match self.fd.run() {
            Ok(_) => Ok(()),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Ok(()),
            Err(e) => Err(e),
        };
        self.fd.set_kvm_immediate_exit(0);
        self.mmio_pending = false;
        done
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
            let exit = classify(&self.fd.run()?);
            self.note_mmio(exit);
            return Ok(exit);
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
        if let Ok(e) = exit {
            self.note_mmio(e);
        }
        exit
    }

    fn note_mmio(&mut self, exit: Exit) {
        if matches!(exit, Exit::Unbacked { .. }) {
            self.mmio_pending = true;
        }
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
