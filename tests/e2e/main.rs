//! End-to-end tests: the real binary, a real Postgres database per test and
//! a private Mosquitto per test. Set TEST_LOG=1 to see the service's output.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod acks;
mod broker_outage;
mod cli;
mod crash;
mod database;
mod db_proxy;
mod decisions;
mod demo;
mod deploy_files;
mod environment;
mod fake_broker;
mod fake_broker_disconnect;
mod fake_broker_raw;
mod hold_lock;
mod hostile;
mod instance_lock;
mod invalid_rows;
mod judgement;
mod lifecycle;
mod matrix;
mod memory_flood;
mod messages;
mod notify;
mod oversize;
mod pg_tls;
mod refusals;
mod secrets;
mod settings;
mod shutdown;
mod supervisord;
mod takeover;
mod tls;
