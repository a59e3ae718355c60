#![no_main]
// The same entry point the corpus replay test calls on stable (dualconn::fuzzing).

libfuzzer_sys::fuzz_target!(|data: &[u8]| dualconn::fuzzing::request_head(data));
