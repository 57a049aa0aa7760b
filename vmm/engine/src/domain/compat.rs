//! What the system decides once every domain has said `Hello` and before
//! any runs its init: whether each client and the servers it holds
//! capabilities to were built from the same interface definitions, and
//! each domain's capability table as its guest receives it. Pure functions
//! of the decoded tables and the manifest, so they are tested without VMs.

use super::EntryInfo;
use crate::manifest::CapabilitySpec;
use shared_abi::{CapDecl, Name, ENTRY_NAME_MAX};

/// One domain as the check sees it: its names, the tables its guest
/// declared at `Hello`, and the manifest's capabilities (slot order).
#[derive(Clone, Copy, Debug)]
pub struct Tables<'a> {
    /// The domain's name.
    pub name: &'a str,
    /// Its image, as the manifest named it.
    pub image: &'a str,
    /// Its entry table.
    pub entries: &'a [EntryInfo],
    /// The interface methods it declared it calls.
    pub imports: &'a [EntryInfo],
    /// Its capabilities; `domain` indexes the slice of [`Tables`].
    pub caps: &'a [CapabilitySpec],
}

/// A client imports a method with another id than the server it was
/// granted serves it with: both were built from different definitions of
/// the interface, and calls would exchange misread bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "client domain `{client}` (image {client_image}) imports {interface}.{entry} with method id {imported:#018x} \
     but server domain `{server}` (image {server_image}) serves it with {served:#018x}: \
     they were built from different definitions of interface {interface}"
)]
pub struct Incompatible {
    /// The calling domain.
    pub client: String,
    /// Its image.
    pub client_image: String,
    /// The called domain.
    pub server: String,
    /// Its image.
    pub server_image: String,
    /// The interface.
    pub interface: String,
    /// The entry (method) name.
    pub entry: String,
    /// The id the client was built with.
    pub imported: u64,
    /// The id the server was built with.
    pub served: u64,
}

