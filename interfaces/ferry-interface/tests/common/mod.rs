//! Shared by the host tests: test interfaces and a mock transport.
#![allow(dead_code)]

pub mod kv;
pub mod mock;
