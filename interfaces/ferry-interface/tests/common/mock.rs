//! A transport that plays the VMM and the server domains on the host, so
//! generated stubs and dispatchers meet the way they do in guests: the
//! request's descriptors are validated and each object copied into a fresh
//! 16-byte aligned buffer (IN and INOUT copied in, OUT zero-filled), the
//! server dispatches an `Invocation` naming those copies, and on success
//! OUT and INOUT objects are copied back; an error status becomes
//! `APP_ERROR_BASE + status` with nothing copied.

use ferry_interface::__private::{ArgDesc, ArgMode, CallRequest, ErrorCode, MAX_ARGS};
use ferry_interface::{Incoming, InterfaceDecl, Limits, MethodDecl, Serve, Transport};
use shared_abi::{CallStatus, Invocation};
use std::cell::{Cell, RefCell};

/// Give a value the `'static` life a server needs (tests only).
pub fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// One capability of the client: what the VMM writes as a `CapDecl`.
#[derive(Clone, Debug)]
struct Cap {
    domain: &'static str,
    entry: &'static str,
    interface: &'static str,
    method_id: u64,
}

/// A server domain: its entry table is, for each served interface, its
/// methods in order.
struct Domain {
    name: &'static str,
    serves: Vec<&'static dyn Serve>,
}

impl Domain {
    /// The served interface and method index of the entry named `entry`.
    fn entry(&self, entry: &str) -> Option<(&'static dyn Serve, usize, &'static MethodDecl)> {
        self.serves.iter().find_map(|s| {
            let i = s
                .interface()
                .methods
                .iter()
                .position(|m| m.entry == entry)?;
            Some((*s, i, &s.interface().methods[i]))
        })
    }
}

/// The mock VMM, seen from one client domain.
#[derive(Default)]
pub struct Mock {
    domains: Vec<Domain>,
    caps: Vec<Cap>,
    uses: Vec<&'static str>,
    /// How many `call`s reached the transport.
    pub calls: Cell<usize>,
    /// The last request and limits the transport saw.
    pub last: RefCell<Option<(CallRequest, Limits)>>,
    /// An answer to give instead of running the server (Ferry failures).
    pub forced: Cell<Option<(u64, [u64; 5])>>,
}

impl Mock {
    /// A domain `name` serving `serves` (its entry table in that order).
    pub fn serve(mut self, name: &'static str, serves: &[&'static dyn Serve]) -> Self {
        self.domains.push(Domain {
            name,
            serves: serves.to_vec(),
        });
        self
    }

    /// The manifest grants the client entry `entry` of domain `domain`: the
    /// capability carries that entry's interface and method id as the
    /// server declared them.
    pub fn grant(mut self, domain: &'static str, entry: &'static str) -> Self {
        let d = self
            .domains
            .iter()
            .find(|d| d.name == domain)
            .expect("grant names a served domain");
        let (s, _, m) = d.entry(entry).expect("grant names a served entry");
        self.caps.push(Cap {
            domain,
            entry,
            interface: s.interface().name,
            method_id: m.id,
        });
        self
    }

    /// Grant every entry of `domain`.
    pub fn grant_all(mut self, domain: &'static str) -> Self {
        let entries: Vec<&'static str> = self
            .domains
            .iter()
            .filter(|d| d.name == domain)
            .flat_map(|d| d.serves.iter().flat_map(|s| s.interface().methods))
            .map(|m| m.entry)
            .collect();
        for e in entries {
            self = self.grant(domain, e);
        }
        self
    }

    /// The client image declares it calls `decl`.
    pub fn uses(mut self, decl: &InterfaceDecl) -> Self {
        self.uses.push(decl.name);
        self
    }

    /// Answer the next call with `status` and `regs` without running the
    /// server.
    pub fn force(&self, status: u64, regs: [u64; 5]) {
        self.forced.set(Some((status, regs)));
    }

    fn status(e: ErrorCode) -> (u64, [u64; 5]) {
        (CallStatus::Ferry(e).to_u64(), [0; 5])
    }
}

