//! Integration tests against real MySQL 9.7 servers started by deploy/sandbox.sh.

mod support;

mod admin;
mod conflicts;
mod coverage;
mod deploy;
mod fidelity;
mod gtid_mode;
mod gtid_sets;
mod metrics;
mod monitoring;
mod preflight;
mod relay;
mod reliability;
mod replay;
mod routing;
mod sandbox;
mod semisync;
mod tls;
mod verify;
