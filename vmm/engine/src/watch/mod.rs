//! The CPU-budget watchdog: one VMM-owned host thread per system that
//! reads the CPU clocks of the host threads running chains and kicks a
//! thread out of `KVM_RUN` when the frame it runs has used up its budget.
//!
//! Threads register a [`Meter`] (a [`Registration`] keeps it listed) and
//! publish their frames with atomic stores only. The watchdog ticks every
//! [`TICK`] while at least one meter is registered and sleeps otherwise;
//! each tick reads each listed thread's CPU clock (a system call made here,
//! never on the thread's hot path), notes when it first saw each frame, and
//! when the top frame's deadline has passed records an [`meter::Expiry`]
//! and kicks the thread ([`kick`]). A budget is therefore detected up to one
//! tick late (plus the kick's own latency, ~0.1 ms here), and a frame's CPU
//! time is counted from the first tick that saw it, so a frame may run up to
//! a tick more than its budget before it is even seen.

pub mod kick;
pub mod meter;

pub use meter::{Meter, MeterError};

use meter::{GRACE, UNLIMITED};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often the watchdog looks at the registered threads.
pub const TICK: Duration = Duration::from_millis(2);

/// Most time dropping a watchdog waits for its thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Why the watchdog could not start.
#[allow(
    missing_docs,
    reason = "each variant's message is its `#[error]` text, written once"
)]
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error(transparent)]
    Kick(#[from] &'static kick::KickError),
    #[error("cannot start the watchdog thread")]
    Thread(#[source] std::io::Error),
    #[error(transparent)]
    Meter(#[from] MeterError),
}

/// What the watchdog remembers of one registered thread's levels: the
/// frame id it saw at each level and that frame's deadline (CPU ns).
#[derive(Default)]
struct Seen {
    levels: Vec<(u64, u64)>,
}

struct Entry {
    key: u64,
    tag: u64,
    meter: Arc<Meter>,
    seen: Seen,
}

#[derive(Default)]
struct Registry {
    entries: Vec<Entry>,
    next_key: u64,
    stop: bool,
}

struct Shared {
    registry: Mutex<Registry>,
    wake: Condvar,
}

/// A handle on the watchdog: register threads with it; dropping the last
/// [`Watchdog`] that owns the thread stops it (bounded wait).
pub struct Watchdog {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

/// A thread's listing with the watchdog; dropping it unlists the thread
/// (before the thread can end, so the watchdog never signals a dead one).
pub struct Registration {
    shared: Arc<Shared>,
    key: u64,
    meter: Arc<Meter>,
}

impl Registration {
    /// The thread's meter.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }
}

/// Publications made by meters whose registration has ended (process-wide).
static PUBLISHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Frame publications (pushes and pops) of every meter unlisted so far:
/// the hot-path test checks that budgets were armed on every call.
pub fn publications() -> u64 {
    PUBLISHED.load(Ordering::Relaxed)
}

impl Drop for Registration {
    fn drop(&mut self) {
        PUBLISHED.fetch_add(self.meter.publications(), Ordering::Relaxed);
        if let Ok(mut r) = self.shared.registry.lock() {
            r.entries.retain(|e| e.key != self.key);
        }
    }
}

impl Watchdog {
    /// Install the kick handler and start the watchdog thread.
    pub fn start() -> Result<Self, WatchError> {
        kick::install()?;
        let shared = Arc::new(Shared {
            registry: Mutex::new(Registry::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("ferry-watchdog".into())
            .spawn(move || watch(&s))
            .map_err(WatchError::Thread)?;
        Ok(Self {
            shared,
            thread: Mutex::new(Some(handle)),
        })
    }

    /// List the calling host thread under `tag` (the system uses the
    /// migrating thread's id); one system call at most, the wake-up of a
    /// sleeping watchdog, and never per call.
    pub fn register(&self, tag: u64) -> Result<Registration, WatchError> {
        let meter = Arc::new(Meter::for_current_thread()?);
        let key = match self.shared.registry.lock() {
            Ok(mut r) => {
                r.next_key += 1;
                let key = r.next_key;
                let was_empty = r.entries.is_empty();
                r.entries.push(Entry {
                    key,
                    tag,
                    meter: Arc::clone(&meter),
                    seen: Seen::default(),
                });
                if was_empty {
                    self.shared.wake.notify_all();
                }
                key
            }
            // A poisoned registry: the thread runs unwatched rather than not at all.
            Err(_) => 0,
        };
        Ok(Registration {
            shared: Arc::clone(&self.shared),
            key,
            meter,
        })
    }

    /// The listed threads: each one's tag and the domains of its published
    /// frames, bottom first.
    pub fn listed(&self) -> Vec<(u64, Vec<u32>)> {
        self.shared
            .registry
            .lock()
            .map(|r| {
                r.entries
                    .iter()
                    .map(|e| (e.tag, e.meter.domains()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Cancel every registered thread but the VMM's own (tag 0, e.g. the
    /// restarter): each stops at its next exit.
    pub fn cancel_all(&self) {
        if let Ok(r) = self.shared.registry.lock() {
            for e in r.entries.iter().filter(|e| e.tag != 0) {
                e.meter.cancel();
                kick::kick(e.meter.thread);
            }
        }
    }

    /// Stop the watchdog thread and wait for it (at most [`STOP_WAIT`]).
    pub fn stop(&self) {
        if let Ok(mut r) = self.shared.registry.lock() {
            r.stop = true;
        }
        self.shared.wake.notify_all();
        let handle = self.thread.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            join_within(handle, STOP_WAIT, "the watchdog thread");
        }
    }
}

/// Join a VMM thread that was asked to stop, waiting at most `wait`; one
/// still busy then is left detached (and said so) rather than hang the
/// caller, typically a `Drop`.
pub fn join_within(handle: std::thread::JoinHandle<()>, wait: Duration, what: &str) {
    let start = Instant::now();
    while !handle.is_finished() && start.elapsed() < wait {
        std::thread::sleep(Duration::from_millis(1));
    }
    if !handle.is_finished() {
        log::warn!("{what} did not stop in time; left detached");
    } else if handle.join().is_err() {
        log::error!("{what} panicked");
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The watchdog thread's loop.
fn watch(shared: &Shared) {
    let Ok(mut reg) = shared.registry.lock() else {
        return;
    };
    loop {
        if reg.stop {
            return;
        }
        if reg.entries.is_empty() {
            reg = match shared.wake.wait(reg) {
                Ok(r) => r,
                Err(_) => return,
            };
            continue;
        }
        for e in &mut reg.entries {
            check(e);
        }
        reg = match shared.wake.wait_timeout(reg, TICK) {
            Ok((r, _)) => r,
            Err(_) => return,
        };
    }
}

/// One thread, one tick: refresh deadlines, expire and kick if the top
/// frame's deadline has passed.
fn check(e: &mut Entry) {
    let m = &e.meter;
    let depth = m.depth().min(meter::LEVELS);
    e.seen.levels.truncate(depth);
    if depth == 0 {
        return;
    }
    let mut now: Option<u64> = None;
    let mut clock = || -> Option<u64> {
        if now.is_none() {
            now = m.cpu_now();
        }
        now
    };
    for level in 0..depth {
        let Some((id, budget)) = m.level(level) else {
            // Torn by a concurrent call or return: look again next tick.
            e.seen.levels.truncate(level);
            return;
        };
        if e.seen
            .levels
            .get(level)
            .is_some_and(|(seen, _)| *seen == id)
        {
            continue;
        }
        e.seen.levels.truncate(level);
        let parent = e.seen.levels.last().map_or(UNLIMITED, |(_, d)| *d);
        let deadline = if budget == UNLIMITED {
            parent
        } else {
            let Some(t) = clock() else { return };
            let own = t.saturating_add(budget & !GRACE);
            if budget & GRACE != 0 {
                own
            } else {
                own.min(parent)
            }
        };
        e.seen.levels.push((id, deadline));
        m.publish_deadline(level, id, deadline);
    }
    let Some(&(top, deadline)) = e.seen.levels.last() else {
        return;
    };
    if deadline == UNLIMITED {
        return;
    }
    let Some(t) = clock() else { return };
    if t < deadline {
        return;
    }
    // The owner: the lowest level of the expired run at the top.
    let owner = e
        .seen
        .levels
        .iter()
        .rev()
        .take_while(|(_, d)| *d <= t)
        .last()
        .map_or(top, |(id, _)| *id);
    // Recorded before the kick: a kick that lands in VMM code is not lost,
    // the thread checks the record before running again. An expiry the
    // thread has not taken yet is kicked again each tick.
    m.expire(meter::Expiry { top, owner });
    kick::kick(m.thread);
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter::budget_word;

    /// A thread that spins with a 20 ms budget is told so by the watchdog
    /// (not a timing assertion: only that it happens within a generous bound).
    #[test]
    fn a_spinning_thread_over_budget_is_expired_and_kicked() {
        let dog = Watchdog::start().unwrap();
        let reg = dog.register(1).unwrap();
        let m = Arc::clone(reg.meter());
        m.push(0, 1, UNLIMITED, 0);
        m.push(1, 2, budget_word(Some(Duration::from_millis(20))), 0);
        let start = Instant::now();
        while !m.expired() {
            assert!(start.elapsed() < Duration::from_secs(20), "never expired");
            std::hint::spin_loop();
        }
        let e = m.take_expiry().unwrap();
        assert_eq!(e, meter::Expiry { top: 2, owner: 2 });
        m.pop_to(1);
        drop(reg);
        dog.stop();
    }

    /// A sleeping thread uses no CPU: its budget does not run out.
    #[test]
    fn a_sleeping_thread_is_not_expired() {
        let dog = Watchdog::start().unwrap();
        let reg = dog.register(1).unwrap();
        let m = Arc::clone(reg.meter());
        m.push(0, 1, budget_word(Some(Duration::from_millis(5))), 0);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!m.expired());
    }
}
