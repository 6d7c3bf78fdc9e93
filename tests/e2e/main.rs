//! End-to-end tests: the real binary, a real Postgres database per test and
//! a private Mosquitto per test. Set TEST_LOG=1 to see the service's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod lifecycle;
