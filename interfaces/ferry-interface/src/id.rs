//! Method ids: a 64-bit FNV-1a hash of a method's canonical signature.
//!
//! The canonical signature is text another language can produce:
//!
//! ```text
//! <Interface>.<method>(<param>,<param>,...)-><Ok>[|<Err>]
//! ```
//!
//! where `<method>` is the method's name (without the interface's entry
//! prefix), an object parameter is `<mode> <Type>:<size>` (`mode` is `in`,
//! `out` or `inout`; `Type` is the type as written without spaces and with
//! only the last segment of each path — `[u8;16]` for an array,
//! `Name<A,B>` with generic arguments — and `[T]` for a slice; `size` is the
//! size in bytes of `T`, the element for a slice, in decimal), a scalar
//! parameter is its type (`u32`), `Ok` is the success type (`()`, a
//! scalar, or `(A,B)`) and `Err` the error type's last path segment,
//! present only for a `Result`. Parameters appear in declaration order,
//! objects and scalars interleaved as written. Parameter names are not
//! part of it: renaming one stays compatible. Example (with `#[out]` on
//! `value`): `Kv.get(in [u8]:1,out [u8]:1)->usize|KvError`.
//!
//! FNV-1a 64: start from `0xcbf29ce484222325`; for each byte, XOR it in and
//! multiply by `0x100000001b3` (wrapping). An id of 0 is reserved for raw
//! entries (`shared_abi::RAW_METHOD`), so a hash of 0 becomes 1.

/// A method id under construction (all `const`, so generated code computes
/// ids at compile time, sizes of object types included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodId(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

impl MethodId {
    /// The empty signature.
    pub const fn new() -> Self {
        Self(FNV_OFFSET)
    }

    /// Append text.
    pub const fn str(self, s: &str) -> Self {
        let b = s.as_bytes();
        let mut h = self.0;
        let mut i = 0;
        while i < b.len() {
            h ^= b[i] as u64;
            h = h.wrapping_mul(FNV_PRIME);
            i += 1;
        }
        Self(h)
    }

    /// Append `n` in decimal.
    pub const fn dec(self, n: u64) -> Self {
        let mut digits = [0u8; 20];
        let mut len = 0;
        let mut v = n;
        loop {
            digits[len] = b'0' + (v % 10) as u8;
            len += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        let mut h = self.0;
        while len > 0 {
            len -= 1;
            h ^= digits[len] as u64;
            h = h.wrapping_mul(FNV_PRIME);
        }
        Self(h)
    }

    /// Append the size of `T` in decimal.
    pub const fn size<T>(self) -> Self {
        self.dec(core::mem::size_of::<T>() as u64)
    }

    /// The id (never 0, which marks a raw entry).
    pub const fn finish(self) -> u64 {
        if self.0 == 0 {
            1
        } else {
            self.0
        }
    }
}

impl Default for MethodId {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FNV-1a 64 test vectors (from the algorithm's reference).
    #[test]
    fn matches_the_reference_fnv1a() {
        assert_eq!(MethodId::new().finish(), 0xcbf2_9ce4_8422_2325);
        assert_eq!(MethodId::new().str("a").finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(
            MethodId::new().str("foobar").finish(),
            0x8594_4171_f739_67e8
        );
    }

    #[test]
    fn pieces_hash_like_the_whole_text() {
        let whole = MethodId::new()
            .str("Kv.get(in [u8]:1,out [u8]:1)->usize|KvError")
            .finish();
        let pieces = MethodId::new()
            .str("Kv.get(in [u8]:")
            .size::<u8>()
            .str(",out [u8]:")
            .dec(1)
            .str(")->usize|KvError")
            .finish();
        assert_eq!(whole, pieces);
        assert_eq!(
            MethodId::new().dec(4096).finish(),
            MethodId::new().str("4096").finish()
        );
        assert_eq!(
            MethodId::new().dec(0).finish(),
            MethodId::new().str("0").finish()
        );
    }
}
