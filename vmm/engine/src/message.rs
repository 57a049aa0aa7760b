//! Ferry's message-passing mode, the baseline migration is measured
//! against. A domain with `ipc = "message"` has its own server threads (one
//! per stack, each a host thread running that domain's vCPUs); a call hands
//! the request and its validated argument list to one of them and the
//! caller's host thread sleeps until the reply. Same guests, same argument
//! lists, same copies — only who runs the callee differs.

use crate::fault::FaultReport;
use crate::migrate::arglist::ArgPlan;
use crate::migrate::{Chain, Step, ThreadResult, ThreadTime, MAX_DEPTH};
use crate::system::Core;
use crossbeam_channel::{Receiver, Sender};
use shared_abi::{ErrorCode, MAX_SCALARS};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Requests that may wait in a domain's inbox before callers block on it.
const INBOX_DEPTH: usize = 64;

/// The domains a migrating thread is already in on other host threads
/// (its callers, when it reached a server through message passing).
#[derive(Clone, Copy, Debug)]
pub struct Ancestors {
    domains: [u32; MAX_DEPTH],
    len: usize,
}

impl Default for Ancestors {
    fn default() -> Self {
        Self {
            domains: [0; MAX_DEPTH],
            len: 0,
        }
    }
}

impl Ancestors {
    /// `base` followed by `more`, truncated at [`MAX_DEPTH`].
    pub fn extend(base: &Ancestors, more: impl Iterator<Item = u32>) -> Self {
        let mut out = *base;
        for d in more {
            if let Some(slot) = out.domains.get_mut(out.len) {
                *slot = d;
                out.len += 1;
            }
        }
        out
    }

    /// The domains, outermost first.
    pub fn as_slice(&self) -> &[u32] {
        self.domains.get(..self.len).unwrap_or(&[])
    }
}

/// How a served call ended, as its caller learns it.
#[derive(Debug)]
pub enum Reply {
    /// The callee returned; `status` is the caller's status word.
    Returned {
        /// Status word (0 or `APP_ERROR_BASE + n`).
        status: u64,
        /// Results.
        results: [u64; 2],
        /// The server's time on the caller's behalf.
        time: ThreadTime,
    },
    /// Ferry refused it before the callee ran.
    Refused(ErrorCode),
    /// The callee (or a domain it called) faulted.
    Fault(FaultReport),
    /// The thread made the `Exit` hypercall while being served.
    Exited(u64),
}

/// Where a server puts its reply and the caller waits for it; one per
/// caller chain, reused for every message call it makes.
#[derive(Debug, Default)]
pub struct ReplySlot {
    reply: Mutex<Option<Reply>>,
    ready: Condvar,
}

impl ReplySlot {
    fn put(&self, r: Reply) {
        if let Ok(mut slot) = self.reply.lock() {
            *slot = Some(r);
            self.ready.notify_one();
        }
    }

    /// Sleep until the server replies.
    pub fn wait(&self) -> Reply {
        let Ok(mut slot) = self.reply.lock() else {
            return Reply::Refused(ErrorCode::NoStack);
        };
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = match self.ready.wait(slot) {
                Ok(s) => s,
                Err(_) => return Reply::Refused(ErrorCode::NoStack),
            };
        }
    }
}

/// One call handed to a server.
pub struct Request {
    /// The migrating thread's id (the callee sees the same identity).
    pub thread: u64,
    /// Caller domain and the slot it used.
    pub caller: u32,
    /// The caller's capability slot.
    pub slot: u32,
    /// Entry index in the callee.
    pub entry: u32,
    /// The validated argument list (caller ranges).
    pub plan: ArgPlan,
    /// Scalars.
    pub scalars: [u64; MAX_SCALARS],
    /// Domains the thread is in on other host threads.
    pub ancestors: Ancestors,
    /// Where to reply.
    pub reply: Arc<ReplySlot>,
}

enum Msg {
    Call(Box<Request>),
    Stop,
}

/// A message-mode domain's inbox and its servers' idle count.
#[derive(Debug)]
pub struct Inbox {
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    idle: AtomicU32,
    servers: u32,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Msg::Call(_) => "Call",
            Msg::Stop => "Stop",
        })
    }
}

impl Inbox {
    /// An inbox for `servers` server threads.
    pub fn new(servers: u32) -> Self {
        let (tx, rx) = crossbeam_channel::bounded(INBOX_DEPTH);
        Self {
            tx,
            rx,
            idle: AtomicU32::new(0),
            servers,
        }
    }

    /// Server threads that are waiting for a request right now.
    pub fn idle(&self) -> u32 {
        self.idle.load(Ordering::Acquire)
    }

    /// How many server threads it has.
    pub fn servers(&self) -> u32 {
        self.servers
    }

    /// Hand a request over (blocks while the inbox is full).
    pub fn send(&self, req: Request) -> Result<(), ErrorCode> {
        self.tx
            .send(Msg::Call(Box::new(req)))
            .map_err(|_| ErrorCode::DomainDead)
    }

    /// Ask every server to stop once it is idle.
    pub fn stop_all(&self) {
        for _ in 0..self.servers {
            let _ = self.tx.try_send(Msg::Stop);
        }
    }
}

/// The body of one server thread of domain `domain`.
pub fn serve(core: Arc<Core>, domain: u32) {
    let Some(inbox) = core.domain(domain).and_then(|d| d.inbox.as_ref()) else {
        return;
    };
    loop {
        inbox.idle.fetch_add(1, Ordering::AcqRel);
        let msg = inbox.rx.recv();
        inbox.idle.fetch_sub(1, Ordering::AcqRel);
        match msg {
            Ok(Msg::Call(req)) => {
                let reply = handle(&core, domain, &req);
                req.reply.put(reply);
            }
            Ok(Msg::Stop) | Err(_) => return,
        }
    }
}

fn handle(core: &Core, domain: u32, req: &Request) -> Reply {
    let mut chain = match Chain::start_served(core, domain, req) {
        Ok(c) => c,
        Err(code) => return Reply::Refused(code),
    };
    loop {
        if let Step::Done(result) = chain.step(core) {
            return match result {
                // A served chain's result already carries the caller's status word.
                ThreadResult::Returned { status, results } => Reply::Returned {
                    status,
                    results,
                    time: chain.time(),
                },
                ThreadResult::Faulted(report) => Reply::Fault(report),
                ThreadResult::Exited { code } => Reply::Exited(code),
                ThreadResult::NotStarted(_) => Reply::Refused(ErrorCode::NoStack),
            };
        }
    }
}
