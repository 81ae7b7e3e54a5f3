//! The black-box tests, one binary: each file is one area of the host or the app, driven from
//! outside over HTTP (see `support/` for the harness). Run one area with
//! `cargo test -p orderly-tests -- <file>::`, e.g. `cargo test -p orderly-tests -- cron::`.

mod cron;
mod edge;
mod external_sim;
mod files;
mod fulfilment;
mod gateway;
mod http_trigger;
mod key_value;
mod lab;
mod manifests;
mod notification;
mod orders;
mod outbound_http;
mod pipeline;
mod pipeline_processes;
mod redis_key_value;
mod redis_trigger;
mod saga;
mod services;
mod sqlite;
mod sync_orders;
mod variables;
mod wit_worlds;
