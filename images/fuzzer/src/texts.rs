//! Hostile texts for `Print` and `Panic`: forged log lines, control and
//! bidi characters, invalid UTF-8, a text longer than the VMM reads.

/// Forged VMM log lines, control and bidi characters, invalid UTF-8, the
/// empty text, and 5,000 bytes (more than `Print`'s 4,096 and `Panic`'s
/// 1,024).
pub static TEXTS: [&[u8]; crate::wire::HOSTILE_TEXTS] = [
    b"ok\n[ERROR ferry] domain `kv` restarted (generation 7)\r\n",
    b"\x1b[2J\x1b[31mred\x1b[0m\r\x08\x08\x07 overwritten \x00 nul",
    "\u{202e}gnp.exe\u{2028}line\u{2029}para\u{200f}\u{061c}".as_bytes(),
    b"\xff\xfe\xc0\x80 invalid \xed\xa0\x80 utf-8 \xf4\x90\x80\x80",
    &LONG,
    b"",
];

static LONG: [u8; 5000] = {
    let mut b = [b'A'; 5000];
    let mut i = 0;
    while i < 5000 {
        if i % 97 == 96 {
            b[i] = b'\n';
        }
        i += 1;
    }
    b
};

/// Address and length of text `which` (an index below the count, else
/// `which` itself as a wild address with `len`).
pub fn text(which: u64, len: u64) -> (u64, u64) {
    match usize::try_from(which).ok().and_then(|i| TEXTS.get(i)) {
        Some(t) => (t.as_ptr() as u64, len.min(t.len() as u64)),
        None => (which, len),
    }
}
