//! Wiring of the mqtt-supervisor service: start-up in order (HTTP, database,
//! migrations, lease keeper, recorder, monitor), readiness, and the bounded
//! parallel shutdown. `main.rs` only parses the command line, loads settings
//! and maps errors to exit codes; everything here can be driven by tests.

pub mod admin;
pub mod logging;
pub mod probe;
pub mod service;
pub mod signals;
