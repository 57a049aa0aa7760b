//! `logger`: an append-only log of lines, serving [`logger_api::Logger`].
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use spin::Mutex;

/// Every line ever appended, in order.
struct Log(Mutex<Vec<Vec<u8>>>);

impl logger_api::Logger for Log {
    fn append(&self, line: &[u8]) -> u64 {
        let mut lines = self.0.lock();
        lines.push(line.to_vec());
        lines.len() as u64
    }

    fn count(&self) -> u64 {
        self.0.lock().len() as u64
    }
}

static LOG: Log = Log(Mutex::new(Vec::new()));

ferry_guest::image! {
    serves: [logger_api::LoggerServer(&LOG)],
}
