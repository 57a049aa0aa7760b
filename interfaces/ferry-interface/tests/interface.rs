//! Generated client and server meeting through a mock VMM: round trips of
//! every kind of parameter and result, application errors kept apart from
//! Ferry's failures, binding by name.

mod common;

use common::kv::*;
use common::mock::{leak, Mock};
use ferry_interface::__private::{ArgMode, ErrorCode};
use ferry_interface::{BindError, Error, Failure, Limits, Serve, NO_SLOT};
use shared_abi::{runtime_status, CallStatus};

/// A domain `kv` serving `Kv` then `Math`, everything granted, `Kv` and
/// `Math` declared.
fn world() -> (&'static KvImpl, Mock) {
    let kv = leak(KvImpl::default());
    let mock = Mock::default()
        .serve(
            "kv",
            &[leak(KvServer(kv)), leak(MathServer(leak(MathImpl)))],
        )
        .grant_all("kv")
        .uses(&KV_INTERFACE)
        .uses(&MATH_INTERFACE);
    (kv, mock)
}

fn app(code: u32) -> u64 {
    CallStatus::App(code).to_u64()
}

#[test]
fn description_lists_methods_in_order_with_prefixed_entries() {
    assert_eq!(KV_INTERFACE.name, "Kv");
    let entries: Vec<&str> = KV_INTERFACE.methods.iter().map(|m| m.entry).collect();
    assert_eq!(
        entries,
        ["get", "fill", "put", "stat", "bump", "sum", "scalars", "more", "code", "last"]
    );
    assert_eq!(MATH_INTERFACE.name, "Math");
    let entries: Vec<&str> = MATH_INTERFACE.methods.iter().map(|m| m.entry).collect();
    assert_eq!(entries, ["m_add", "m_div", "m_noop"]);
    let e = MATH_INTERFACE.entry_decl(1).unwrap();
    assert_eq!(e.name.as_str(), Some("m_div"));
    assert_eq!(e.interface.as_str(), Some("Math"));
    assert_eq!(e.method_id, MATH_INTERFACE.methods[1].id);
    assert!(MATH_INTERFACE.entry_decl(3).is_none());
    let s = KvServer(leak(KvImpl::default()));
    assert_eq!(s.interface(), &KV_INTERFACE);
}

#[test]
fn byte_slices_round_trip_and_inout_is_copied_back_only_on_success() {
    let (kv, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    assert_eq!(c.put(b"key", b"hello", 0), Ok(()));
    let mut v = [0xAAu8; 8];
    assert_eq!(c.get(b"key", &mut v), Ok(5));
    assert_eq!(&v, b"hello\xAA\xAA\xAA");
    // An application error: nothing is copied back.
    let mut v = [0xAAu8; 8];
    assert_eq!(c.get(b"nope", &mut v), Err(Error::App(KvError::NotFound)));
    assert_eq!(v, [0xAA; 8]);
    let mut small = [0u8; 2];
    assert_eq!(
        c.get(b"key", &mut small),
        Err(Error::App(KvError::TooLarge))
    );
    assert_eq!(
        c.put(b"key", b"x", 1),
        Err(Error::App(KvError::TooLarge)),
        "scalar reached the server"
    );
    assert_eq!(kv.called(), 5);
    // Empty slices travel too.
    assert_eq!(c.put(b"", b"", 0), Ok(()));
    assert_eq!(c.get(b"", &mut []), Ok(0));
}

#[test]
fn out_objects_arrive_zeroed_and_inout_objects_with_the_callers_bytes() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    let mut v = [0xFFu8; 300];
    assert_eq!(c.fill(&mut v), Ok(0), "the server saw zeros");
    assert_eq!(v[0], 1);
    assert_eq!(v[299], u8::try_from(299 % 251).unwrap() + 1);
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(req.nargs, 1);
    assert_eq!(req.args[0].mode, ArgMode::Out as u32);
    assert_eq!(req.args[0].len, 300);
    assert_eq!(req.args[0].addr, v.as_ptr() as u64);
}

#[test]
fn plain_structs_travel_as_themselves() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    let q = Query {
        key: 21,
        flags: 3,
        pad: 0,
    };
    let mut s = Stats {
        hits: 9,
        misses: 9,
        bytes: 9,
    };
    assert_eq!(c.stat(&q, &mut s), Ok((21, 3)));
    assert_eq!(
        s,
        Stats {
            hits: 42,
            misses: 3,
            bytes: 42
        }
    );
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(
        (req.args[0].mode, req.args[0].len),
        (ArgMode::In as u32, 16)
    );
    assert_eq!(
        (req.args[1].mode, req.args[1].len),
        (ArgMode::Out as u32, 24)
    );
    let mut s2 = s;
    assert_eq!(
        c.stat(&Query::default(), &mut s2),
        Err(Error::App(KvError::NotFound))
    );
    assert_eq!(s2, s, "no copy-back on an application error");
    assert_eq!(c.bump(&mut s), Ok(()));
    assert_eq!(s.hits, 43, "INOUT struct copied in and back");
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(req.args[0].mode, ArgMode::InOut as u32);
}

