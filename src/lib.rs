//! stripe-edge: a Cloudflare Worker that verifies Stripe webhooks, routes them by event
//! type, normalizes them into one JSON shape and hands them to an origin server or KV.
//!
//! The crate has two halves. Everything that decides lives in plain modules that never
//! name `worker::` and build natively: [`config`], [`signature`], [`event`], [`route`],
//! [`normalize`], [`outcome`] and the [`pipeline`] that strings them together. The wasm-only
//! `shell` reads the request, the clock and the environment, asks the pipeline for a plan,
//! carries out the I/O the plan asks for and turns every result into a response.

pub mod config;
pub mod event;
pub mod journal;
pub mod ledger;
pub mod normalize;
pub mod outcome;
pub mod pipeline;
pub mod retry;
pub mod route;
pub mod signature;
pub mod time;

#[cfg(all(target_arch = "wasm32", feature = "shell"))]
mod shell;

/// The crate version, reported by `GET /health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[cfg(not(target_arch = "wasm32"))]
pub mod offline;
