//! Orderly's fulfilment worker, as plain Rust over small traits: it runs each validated order's
//! saga (the `saga` crate's state machine) over the inventory, payment and shipping services,
//! through one fleet-wide circuit breaker and retry budget per service, writing every step to
//! the ledger before the next. Components adapt Spin's SQLite, key-value store and outbound
//! HTTP to the traits and call in here.

mod requests;
mod settings;
mod worker;

pub use pipeline::FULFILMENT_CHANNEL;
pub use requests::{OrderFacts, ServiceRequest, StepAnswer, interpret, request_for};
pub use settings::{FULFILMENT_VARIABLES, FulfilmentSettings};
pub use worker::{
    FULFILMENT_HEARTBEAT_KEY, FulfilmentError, FulfilmentParts, FulfilmentReport, FulfilmentWorker,
    HeldStep, NoAnswer, PriceList, ServiceClient,
};
