//! What may travel through an interface: plain objects, scalars, results
//! and application errors.

use core::convert::Infallible;
use shared_abi::runtime_status;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The VMM places every copied object at a 16-byte aligned address, so no
/// object type may need more.
pub const MAX_ALIGN: usize = 16;

/// A type that may travel as an object (`&T`, `&mut T`, `&[T]`,
/// `&mut [T]`): raw bytes in both directions (`IntoBytes`: no padding;
/// `FromBytes`: every bit pattern valid, since the callee may write
/// anything), no interior mutability behind a shared borrow (`Immutable`),
/// and a layout zerocopy can check a length and an alignment against
/// (`KnownLayout`). Derive the four zerocopy traits on a `#[repr(C)]`
/// struct to make it one.
#[diagnostic::on_unimplemented(
    message = "ferry: `{Self}` cannot travel as a call object: it is not a plain type",
    label = "not plain",
    note = "derive zerocopy's FromBytes, IntoBytes, Immutable and KnownLayout on a #[repr(C)] type (no pointers, references or padding)"
)]
pub trait Plain: IntoBytes + FromBytes + Immutable + KnownLayout {}

impl<T: ?Sized + IntoBytes + FromBytes + Immutable + KnownLayout> Plain for T {}

/// Compile-time check of an object's element type, evaluated by generated
/// code in a `const` item: its alignment must not exceed [`MAX_ALIGN`], and
/// a slice's element must not be zero-sized.
pub const fn check_object<T>(slice: bool) {
    assert!(
        core::mem::align_of::<T>() <= MAX_ALIGN,
        "ferry: an object type needs more than 16-byte alignment; the VMM aligns copies to 16 bytes"
    );
    assert!(
        !slice || core::mem::size_of::<T>() > 0,
        "ferry: a slice of zero-sized elements cannot travel (its length says nothing)"
    );
}

/// A type passed by value in a scalar register (at most
/// `shared_abi::MAX_SCALARS` per call) or returned in a result register.
pub trait Scalar: Copy {
    /// The value in a 64-bit register (signed types sign-extended).
    fn to_word(self) -> u64;
    /// The value back, if `w` is in range for the type.
    fn from_word(w: u64) -> Option<Self>;
}

macro_rules! unsigned_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            #[inline(always)]
            fn to_word(self) -> u64 {
                self as u64
            }
            #[inline(always)]
            fn from_word(w: u64) -> Option<Self> {
                <$t>::try_from(w).ok()
            }
        }
    )*};
}

macro_rules! signed_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            #[inline(always)]
            #[expect(clippy::cast_sign_loss, reason = "two's complement on the wire, by design")]
            fn to_word(self) -> u64 {
                i64::from(self) as u64
            }
            #[inline(always)]
            #[expect(clippy::cast_possible_wrap, reason = "two's complement on the wire, by design")]
            fn from_word(w: u64) -> Option<Self> {
                <$t>::try_from(w as i64).ok()
            }
        }
    )*};
}

unsigned_scalar!(u8, u16, u32, u64);
signed_scalar!(i8, i16, i32, i64);

impl Scalar for usize {
    #[inline(always)]
    fn to_word(self) -> u64 {
        self as u64
    }
    #[inline(always)]
    fn from_word(w: u64) -> Option<Self> {
        usize::try_from(w).ok()
    }
}

impl Scalar for isize {
    #[inline(always)]
    #[expect(
        clippy::cast_sign_loss,
        reason = "two's complement on the wire, by design"
    )]
    fn to_word(self) -> u64 {
        self as i64 as u64
    }
    #[inline(always)]
    #[expect(
        clippy::cast_possible_wrap,
        reason = "two's complement on the wire, by design"
    )]
    fn from_word(w: u64) -> Option<Self> {
        isize::try_from(w as i64).ok()
    }
}

