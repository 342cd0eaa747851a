//! The workspace's integration tests: one binary, a module per topic.

mod browser;
mod cli;
mod contract;
mod ops;
mod presign;
mod roundtrip;
