//! Restarts off the caller's path: one VMM-owned host thread per system
//! runs every domain reset, so the last frame out of a quarantined domain
//! (usually the faulting caller) gets its answer without waiting for the
//! guest's boot code. The thread is registered with the watchdog and each
//! reset runs under the domain's `restart_ms` CPU budget: a boot that
//! overruns it is kicked out of `KVM_RUN` and the domain is dead.

use crate::ids::DomainId;
use crate::watch::{join_within, Meter, Watchdog};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most time dropping a restarter waits for a reset in progress (each is
/// bounded by its domain's `restart_ms` and the watchdog's kick).
const STOP_WAIT: Duration = Duration::from_secs(5);

enum Job {
    Reset(DomainId),
    Stop,
}

/// Where a domain sends its resets.
#[derive(Clone, Debug)]
pub struct Jobs(Sender<Job>);

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Reset(d) => write!(f, "reset {d}"),
            Job::Stop => f.write_str("stop"),
        }
    }
}

impl Jobs {
    /// Queue a reset of `domain`; false if the restarter is gone (the
    /// caller then resets it itself).
    pub fn send(&self, domain: DomainId) -> bool {
        self.0.send(Job::Reset(domain)).is_ok()
    }
}

/// What the restarter runs for a domain: the system looks the domain up
/// and calls `Domain::restart` with the restarter's meter.
pub type ResetFn = Box<dyn Fn(DomainId, Option<&Meter>) + Send>;

/// The restarter thread.
pub struct Restarter {
    jobs: Sender<Job>,
    thread: Option<JoinHandle<()>>,
}

/// The restarter could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the restarter thread")]
pub struct RestarterError(#[source] pub std::io::Error);

impl Restarter {
    /// Start the thread; it registers with `dog` and runs `reset` for
    /// every job.
    pub fn start(dog: &Arc<Watchdog>, reset: ResetFn) -> Result<Self, RestarterError> {
        let (tx, rx): (Sender<Job>, Receiver<Job>) = crossbeam_channel::unbounded();
        let dog = Arc::clone(dog);
        let thread = std::thread::Builder::new()
            .name("ferry-restarter".into())
            .spawn(move || serve(&dog, &rx, &reset))
            .map_err(RestarterError)?;
        Ok(Self {
            jobs: tx,
            thread: Some(thread),
        })
    }

    /// A sender for domains.
    pub fn jobs(&self) -> Jobs {
        Jobs(self.jobs.clone())
    }

    /// Stop the thread once the job in progress (if any) ends, waiting at
    /// most [`STOP_WAIT`].
    pub fn stop(&mut self) {
        let _ = self.jobs.send(Job::Stop);
        if let Some(handle) = self.thread.take() {
            join_within(handle, STOP_WAIT, "the restarter thread");
        }
    }
}

impl Drop for Restarter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(dog: &Watchdog, rx: &Receiver<Job>, reset: &ResetFn) {
    let registration = match dog.register(0) {
        Ok(r) => Some(r),
        Err(e) => {
            log::error!("restarts run without a time limit: {e}");
            None
        }
    };
    let meter = registration.as_ref().map(|r| r.meter().as_ref());
    // A reset reruns the guest's boot code: the restarter is confined like
    // every thread that runs guest code. If it cannot be, it stops, and
    // each domain resets itself on its last (confined) leaving thread.
    if let Err(e) = crate::sandbox::confine_current_thread() {
        log::error!("the restarter stops; resets run on the callers' threads: {e}");
        return;
    }
    while let Ok(Job::Reset(domain)) = rx.recv() {
        reset(domain, meter);
        if let Some(m) = meter {
            m.pop_to(0);
            let _ = m.take_expiry();
        }
    }
}
