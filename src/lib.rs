pub mod config;
pub mod status;