/// Check every capability of every domain: when the server's entry belongs
/// to an interface and the client imports that interface's method of the
/// same name, both ids must be equal. Raw callers (no import) and raw
/// entries are not checked; a method the server lacks was never granted
/// (the manifest check refuses it), so adding a method stays compatible.
pub fn check(domains: &[Tables<'_>]) -> Result<(), Box<Incompatible>> {
    for client in domains {
        for cap in client.caps {
            let Some(server) = domains.get(cap.domain) else {
                continue;
            };
            let Some(served) = server.entries.iter().find(|e| e.name == cap.entry) else {
                continue;
            };
            if served.is_raw() {
                continue;
            }
            let mismatch = client.imports.iter().find(|i| {
                i.interface == served.interface
                    && i.name == served.name
                    && i.method_id != served.method_id
            });
            if let Some(import) = mismatch {
                return Err(Box::new(Incompatible {
                    client: client.name.to_owned(),
                    client_image: client.image.to_owned(),
                    server: server.name.to_owned(),
                    server_image: server.image.to_owned(),
                    interface: served.interface.clone(),
                    entry: served.name.clone(),
                    imported: import.method_id,
                    served: served.method_id,
                }));
            }
        }
    }
    Ok(())
}

/// Domain `me`'s capability table, slot order: for each capability, the
/// server's name, the entry, and the entry's interface and method id as
/// the server declared them (empty and `RAW_METHOD` for a raw entry, or
/// one the server lacks).
pub fn cap_decls(domains: &[Tables<'_>], me: usize) -> Vec<CapDecl> {
    let Some(client) = domains.get(me) else {
        return Vec::new();
    };
    (0u32..)
        .zip(client.caps)
        .map(|(slot, cap)| {
            let server = domains.get(cap.domain);
            let served = server.and_then(|s| s.entries.iter().find(|e| e.name == cap.entry));
            CapDecl {
                domain: wire_name(server.map_or("", |s| s.name)),
                entry: wire_name(&cap.entry),
                interface: wire_name(served.map_or("", |e| e.interface.as_str())),
                method_id: served.map_or(shared_abi::RAW_METHOD, |e| e.method_id),
                slot,
                reserved: 0,
            }
        })
        .collect()
}

/// `s` as a wire [`Name`]. Every name here was checked to fit (the
/// manifest's domain and entry names, the guests' interface names); a
/// longer one would be cut at a character boundary rather than panic.
fn wire_name(s: &str) -> Name {
    let mut n = s.len().min(ENTRY_NAME_MAX);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    let mut name = Name::EMPTY;
    for (to, from) in name.name.iter_mut().zip(s.bytes().take(n)) {
        *to = from;
    }
    name.len = u32::try_from(n).unwrap_or(0);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn method(name: &str, interface: &str, id: u64) -> EntryInfo {
        EntryInfo {
            name: name.to_owned(),
            interface: interface.to_owned(),
            method_id: id,
        }
    }

    fn cap(domain: usize, entry: &str) -> CapabilitySpec {
        CapabilitySpec {
            domain,
            entry: entry.to_owned(),
        }
    }

    struct Fixture {
        server: Vec<EntryInfo>,
        imports: Vec<EntryInfo>,
        caps: Vec<CapabilitySpec>,
    }

    impl Fixture {
        /// `kv` serves Kv.get (id 7), Kv.put (id 8) and a raw `dump`;
        /// `client` holds `kv.get`, `kv.put`, `kv.dump`.
        fn new(imports: Vec<EntryInfo>) -> Self {
            Self {
                server: vec![
                    method("get", "Kv", 7),
                    method("put", "Kv", 8),
                    EntryInfo::raw("dump"),
                ],
                imports,
                caps: vec![cap(1, "get"), cap(1, "put"), cap(1, "dump")],
            }
        }

        fn tables(&self) -> [Tables<'_>; 2] {
            [
                Tables {
                    name: "client",
                    image: "client",
                    entries: &[],
                    imports: &self.imports,
                    caps: &self.caps,
                },
                Tables {
                    name: "kv",
                    image: "kv",
                    entries: &self.server,
                    imports: &[],
                    caps: &[],
                },
            ]
        }
    }

    #[test]
    fn same_ids_pass() {
        let f = Fixture::new(vec![method("get", "Kv", 7), method("put", "Kv", 8)]);
        assert_eq!(check(&f.tables()), Ok(()));
    }

    #[test]
    fn a_different_id_is_refused_naming_both_sides() {
        let f = Fixture::new(vec![method("get", "Kv", 7), method("put", "Kv", 9)]);
        let err = check(&f.tables()).unwrap_err();
        assert_eq!((err.imported, err.served), (9, 8));
        assert_eq!(
            err.to_string(),
            "client domain `client` (image client) imports Kv.put with method id 0x0000000000000009 \
             but server domain `kv` (image kv) serves it with 0x0000000000000008: \
             they were built from different definitions of interface Kv"
        );
    }

    #[test]
    fn raw_callers_and_raw_entries_are_not_checked() {
        // No imports at all: a raw caller.
        assert_eq!(check(&Fixture::new(Vec::new()).tables()), Ok(()));
        // An import of another interface's method of the same name.
        let f = Fixture::new(vec![method("get", "Other", 1), method("dump", "Dbg", 5)]);
        assert_eq!(check(&f.tables()), Ok(()));
    }

    #[test]
    fn a_method_the_server_lacks_is_compatible() {
        // The client's definition has `scan`, the server's does not; the
        // manifest cannot grant it, so only the shared methods count.
        let f = Fixture::new(vec![method("get", "Kv", 7), method("scan", "Kv", 3)]);
        assert_eq!(check(&f.tables()), Ok(()));
        let mut f = f;
        f.caps.push(cap(1, "scan"));
        assert_eq!(check(&f.tables()), Ok(()));
    }

    #[test]
    fn cap_decls_carry_the_servers_interface_and_id_in_slot_order() {
        let f = Fixture::new(Vec::new());
        let decls = cap_decls(&f.tables(), 0);
        assert_eq!(decls.len(), 3);
        assert_eq!(decls[1].domain.as_str(), Some("kv"));
        assert_eq!(decls[1].entry.as_str(), Some("put"));
        assert_eq!(decls[1].interface.as_str(), Some("Kv"));
        assert_eq!((decls[1].method_id, decls[1].slot), (8, 1));
        assert_eq!(decls[2].interface.as_str(), Some(""));
        assert_eq!((decls[2].method_id, decls[2].slot), (0, 2));
        assert!(cap_decls(&f.tables(), 1).is_empty());
        assert!(cap_decls(&f.tables(), 5).is_empty());
    }

    #[test]
    fn wire_names_never_panic() {
        assert_eq!(wire_name("kv").as_str(), Some("kv"));
        let long = "é".repeat(20);
        let n = wire_name(&long);
        assert_eq!(n.len, 32);
        assert_eq!(n.as_str(), Some("é".repeat(16).as_str()));
    }
}
