//! `typed_v1`: TEST-ONLY. Serves `test_api::v1::Probe` and
//! `test_api::Records` (one entry table: `probe_add`, `rec_sum`,
//! `rec_scale`, `rec_lookup`, then the raw entries), calls both, and has
//! raw entries that bind their clients by name and report what they saw:
//!
//! - `drive(start, by)`: binding in `nobody` must answer `NotGranted`;
//!   then `probe_add(start, by)` in `server`: `[sum, value after]`.
//! - `records(base, by)`: every Records method in `server`, each object
//!   mode and each application error checked here: `[total.id of three
//!   records with ids base.., weight 10 scaled by by]`.
//! - `partial()`: Records in `server` with `rec_scale` not granted: it
//!   must answer `BadSlot` locally; `[rec_sum's count, rec_lookup's
//!   weight]`.
//! - `bind(which)`: bind Probe and Records in `server`, `nobody` or
//!   `client` (which = 0, 1, 2): `[Probe's outcome, Records' outcome]`
//!   (0 bound, 1 `NotGranted`, 2 `NotDeclared`).
//!
//! A failed check answers its status (`report.rs`).
#![no_std]
#![no_main]

#[path = "../report.rs"]
#[allow(dead_code, reason = "shared by the three images; each uses part")]
mod report;

use ferry_guest::interface::Error;
use ferry_guest::{Call, Vmm};
use report::{bind_code, bound, called, check, is_bad_slot};
use test_api::records::TABLE;
use test_api::v1::{Probe, ProbeClient, ProbeServer, PROBE_INTERFACE};
use test_api::{Record, Records, RecordsClient, RecordsError, RecordsServer, RECORDS_INTERFACE};

/// The Probe v1 implementation: stateless, the counter is the caller's.
struct Counter;

impl Probe for Counter {
    fn probe_add(&self, value: &mut u64, by: u64) -> u64 {
        *value = value.wrapping_add(by);
        *value
    }
}

/// The Records implementation: stateless but for [`TABLE`].
struct Book;

impl Records for Book {
    fn sum(&self, recs: &[Record], total: &mut Record) -> Result<u64, RecordsError> {
        if recs.is_empty() {
            return Err(RecordsError::Empty);
        }
        // Accumulated into `total` itself: a total that did not arrive
        // zeroed (OUT) would show in the caller's answer.
        for r in recs {
            total.id = total.id.wrapping_add(r.id);
            total.weight = total
                .weight
                .checked_add(r.weight)
                .ok_or(RecordsError::Overflow)?;
            total.flags |= r.flags;
        }
        Ok(u64::try_from(recs.len()).unwrap_or(u64::MAX))
    }

    fn scale(&self, rec: &mut Record, by: u32) -> Result<(), RecordsError> {
        rec.weight = rec.weight.checked_mul(by).ok_or(RecordsError::Overflow)?;
        Ok(())
    }

    fn lookup(&self, q: &Record) -> Result<(u64, u64), RecordsError> {
        TABLE
            .iter()
            .find(|r| r.id == q.id && r.flags & q.flags == q.flags)
            .map(|r| (u64::from(r.weight), u64::from(r.flags)))
            .ok_or(RecordsError::NotFound)
    }
}

static COUNTER: Counter = Counter;
static BOOK: Book = Book;

/// See the crate documentation.
fn drive(c: &mut Call) -> Result<[u64; 2], u32> {
    let nobody = ProbeClient::bind(Vmm, "nobody");
    check(
        nobody.is_err() && bind_code(&nobody) == u64::from(report::NOT_GRANTED),
        report::BOUND_UNGRANTED,
        "Probe in nobody",
        bind_code(&nobody),
    )?;
    let probe = bound(ProbeClient::bind(Vmm, "server"))?;
    let mut value = c.scalar(0);
    let sum = called(probe.probe_add(&mut value, c.scalar(1)))?;
    Ok([sum, value])
}

