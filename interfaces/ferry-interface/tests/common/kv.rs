//! Test interfaces covering the mapping (byte slices, a plain struct as
//! `&T` and `&mut T`, `&[u32]`, scalars of each kind, `#[out]`, pairs,
//! `Result` and bare returns, a prefix) and implementations that record
//! what they saw.

use ferry_interface::{interface, AppError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The kv interface's errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
#[repr(u32)]
pub enum KvError {
    NotFound = 1,
    TooLarge = 2,
    /// The highest code an interface may use.
    Last = 0xFFEF,
}

/// A request struct travelling as itself.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Query {
    pub key: u64,
    pub flags: u32,
    pub pad: u32,
}

/// A reply struct.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub bytes: u64,
}

/// A key-value store.
#[interface]
pub trait Kv {
    /// Copy the value of `key` into `value`; its length.
    fn get(&self, key: &[u8], value: &mut [u8]) -> Result<usize, KvError>;
    /// How many non-zero bytes `value` arrived with (OUT: none), then fill it.
    fn fill(&self, #[out] value: &mut [u8]) -> u64;
    /// Store `value` under `key`.
    fn put(&self, key: &[u8], value: &[u8], flags: u32) -> Result<(), KvError>;
    /// Statistics for `q`; answers `(q.key, q.flags)`.
    fn stat(&self, q: &Query, #[out] s: &mut Stats) -> Result<(u64, u64), KvError>;
    /// Add one hit to `s` (INOUT struct, nothing returned).
    fn bump(&self, s: &mut Stats);
    /// Sum of `xs`.
    fn sum(&self, xs: &[u32]) -> u64;
    /// Scalars of every unsigned kind and two signed ones.
    fn scalars(
        &self,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: bool,
    ) -> Result<(i64, bool), KvError>;
    /// The remaining scalar kinds, as a bare pair.
    fn more(&self, a: i16, b: i32, c: i64, d: usize, e: isize) -> (u64, u64);
    /// Fail with a bare status code.
    fn code(&self, c: u32) -> Result<(), u32>;
    /// Fail with `KvError::Last`.
    fn last(&self) -> Result<u8, KvError>;
}

/// Counts calls per method; stores in a map.
#[derive(Default)]
pub struct KvImpl {
    pub calls: AtomicUsize,
    pub map: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl KvImpl {
    fn count(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    /// How many times any method ran.
    pub fn called(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Kv for KvImpl {
    fn get(&self, key: &[u8], value: &mut [u8]) -> Result<usize, KvError> {
        self.count();
        let map = self.map.lock().unwrap();
        let (_, v) = map
            .iter()
            .find(|(k, _)| k == key)
            .ok_or(KvError::NotFound)?;
        let dst = value.get_mut(..v.len()).ok_or(KvError::TooLarge)?;
        dst.copy_from_slice(v);
        Ok(v.len())
    }

    fn fill(&self, value: &mut [u8]) -> u64 {
        self.count();
        let seen = value.iter().filter(|&&b| b != 0).count() as u64;
        for (i, b) in value.iter_mut().enumerate() {
            *b = u8::try_from(i % 251).unwrap() + 1;
        }
        seen
    }

    fn put(&self, key: &[u8], value: &[u8], flags: u32) -> Result<(), KvError> {
        self.count();
        if flags != 0 {
            return Err(KvError::TooLarge);
        }
        let mut map = self.map.lock().unwrap();
        map.retain(|(k, _)| k != key);
        map.push((key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn stat(&self, q: &Query, s: &mut Stats) -> Result<(u64, u64), KvError> {
        self.count();
        if q.key == 0 {
            return Err(KvError::NotFound);
        }
        assert_eq!(*s, Stats::default(), "an OUT struct arrives zeroed");
        *s = Stats {
            hits: q.key.wrapping_mul(2),
            misses: u64::from(q.flags),
            bytes: 42,
        };
        Ok((q.key, u64::from(q.flags)))
    }

    fn bump(&self, s: &mut Stats) {
        self.count();
        s.hits = s.hits.wrapping_add(1);
    }

    fn sum(&self, xs: &[u32]) -> u64 {
        self.count();
        xs.iter().map(|&x| u64::from(x)).sum()
    }

    fn scalars(
        &self,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: bool,
    ) -> Result<(i64, bool), KvError> {
        self.count();
        if d == 0 {
            return Err(KvError::NotFound);
        }
        let total = i64::from(a) + i64::from(b) + i64::from(c) + i64::from(e);
        // Wrapping: the dispatch fuzzer sends any u64.
        Ok((total.wrapping_sub(d.cast_signed()), !f))
    }

    fn more(&self, a: i16, b: i32, c: i64, d: usize, e: isize) -> (u64, u64) {
        self.count();
        // Wrapping: the dispatch fuzzer sends any value of each type.
        let s = (i64::from(a) + i64::from(b))
            .wrapping_add(c)
            .wrapping_add(e as i64);
        (s.cast_unsigned(), d as u64)
    }

    fn code(&self, c: u32) -> Result<(), u32> {
        self.count();
        Err(c)
    }

    fn last(&self) -> Result<u8, KvError> {
        self.count();
        Err(KvError::Last)
    }
}

/// Arithmetic errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, AppError)]
pub enum MathError {
    DivideByZero = 7,
}

/// A second interface, with a prefix, served by the same domain as `Kv`.
#[interface(prefix = "m_")]
pub trait Math {
    fn add(&self, a: u64, b: u64) -> u64;
    fn div(&self, a: u32, b: u32) -> Result<u32, MathError>;
    fn noop(&self);
}

/// The `Math` implementation.
pub struct MathImpl;

impl Math for MathImpl {
    fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }
    fn div(&self, a: u32, b: u32) -> Result<u32, MathError> {
        a.checked_div(b).ok_or(MathError::DivideByZero)
    }
    fn noop(&self) {}
}