#[test]
fn slices_of_u32() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    let xs: Vec<u32> = (1..=1000).collect();
    assert_eq!(c.sum(&xs), Ok(500_500));
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(req.args[0].len, 4000, "length in bytes");
    assert_eq!(c.sum(&[]), Ok(0));
}

#[test]
fn scalars_of_every_kind_round_trip() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    assert_eq!(
        c.scalars(255, 65535, u32::MAX, 1, -128, true),
        Ok((255 + 65535 + i64::from(u32::MAX) - 128 - 1, false))
    );
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(req.nargs, 0);
    assert_eq!(
        req.scalars,
        [
            255,
            65535,
            u64::from(u32::MAX),
            1,
            (-128i64).cast_unsigned(),
            1
        ],
        "scalars in order, signed ones sign-extended"
    );
    assert_eq!(
        c.scalars(0, 0, 0, 0, 0, false),
        Err(Error::App(KvError::NotFound))
    );
    assert_eq!(
        c.more(-1, -2, -3, usize::MAX, -4),
        Ok(((-10i64).cast_unsigned(), u64::MAX))
    );
    let (req, _) = mock.last.borrow().unwrap();
    assert_eq!(req.scalars[3], u64::MAX);
    assert_eq!(req.scalars[5], 0, "unused scalars are zero");
}

#[test]
fn error_codes_and_runtime_statuses() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    assert_eq!(c.code(5), Err(Error::App(5)));
    assert_eq!(c.last(), Err(Error::App(KvError::Last)));
    // The server answered `Err(0)`: the runtime turns it into BAD_ERROR,
    // which is no application error.
    assert_eq!(
        c.code(0),
        Err(Error::Ferry(Failure::BadReply {
            status: app(runtime_status::BAD_ERROR),
            results: [0, 0]
        }))
    );
}

#[test]
fn a_second_interface_with_a_prefix_in_the_same_domain() {
    let (_, mock) = world();
    let m = MathClient::bind(&mock, "kv").unwrap();
    assert_eq!(m.add(2, 3), Ok(5));
    assert_eq!(m.div(7, 2), Ok(3));
    assert_eq!(m.div(7, 0), Err(Error::App(MathError::DivideByZero)));
    assert_eq!(m.noop(), Ok(()));
}

