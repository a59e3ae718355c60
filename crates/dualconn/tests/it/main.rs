//! Every integration test of the crate, in one binary: each file beside this one is a module
//! (`cargo test -p dualconn --test it sessions::` runs one of them). One binary links the crate
//! and its dependencies once instead of once per file, which is most of the time a rebuild
//! takes.
//!
//! To add tests: put them in `tests/it/<name>.rs`, add `mod <name>;` below, and reach the
//! harness with `use crate::common::*;` (not `mod common;`). Tests share one process: a test
//! that changes process-wide state (environment, resource limits, signal dispositions, the
//! working directory) must run it in a child process instead, as
//! `limits_and_lifecycle::under_a_lowered_descriptor_limit_the_binary_is_full_at_its_cap_and_says_so`
//! does with `prlimit`. The one exception, `tls::sighup_reloads_the_certificate_even_when_the_files_look_unchanged`,
//! signals the whole process: it installs a SIGHUP handler first, and the only thing the signal
//! does to the other tests' servers is make a TLS server read its own files again. insta names snapshots after the module path: `snapshots/it__<name>__*.snap`.

// The harness stays in tests/common/ so a test file written for its own binary still finds it.
#[path = "../common/mod.rs"]
mod common;

mod auth;
mod backpressure;
mod cli;
mod cluster;
mod commands;
mod docs;
mod embedding;
mod game_backends;
mod health;
mod http2;
mod lifecycle;
mod limits_and_lifecycle;
mod monitoring;
mod openapi;
mod resume;
mod robustness;
mod rooms;
mod sessions;
mod shapes;
mod tls;
mod transports;
