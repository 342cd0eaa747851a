//! The workspace's integration tests: one binary, a module per topic.

mod browser;
mod cli;
mod clouds;
mod contract;
mod docs;
mod faults;
mod foreign;
mod gateway_abuse;
mod gateway_conformance;
mod gateway_fairness;
mod integrity;
mod monitoring;
mod object_store_suite;
mod ops;
mod presign;
mod presign_checksum;
mod rotation;
mod roundtrip;
mod safety;
mod support;
mod symlink_race;
mod sync_files;
mod sync_scale;
