//! gtid-relay: active-active MySQL replication that keeps every transaction's
//! original GTID. See docs/ and the design notes for the data path.

pub mod admin;
pub mod apply;
pub mod channel;
pub mod config;
pub mod conflict;
pub mod conn;
pub mod filter;
pub mod fuzz;
pub mod gravity;
pub mod gtid;
pub mod gtid_mode;
pub mod identity;
pub mod metrics;
pub mod preflight;
pub mod source;
pub mod status;
pub mod verify;
pub mod wire;
