//! `Records`: a plain struct travelling as itself in every object mode
//! (`&T` IN, `&mut T` INOUT, `&[T]` IN, `#[out] &mut T` OUT), with an
//! application error, under the entry prefix `rec_`.

use ferry_interface::AppError;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A record: 16 bytes, no padding, every bit pattern valid.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Record {
    /// Its identity.
    pub id: u64,
    /// What `scale` multiplies.
    pub weight: u32,
    /// Bits, OR-ed by `sum`.
    pub flags: u32,
}

/// Operations on records, computed in the server's domain.
#[ferry_interface::interface(prefix = "rec_")]
pub trait Records {
    /// Write into `total` (OUT: it arrives zeroed) the sum of the ids and
    /// weights of `recs` and the OR of their flags; answer how many
    /// records came. No record: `Empty`; a weight sum over `u32`:
    /// `Overflow`.
    fn sum(&self, recs: &[Record], #[out] total: &mut Record) -> Result<u64, RecordsError>;
    /// Multiply `rec.weight` by `by` (INOUT). Over `u32`: `Overflow`,
    /// `rec` unchanged.
    fn scale(&self, rec: &mut Record, by: u32) -> Result<(), RecordsError>;
    /// The record of the server's table whose id is `q.id`, if its flags
    /// include all of `q.flags`: answer its (weight, flags). Else
    /// `NotFound`.
    fn lookup(&self, q: &Record) -> Result<(u64, u64), RecordsError>;
}

/// Why a [`Records`] operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum RecordsError {
    /// `sum` of no record.
    Empty = 1,
    /// A weight does not fit in `u32`.
    Overflow = 2,
    /// `lookup` found no matching record.
    NotFound = 3,
}

/// The table the test server's `lookup` searches (public so its callers
/// know what to expect).
pub const TABLE: [Record; 2] = [
    Record {
        id: 7,
        weight: 70,
        flags: 0b0111,
    },
    Record {
        id: 9,
        weight: 90,
        flags: 0b1000,
    },
];
