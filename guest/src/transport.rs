//! [`Vmm`]: how typed interface stubs reach other domains from a guest.

use crate::call::timed_call;
use crate::image::tables;
use ferry_interface::{InterfaceDecl, Limits, MethodDecl, Transport};
use shared_abi::CallRequest;

/// The guest's [`Transport`]: the `Call` hypercall (timed and sampled like
/// [`call`](crate::call)) and the capability table the VMM wrote at
/// `Hello`. Bind typed handles with it, e.g.
/// `KvClient::bind(ferry_guest::Vmm, "kv")`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmm;

impl Transport for Vmm {
    #[inline(always)]
    unsafe fn call(&self, req: &CallRequest, limits: Limits) -> (u64, [u64; 5]) {
        // SAFETY: forwarded to our caller (the trait's contract).
        unsafe { timed_call(req, limits) }
    }

    fn slot(&self, domain: &str, interface: &str, method: &MethodDecl) -> Option<u32> {
        tables()
            .caps
            .iter()
            .find(|c| {
                c.domain.as_str() == Some(domain)
                    && c.entry.as_str() == Some(method.entry)
                    && c.interface.as_str() == Some(interface)
                    && c.method_id == method.id
            })
            .map(|c| c.slot)
    }

    fn declared(&self, interface: &InterfaceDecl) -> bool {
        tables().uses.iter().any(|u| **u == *interface)
    }
}
