//! The fault-injection catalogue (being built).
