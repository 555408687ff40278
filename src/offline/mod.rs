//! The offline twin of `stripe trigger`: native-only tooling that signs fixture events
//! exactly as Stripe does and POSTs them to a running worker. It is not part of the wasm
//! bundle. The `stripe-edge` binary is its command line; the end-to-end tests use it too.

pub mod fixtures;
pub mod http;
pub mod trigger;
