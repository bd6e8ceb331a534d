//! Any bytes, raw or gzipped, as an IDX label file (rank 1) and image file (rank 3): the reader
//! must return a value or an error, never panic, hang or allocate beyond what the input holds.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| data::idx::check_untrusted(bytes));
