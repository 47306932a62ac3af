//! Measuring outgate on this machine: synthetic traffic to replay ([`synthetic`]) and the figures of
//! repeated runs ([`stats`]), for `outgate bench`.

pub mod stats;
pub mod synthetic;
