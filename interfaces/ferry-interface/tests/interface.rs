//! Generated client and server meeting through a mock VMM.

mod common;

use common::kv::*;
use common::mock::{leak, Mock};

#[test]
fn smoke() {
    let kv = leak(KvImpl::default());
    let math = leak(MathImpl);
    let mock = Mock::default()
        .serve("kv", &[leak(KvServer(kv)), leak(MathServer(math))])
        .grant_all("kv")
        .uses(&KV_INTERFACE);
    let c = KvClient::bind(&mock, "kv").unwrap();
    c.put(b"k", b"hello", 0).unwrap();
    let mut v = [0u8; 8];
    assert_eq!(c.get(b"k", &mut v), Ok(5));
    assert_eq!(&v[..5], b"hello");
}
