//! Any text as a configuration file: parsed or rejected with an error, never a panic; and a
//! configuration that parses survives writing and parsing again.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| training::check_untrusted_config(bytes));
