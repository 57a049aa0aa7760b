//! What the migration engine needs from the running system, as a narrow
//! trait defined at the engine's own level (cloud-hypervisor's `VmOps` is
//! the model): the system implements it, so this layer never imports the
//! system, and a test can drive a chain with a context of its own.

use crate::domain::Domain;
use crate::ids::{DomainId, Slot, ThreadId};
use crate::manifest::Mapping;
use crate::observe::CallObserver;
use crate::thread::caps::Capability;
use crate::thread::counters::Counters;
use crate::thread::handoff::Handoff;
use crate::watch::Watchdog;
use crate::window::StackWindow;
use shared_abi::ErrorCode;

/// The running system, as a migrating thread sees it.
pub trait Engine: Sync {
    /// Domain `id`.
    fn domain(&self, id: DomainId) -> Option<&Domain>;

    /// Capability `slot` of `caller`, resolved at boot.
    fn capability(&self, caller: DomainId, slot: Slot) -> Option<Capability>;

    /// The engine's counters.
    fn counters(&self) -> &Counters;

    /// The installed observer, if any (the demo's referee).
    fn observer(&self) -> Option<&dyn CallObserver>;

    /// Whether new chains log their VMM work (for `ferry bench`).
    fn profiling(&self) -> bool;

    /// The CPU-budget watchdog chains register with (`None`: no budgets).
    fn watchdog(&self) -> Option<&Watchdog>;

    /// Start a thread in entry `entry` (unchecked) of `domain` with `arg`,
    /// on a host thread of its own.
    fn spawn(&self, domain: &Domain, entry: u64, arg: u64) -> Result<ThreadId, ErrorCode>;

    /// The stack window of `mapped` domains (`None`: the system has none).
    fn window(&self) -> Option<&StackWindow>;

    /// When a thread's window slot is mapped (the manifest's `[stacks]`).
    fn window_mapping(&self) -> Mapping;

    /// The `mapped` domains a thread in `domain` can reach through
    /// capabilities, `domain` itself included if it is `mapped`.
    fn mapped_reach(&self, domain: DomainId) -> &[DomainId];

    /// Hand a validated call to a server of message-mode domain `callee`;
    /// the answer arrives through `call.reply`. `held` counts the servers
    /// of `callee` this thread already occupies.
    fn forward(&self, callee: DomainId, call: Handoff, held: u32) -> Result<(), ErrorCode>;
}
