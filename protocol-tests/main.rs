//! Integration tests against real MySQL 9.7 servers started by deploy/sandbox.sh.

mod support;

mod gtid_sets;
mod relay;
mod sandbox;
mod verify;
