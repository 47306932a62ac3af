//! Measuring outgate on this machine, for `outgate bench`: synthetic traffic to replay ([`synthetic`]),
//! the figures of repeated runs ([`stats`]), and the live filter in network namespaces of its own
//! ([`live`]).

pub mod live;
pub mod stats;
pub mod synthetic;