/// A copy of one object in callee memory, 16-byte aligned.
struct Copy {
    buf: Vec<u128>,
    len: usize,
    mode: ArgMode,
    caller: u64,
}

impl Transport for &Mock {
    unsafe fn call(&self, req: &CallRequest, limits: Limits) -> (u64, [u64; 5]) {
        self.calls.set(self.calls.get() + 1);
        *self.last.borrow_mut() = Some((*req, limits));
        if let Some(a) = self.forced.take() {
            return a;
        }
        let Some(cap) = usize::try_from(req.slot)
            .ok()
            .and_then(|s| self.caps.get(s))
        else {
            return Mock::status(ErrorCode::BadSlot);
        };
        let Some((server, method, _)) = self
            .domains
            .iter()
            .find(|d| d.name == cap.domain)
            .and_then(|d| d.entry(cap.entry))
        else {
            return Mock::status(ErrorCode::NoSuchEntry);
        };
        let Ok(nargs) = usize::try_from(req.nargs) else {
            return Mock::status(ErrorCode::TooManyArgs);
        };
        if nargs > MAX_ARGS {
            return Mock::status(ErrorCode::TooManyArgs);
        }
        let mut copies = Vec::new();
        for d in &req.args[..nargs] {
            let Some(mode) = ArgMode::from_u32(d.mode) else {
                return Mock::status(ErrorCode::BadMode);
            };
            if d.flags != 0 {
                return Mock::status(ErrorCode::BadMode);
            }
            let Ok(len) = usize::try_from(d.len) else {
                return Mock::status(ErrorCode::Overflow);
            };
            let mut buf = vec![0u128; len.div_ceil(16)];
            if mode.copies_in() && len > 0 {
                // SAFETY: the transport's contract: the descriptor names
                // `len` readable bytes the caller lends for the call; `buf`
                // holds at least `len` bytes.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        d.addr as *const u8,
                        buf.as_mut_ptr().cast::<u8>(),
                        len,
                    );
                }
            }
            copies.push(Copy {
                buf,
                len,
                mode,
                caller: d.addr,
            });
        }
        let mut inv = Invocation {
            caller_domain: 7,
            entry: 0,
            thread_id: 1,
            depth: 1,
            nargs: req.nargs,
            scalars: req.scalars,
            args: [ArgDesc::default(); MAX_ARGS],
        };
        for (a, c) in inv.args.iter_mut().zip(copies.iter_mut()) {
            *a = ArgDesc {
                addr: c.buf.as_mut_ptr() as u64,
                len: c.len as u64,
                mode: c.mode as u32,
                flags: 0,
            };
        }
        // SAFETY: every descriptor names its own live buffer in `copies`,
        // disjoint from the others and from `inv`, used by nothing else.
        let mut inc = unsafe { Incoming::new(&inv) };
        match server.dispatch(method, &mut inc) {
            Ok(w) => {
                for c in copies.iter().filter(|c| c.mode.copies_out() && c.len > 0) {
                    // SAFETY: the transport's contract: an OUT/INOUT
                    // descriptor names `len` writable bytes of the caller.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            c.buf.as_ptr().cast::<u8>(),
                            c.caller as *mut u8,
                            c.len,
                        );
                    }
                }
                (0, [w[0], w[1], 0, 0, 0])
            }
            Err(code) => (CallStatus::App(code).to_u64(), [0; 5]),
        }
    }

    fn slot(&self, domain: &str, interface: &str, method: &MethodDecl) -> Option<u32> {
        let i = self.caps.iter().position(|c| {
            c.domain == domain
                && c.entry == method.entry
                && c.interface == interface
                && c.method_id == method.id
        })?;
        u32::try_from(i).ok()
    }

    fn declared(&self, interface: &InterfaceDecl) -> bool {
        self.uses.contains(&interface.name)
    }
}
