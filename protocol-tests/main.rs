//! Integration tests against real MySQL 9.7 servers started by deploy/sandbox.sh.

mod support;

mod coverage;
mod gtid_sets;
mod sandbox;
