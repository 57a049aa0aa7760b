//! The fuzz oracle (being built).
