#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtid_relay::fuzz::gtid_binary(data));
