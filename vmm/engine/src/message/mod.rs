//! Ferry's message-passing mode, the baseline migration is measured
//! against. A domain with `ipc = "message"` has its own server threads (one
//! per stack, each a host thread running that domain's vCPUs); a call hands
//! the validated request to one of them and the caller's host thread sleeps
//! until the reply. Same guests, same argument lists, same copies — only who
//! runs the callee differs. This layer owns the inboxes and the server
//! threads; what a server runs for each request is handed to it as a
//! function, so it never names the migration engine.

use crate::ids::DomainId;
use crate::manifest::StackPolicy;
use crate::thread::handoff::{Handoff, Reply};
use crossbeam_channel::{Receiver, SendTimeoutError, Sender};
use shared_abi::ErrorCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Requests that may wait in a domain's inbox before callers block on it.
const INBOX_DEPTH: usize = 64;

/// How long stopping waits for a full inbox to take the stop message, and
/// then for the servers to finish.
const STOP_WAIT: Duration = Duration::from_secs(2);

enum Msg {
    Call(Box<Handoff>),
    Stop,
}

/// A message-mode domain's inbox, its servers and their idle count.
struct Inbox {
    domain: DomainId,
    name: String,
    policy: StackPolicy,
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    idle: AtomicU32,
    /// Servers that actually started.
    servers: AtomicU32,
}

/// Everything a server thread runs for one request: the IPC layer above
/// passes it in, so this layer never names the migration engine.
pub type Handler = Box<dyn FnMut(&Handoff) -> Reply + Send>;

/// The send side: every message-mode domain's inbox. The running system
/// keeps it so calls can reach the servers; it holds no thread.
#[derive(Default)]
pub struct Inboxes {
    by_domain: Vec<Arc<Inbox>>,
}

impl Inboxes {
    /// Open an inbox for domain `domain` (called `name`), whose servers
    /// follow `policy` when all are busy.
    pub fn open(&mut self, domain: DomainId, name: &str, policy: StackPolicy) {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_DEPTH);
        self.by_domain.push(Arc::new(Inbox {
            domain,
            name: name.to_owned(),
            policy,
            tx,
            rx,
            idle: AtomicU32::new(0),
            servers: AtomicU32::new(0),
        }));
    }

    fn get(&self, domain: DomainId) -> Option<&Arc<Inbox>> {
        self.by_domain.iter().find(|i| i.domain == domain)
    }

    /// Hand `call` to a server of `domain`, whose reply goes to the
    /// caller's ticket (`call.reply`).
    /// `held` counts the servers this thread already occupies there (its
    /// suspended frames): if every server is busy and it holds them all,
    /// waiting would deadlock, so it gets `NoStack` — as under `fail`.
    /// No server at all (none could start) is `Internal`.
    pub fn send(&self, domain: DomainId, call: Handoff, held: u32) -> Result<(), ErrorCode> {
        let inbox = self.get(domain).ok_or(ErrorCode::Internal)?;
        let servers = inbox.servers.load(Ordering::Acquire);
        if servers == 0 {
            return Err(ErrorCode::Internal);
        }
        let busy = inbox.idle.load(Ordering::Acquire) == 0;
        if busy && (inbox.policy == StackPolicy::Fail || held >= servers) {
            return Err(ErrorCode::NoStack);
        }
        // A full inbox makes the caller wait, within its wait limit.
        let deadline = call.deadline;
        let msg = Msg::Call(Box::new(call));
        match deadline {
            None => inbox.tx.send(msg).map_err(|_| ErrorCode::DomainDead),
            Some(d) => inbox.tx.send_deadline(msg, d).map_err(|e| match e {
                SendTimeoutError::Timeout(_) => ErrorCode::Timeout,
                SendTimeoutError::Disconnected(_) => ErrorCode::DomainDead,
            }),
        }
    }
}

/// The server threads of every message-mode domain. Dropping it stops them
/// (a stop request each, then a bounded wait) and names any server still
/// inside its guest.
#[derive(Default)]
pub struct ServerThreads {
    inboxes: Vec<Arc<Inbox>>,
    threads: Vec<(Arc<Inbox>, u32, JoinHandle<()>)>,
}

impl ServerThreads {
    /// Start `count` servers on `domain`'s inbox, each running the handler
    /// `make_handler` builds for it. A server that cannot start is logged;
    /// calls are refused with `Internal` only if none could.
    pub fn start(
        &mut self,
        inboxes: &Inboxes,
        domain: DomainId,
        count: u32,
        mut make_handler: impl FnMut() -> Handler,
    ) {
        let Some(inbox) = inboxes.get(domain) else {
            log::error!("{domain} has no inbox; no server started");
            return;
        };
        for n in 0..count {
            let (me, handler) = (Arc::clone(inbox), make_handler());
            let spawned = std::thread::Builder::new()
                .name(format!("ferry-{}-server{n}", inbox.name))
                .spawn(move || serve(&me, handler));
            match spawned {
                Ok(h) => {
                    // Idle from the start: a request sent before the thread
                    // reaches its first `recv` waits in the inbox for it.
                    inbox.idle.fetch_add(1, Ordering::AcqRel);
                    inbox.servers.fetch_add(1, Ordering::AcqRel);
                    self.threads.push((Arc::clone(inbox), n, h));
                }
                Err(e) => log::error!("cannot start server {n} of `{}`: {e}", inbox.name),
            }
        }
        self.inboxes.push(Arc::clone(inbox));
    }
}

impl Drop for ServerThreads {
    fn drop(&mut self) {
        let deadline = Instant::now() + STOP_WAIT;
        for inbox in &self.inboxes {
            for _ in 0..inbox.servers.load(Ordering::Acquire) {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(SendTimeoutError::Timeout(_)) = inbox.tx.send_timeout(Msg::Stop, left) {
                    log::error!("servers of `{}` did not take the stop request", inbox.name);
                    break;
                }
            }
        }
        for (inbox, n, h) in self.threads.drain(..) {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
            if !h.is_finished() {
                log::error!(
                    "server {n} of `{}` is still inside its guest after {} s; left running until the process exits",
                    inbox.name,
                    STOP_WAIT.as_secs()
                );
            } else if h.join().is_err() {
                log::error!("server {n} of `{}` panicked", inbox.name);
            }
        }
    }
}

/// The body of one server thread. It is confined by seccomp first; a
/// server that cannot be runs no guest code and refuses every call with
/// `Internal`.
fn serve(inbox: &Inbox, handler: Handler) {
    let mut handle = match crate::sandbox::confine_current_thread() {
        Ok(_) => handler,
        Err(e) => {
            log::error!("a server of `{}` refuses every call: {e}", inbox.name);
            Box::new(|_: &Handoff| Reply::Refused(ErrorCode::Internal))
        }
    };
    loop {
        match inbox.rx.recv() {
            Ok(Msg::Call(job)) => {
                inbox.idle.fetch_sub(1, Ordering::AcqRel);
                let answer = handle(&job);
                // Idle again before the caller wakes: its next call must not
                // find this server busy.
                inbox.idle.fetch_add(1, Ordering::AcqRel);
                if !job.reply.put(answer) {
                    // The caller's wait limit passed: it has moved on, and
                    // the handler copied nothing into it (it counted this).
                    log::debug!(
                        "[{}] {}: late reply dropped (its caller stopped waiting)",
                        inbox.name,
                        job.thread
                    );
                }
            }
            Ok(Msg::Stop) | Err(_) => return,
        }
    }
}