impl Scalar for bool {
    #[inline(always)]
    fn to_word(self) -> u64 {
        u64::from(self)
    }
    #[inline(always)]
    fn from_word(w: u64) -> Option<Self> {
        match w {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
}

/// What a method returns on success, in the two result registers: `()`
/// (both 0), one [`Scalar`] (the second register 0), or a pair of them.
pub trait Reply: Sized {
    /// The value in `RDI`, `RSI` of the `Return` hypercall.
    fn to_words(self) -> [u64; 2];
    /// The value back, if the registers hold one (anything else is a reply
    /// this interface does not define).
    fn from_words(w: [u64; 2]) -> Option<Self>;
}

impl Reply for () {
    #[inline(always)]
    fn to_words(self) -> [u64; 2] {
        [0, 0]
    }
    #[inline(always)]
    fn from_words(w: [u64; 2]) -> Option<Self> {
        (w == [0, 0]).then_some(())
    }
}

impl<S: Scalar> Reply for S {
    #[inline(always)]
    fn to_words(self) -> [u64; 2] {
        [self.to_word(), 0]
    }
    #[inline(always)]
    fn from_words(w: [u64; 2]) -> Option<Self> {
        if w[1] != 0 {
            return None;
        }
        S::from_word(w[0])
    }
}

impl<A: Scalar, B: Scalar> Reply for (A, B) {
    #[inline(always)]
    fn to_words(self) -> [u64; 2] {
        [self.0.to_word(), self.1.to_word()]
    }
    #[inline(always)]
    fn from_words(w: [u64; 2]) -> Option<Self> {
        Some((A::from_word(w[0])?, B::from_word(w[1])?))
    }
}

/// An interface's application error: a code in `1..runtime_status::BASE`
/// on the wire. `#[derive(AppError)]` implements it for a fieldless enum
/// with explicit discriminants (and checks their range at compile time).
#[diagnostic::on_unimplemented(
    message = "ferry: `{Self}` cannot be an interface's error type: it does not implement AppError",
    label = "not an AppError",
    note = "derive ferry_interface::AppError on a fieldless enum with explicit discriminants in 1..0xFFF0"
)]
pub trait AppError: Sized {
    /// The wire code (`1..runtime_status::BASE`; anything else reaches the
    /// caller as a broken reply, never as an application error).
    fn code(&self) -> u32;
    /// The error with wire code `code`, if this type defines it.
    fn from_code(code: u32) -> Option<Self>;
}

/// For methods that cannot fail in the application (`-> T` rather than
/// `-> Result<T, E>`).
impl AppError for Infallible {
    fn code(&self) -> u32 {
        match *self {}
    }
    fn from_code(_: u32) -> Option<Self> {
        None
    }
}

/// A bare status number, for interfaces that do not name their errors
/// (tests, ports of raw code). 0 and the runtime's statuses are not
/// application errors.
impl AppError for u32 {
    fn code(&self) -> u32 {
        *self
    }
    fn from_code(code: u32) -> Option<Self> {
        (code != 0 && code < runtime_status::BASE).then_some(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_round_trip_and_refuse_out_of_range() {
        assert_eq!(u8::from_word(255u8.to_word()), Some(255));
        assert_eq!(u8::from_word(256), None);
        assert_eq!(i32::from_word((-5i32).to_word()), Some(-5));
        assert_eq!(i8::from_word(200), None);
        assert_eq!(bool::from_word(2), None);
        assert_eq!(<(u32, bool)>::from_words([7, 1]), Some((7, true)));
        assert_eq!(<u64>::from_words([7, 1]), None);
        assert_eq!(<()>::from_words([0, 1]), None);
    }

    #[test]
    fn bare_codes_exclude_zero_and_runtime_statuses() {
        assert_eq!(u32::from_code(0), None);
        assert_eq!(u32::from_code(3), Some(3));
        assert_eq!(u32::from_code(runtime_status::MALFORMED), None);
    }
}
