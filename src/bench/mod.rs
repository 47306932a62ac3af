//! `outgate bench`: how fast the filter is on this machine.

pub mod live;
