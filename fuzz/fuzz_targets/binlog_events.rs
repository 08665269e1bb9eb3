#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gtid_relay::fuzz::binlog_events(data));
