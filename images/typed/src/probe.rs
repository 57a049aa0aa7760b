//! The `Probe` interface written by hand (no macro): one method,
//! `probe_add(&self, value: &mut V, by: u64) -> u64`, which adds `by` to
//! `*value` and returns the sum. Version 1 has `V = u64`, version 2
//! `V = u32`: same interface and method names, different signatures, so
//! different method ids — a client of one and a server of the other must
//! be refused at boot.

use core::convert::Infallible;
use ferry_guest::interface::client::{desc_mut, finish, resolve};
use ferry_guest::interface::{
    reply, BindError, Incoming, InterfaceDecl, Limits, Malformed, MethodDecl, MethodId, Serve,
    Transport,
};
use ferry_guest::shared_abi::{ArgMode, CallRequest};
use ferry_guest::{Call, Vmm};

/// Version 1: `probe_add(inout u64, u64) -> u64`.
pub const PROBE_V1: InterfaceDecl = InterfaceDecl {
    name: "Probe",
    methods: &[MethodDecl {
        entry: "probe_add",
        id: MethodId::new()
            .str("Probe.probe_add(inout u64:")
            .size::<u64>()
            .str(",u64)->u64")
            .finish(),
    }],
};

/// Version 2: `probe_add(inout u32, u64) -> u64`.
pub const PROBE_V2: InterfaceDecl = InterfaceDecl {
    name: "Probe",
    methods: &[MethodDecl {
        entry: "probe_add",
        id: MethodId::new()
            .str("Probe.probe_add(inout u32:")
            .size::<u32>()
            .str(",u64)->u64")
            .finish(),
    }],
};

/// The version-1 server.
pub struct ProbeServer;

impl Serve for ProbeServer {
    fn interface(&self) -> &'static InterfaceDecl {
        &PROBE_V1
    }

    fn dispatch(&self, method: usize, inv: &mut Incoming<'_>) -> Result<[u64; 2], u32> {
        if method != 0 {
            return Err(Malformed.into());
        }
        inv.expect_objects(1)?;
        let by: u64 = inv.scalar(0)?;
        let value: &mut u64 = inv.output(0, ArgMode::InOut)?;
        *value = value.wrapping_add(by);
        reply::<u64, Infallible>(Ok(*value))
    }
}

/// Statuses of `drive`.
pub mod status {
    /// Binding `Probe` in `server` failed: not granted.
    pub const NOT_GRANTED: u32 = 1;
    /// Binding failed: the image does not declare `Probe` in `uses`.
    pub const NOT_DECLARED: u32 = 2;
    /// The typed call failed.
    pub const CALL_FAILED: u32 = 3;
    /// Binding a domain the manifest grants nothing in did not answer `NotGranted`.
    pub const BOUND_UNGRANTED: u32 = 4;
}

/// Entry `drive(scalar0 = start, scalar1 = by)`: bind `Probe` (as
/// declared in `decl`) in domain `server` by name, call `probe_add` with
/// `start` INOUT and `by`: `Ok([returned sum, value after the call])`.
pub fn drive(c: &mut Call, decl: &InterfaceDecl) -> Result<[u64; 2], u32> {
    if resolve::<1>(&Vmm, decl, "nobody") != Err(BindError::NotGranted) {
        return Err(status::BOUND_UNGRANTED);
    }
    let [slot] = resolve::<1>(&Vmm, decl, "server").map_err(|e| match e {
        BindError::NotGranted => status::NOT_GRANTED,
        BindError::NotDeclared => status::NOT_DECLARED,
    })?;
    let mut value = c.scalar(0);
    let mut req = CallRequest {
        slot,
        nargs: 1,
        ..CallRequest::default()
    };
    req.scalars[0] = c.scalar(1);
    req.args[0] = desc_mut(&mut value, ArgMode::InOut);
    // SAFETY: the one descriptor names `value`, a local borrowed by nothing
    // else until the call returns.
    let (st, regs) = unsafe { Vmm.call(&req, Limits::default()) };
    let sum = finish::<u64, Infallible>(st, regs).map_err(|_| status::CALL_FAILED)?;
    Ok([sum, value])
}