/// See the crate documentation.
fn records(c: &mut Call) -> Result<[u64; 2], u32> {
    let base = c.scalar(0);
    let by = u32::try_from(c.scalar(1)).map_err(|_| report::BAD_ARGUMENT)?;
    let recs = bound(RecordsClient::bind(Vmm, "server"))?;
    let three = [
        Record {
            id: base,
            weight: 10,
            flags: 0b001,
        },
        Record {
            id: base.wrapping_add(1),
            weight: 20,
            flags: 0b010,
        },
        Record {
            id: base.wrapping_add(2),
            weight: 30,
            flags: 0b100,
        },
    ];

    // &[T] IN, #[out] &mut T OUT (arrives zeroed whatever the caller held).
    let mut total = Record {
        id: u64::MAX,
        weight: 0xdead,
        flags: 0xbeef,
    };
    let n = called(recs.sum(&three, &mut total))?;
    let want = Record {
        id: base.wrapping_mul(3).wrapping_add(3),
        weight: 60,
        flags: 0b111,
    };
    check(
        n == 3 && total == want,
        report::SUM_WRONG,
        "rec_sum",
        (n, total),
    )?;
    let total_id = total.id;
    let r = recs.sum(&[], &mut total);
    check(
        r == Err(Error::App(RecordsError::Empty)),
        report::SUM_NOT_EMPTY,
        "rec_sum of nothing",
        r,
    )?;
    let heavy = [
        Record {
            weight: u32::MAX,
            ..Record::default()
        },
        Record {
            weight: 1,
            ..Record::default()
        },
    ];
    let r = recs.sum(&heavy, &mut total);
    check(
        r == Err(Error::App(RecordsError::Overflow)),
        report::SUM_NO_OVERFLOW,
        "rec_sum over u32",
        r,
    )?;

    // &mut T INOUT, with a scalar after it.
    let mut rec = three[0];
    called(recs.scale(&mut rec, by))?;
    check(
        rec == Record {
            weight: 10u32.wrapping_mul(by),
            ..three[0]
        },
        report::SCALE_WRONG,
        "rec_scale",
        rec,
    )?;
    let mut big = Record {
        weight: u32::MAX,
        ..Record::default()
    };
    let r = recs.scale(&mut big, 2);
    check(
        r == Err(Error::App(RecordsError::Overflow)),
        report::SCALE_NO_OVERFLOW,
        "rec_scale over u32",
        r,
    )?;

    // &T IN, a pair of scalars back.
    let q = Record {
        id: 7,
        weight: 0,
        flags: 0b0101,
    };
    let r = recs.lookup(&q);
    check(
        r == Ok((70, 0b0111)),
        report::LOOKUP_WRONG,
        "rec_lookup 7",
        r,
    )?;
    for (id, flags) in [(9, 0b0001), (8, 0)] {
        let r = recs.lookup(&Record {
            id,
            weight: 0,
            flags,
        });
        check(
            r == Err(Error::App(RecordsError::NotFound)),
            report::LOOKUP_NOT_NOT_FOUND,
            "rec_lookup of an absent record",
            r,
        )?;
    }
    Ok([total_id, u64::from(rec.weight)])
}

/// See the crate documentation.
fn partial(_: &mut Call) -> Result<[u64; 2], u32> {
    let recs = bound(RecordsClient::bind(Vmm, "server"))?;
    let mut rec = Record {
        id: 1,
        weight: 2,
        flags: 0,
    };
    let r = recs.scale(&mut rec, 3);
    check(
        is_bad_slot(&r),
        report::NOT_BAD_SLOT,
        "ungranted rec_scale",
        r,
    )?;
    check(
        rec.weight == 2,
        report::NOT_BAD_SLOT,
        "rec after the ungranted rec_scale",
        rec,
    )?;
    let mut total = Record::default();
    let n = called(recs.sum(&[rec], &mut total))?;
    let (weight, _) = called(recs.lookup(&Record {
        id: 7,
        weight: 0,
        flags: 0,
    }))?;
    Ok([n, weight])
}

/// See the crate documentation.
fn bind(c: &mut Call) -> Result<[u64; 2], u32> {
    let domain = match c.scalar(0) {
        0 => "server",
        1 => "nobody",
        2 => "client",
        _ => return Err(report::BAD_ARGUMENT),
    };
    Ok([
        bind_code(&ProbeClient::bind(Vmm, domain)),
        bind_code(&RecordsClient::bind(Vmm, domain)),
    ])
}

ferry_guest::image! {
    serves: [ProbeServer(&COUNTER), RecordsServer(&BOOK)],
    uses: [PROBE_INTERFACE, RECORDS_INTERFACE],
    raw: ["drive" => drive, "records" => records, "partial" => partial, "bind" => bind],
}