#[test]
fn ferry_failures_never_become_application_errors() {
    let (kv, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    mock.force(ErrorCode::Fault as u64, [14, 0x1000, 2, 0xdead, 0]);
    assert_eq!(
        c.put(b"k", b"v", 0),
        Err(Error::Ferry(Failure::Fault {
            vector: 14,
            rip: 0x1000,
            error_code: 2,
            cr2: 0xdead
        }))
    );
    for e in [
        ErrorCode::Timeout,
        ErrorCode::Restarting,
        ErrorCode::DomainDead,
        ErrorCode::CalleeExited,
        ErrorCode::NoStack,
    ] {
        mock.force(e as u64, [0; 5]);
        assert_eq!(c.put(b"k", b"v", 0), Err(Error::Ferry(Failure::Call(e))));
    }
    // Codes that share the number of an ErrorCode as application codes do
    // reach the caller as the application's.
    mock.force(app(1), [0; 5]);
    assert_eq!(c.put(b"k", b"v", 0), Err(Error::App(KvError::NotFound)));
    mock.force(app(runtime_status::MALFORMED), [0; 5]);
    assert_eq!(c.put(b"k", b"v", 0), Err(Error::Ferry(Failure::Malformed)));
    mock.force(app(runtime_status::UNKNOWN_ENTRY), [0; 5]);
    assert_eq!(
        c.put(b"k", b"v", 0),
        Err(Error::Ferry(Failure::UnknownEntry))
    );
    mock.force(app(3), [0; 5]);
    assert!(
        matches!(
            c.put(b"k", b"v", 0),
            Err(Error::Ferry(Failure::BadReply { .. }))
        ),
        "a code KvError does not define"
    );
    // A success with results the type cannot hold.
    mock.force(0, [256, 0, 0, 0, 0]);
    assert_eq!(
        c.last(),
        Err(Error::Ferry(Failure::BadReply {
            status: 0,
            results: [256, 0]
        }))
    );
    assert_eq!(kv.called(), 0, "forced answers never reached the server");
}

#[test]
fn limits_reach_the_transport() {
    let (_, mock) = world();
    let c = KvClient::bind(&mock, "kv").unwrap();
    c.sum(&[1]).unwrap();
    assert_eq!(mock.last.borrow().unwrap().1, Limits::default());
    let l = Limits {
        budget_us: 10,
        wait_us: 20,
    };
    let c = c.with_limits(l);
    c.sum(&[1]).unwrap();
    assert_eq!(mock.last.borrow().unwrap().1, l);
}

#[test]
fn an_ungranted_method_answers_bad_slot_without_a_call() {
    let kv = leak(KvImpl::default());
    let mock = Mock::default()
        .serve("kv", &[leak(KvServer(kv))])
        .grant("kv", "put")
        .grant("kv", "get")
        .uses(&KV_INTERFACE);
    let c = KvClient::bind(&mock, "kv").expect("partly granted binds");
    assert_eq!(c.put(b"k", b"v", 0), Ok(()));
    let mut v = [0u8; 1];
    assert_eq!(c.get(b"k", &mut v), Ok(1));
    assert_eq!(mock.calls.get(), 2);
    assert_eq!(
        c.sum(&[1, 2]),
        Err(Error::Ferry(Failure::Call(ErrorCode::BadSlot)))
    );
    assert_eq!(
        c.fill(&mut v),
        Err(Error::Ferry(Failure::Call(ErrorCode::BadSlot)))
    );
    assert_eq!(mock.calls.get(), 2, "no hypercall for an ungranted method");
    assert_eq!(kv.called(), 2);
    // The slots are the capability indices the transport resolved.
    assert_eq!(mock.last.borrow().unwrap().0.slot, 1);
    assert_ne!(NO_SLOT, 1);
}

#[test]
fn binding_needs_a_grant_and_a_declaration() {
    let serve = |m: Mock| m.serve("kv", &[leak(KvServer(leak(KvImpl::default())))]);
    let none = serve(Mock::default()).uses(&KV_INTERFACE);
    assert_eq!(
        KvClient::bind(&none, "kv").err(),
        Some(BindError::NotGranted)
    );
    let granted = serve(Mock::default()).grant_all("kv").uses(&KV_INTERFACE);
    assert_eq!(
        KvClient::bind(&granted, "other").err(),
        Some(BindError::NotGranted),
        "no such domain"
    );
    assert!(KvClient::bind(&granted, "kv").is_ok());
    assert_eq!(
        MathClient::bind(&granted, "kv").err(),
        Some(BindError::NotDeclared),
        "Math is not in the image's uses"
    );
    let undeclared = serve(Mock::default()).grant_all("kv");
    assert_eq!(
        KvClient::bind(&undeclared, "kv").err(),
        Some(BindError::NotDeclared)
    );
}

/// A server built from another definition of `Kv` (its `get` takes a
/// `u64` more): the capability carries that server's id, so the client's
/// `get` does not bind, while the unchanged `put` does.
mod other {
    use super::common::kv::KvError;

    #[ferry_interface::interface]
    pub trait Kv {
        fn get(&self, key: &[u8], value: &mut [u8], extra: u64) -> Result<usize, KvError>;
        fn put(&self, key: &[u8], value: &[u8], flags: u32) -> Result<(), KvError>;
    }

    pub struct Impl;
    impl Kv for Impl {
        fn get(&self, _: &[u8], _: &mut [u8], _: u64) -> Result<usize, KvError> {
            Ok(0)
        }
        fn put(&self, _: &[u8], _: &[u8], _: u32) -> Result<(), KvError> {
            Ok(())
        }
    }
}

#[test]
fn a_method_of_another_definition_does_not_bind() {
    let mock = Mock::default()
        .serve("kv", &[leak(other::KvServer(leak(other::Impl)))])
        .grant_all("kv")
        .uses(&KV_INTERFACE);
    assert_ne!(
        KV_INTERFACE.methods[0].id,
        other::KV_INTERFACE.methods[0].id
    );
    assert_eq!(
        KV_INTERFACE.methods[2].id,
        other::KV_INTERFACE.methods[1].id
    );
    let c = KvClient::bind(&mock, "kv").unwrap();
    assert_eq!(c.put(b"k", b"v", 0), Ok(()));
    assert_eq!(
        c.get(b"k", &mut [0; 4]),
        Err(Error::Ferry(Failure::Call(ErrorCode::BadSlot)))
    );
}

/// User names that match the generated code's: types `T` and `S`, a trait
/// `E`, parameters named like the client's fields.
mod clashing_names {
    use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

    #[repr(C)]
    #[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
    pub struct T {
        pub a: u32,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, ferry_interface::AppError)]
    pub enum S {
        Bad = 3,
    }

    #[ferry_interface::interface]
    pub trait E {
        fn f(&self, t: &T, transport: u32, slots: &mut [T], limits: u8) -> Result<u32, S>;
    }

    pub struct Impl;
    impl E for Impl {
        fn f(&self, t: &T, transport: u32, slots: &mut [T], limits: u8) -> Result<u32, S> {
            if limits == 0 {
                return Err(S::Bad);
            }
            for s in slots.iter_mut() {
                s.a += t.a;
            }
            Ok(transport + u32::from(limits))
        }
    }
}

#[test]
fn user_names_do_not_clash_with_generated_ones() {
    use clashing_names::*;
    let mock = Mock::default()
        .serve("e", &[leak(EServer(leak(Impl)))])
        .grant_all("e")
        .uses(&E_INTERFACE);
    let c = EClient::bind(&mock, "e").unwrap();
    let mut v = [T { a: 1 }, T { a: 2 }];
    assert_eq!(c.f(&T { a: 10 }, 5, &mut v, 1), Ok(6));
    assert_eq!((v[0].a, v[1].a), (11, 12));
    assert_eq!(c.f(&T { a: 10 }, 5, &mut v, 0), Err(Error::App(S::Bad)));
}
