//! Orderly's order pipeline, as plain Rust over small traits: order intake with idempotency
//! keys (the order, its job and its key in one transaction), and the validation worker that
//! drains jobs behind the fleet-wide circuit breaker and retry budget. Components adapt Spin's
//! SQLite, key-value store, outbound HTTP and Redis to the traits and call in here.

mod answer;
mod doorbell;
mod intake;
mod metrics;
mod plan;
mod settings;
mod worker;

pub use answer::{CallResult, ValidatorVerdict, interpret, request_body};
pub use doorbell::{Doorbell, DoorbellError};
pub use intake::{IntakeResult, accept, complete};
pub use metrics::{
    CALL_LATENCY, CALL_OUTCOMES, HistogramSpec, HistogramTotals, Observations, Tally, Totals,
    VALIDATION_LATENCY, read_totals,
};
pub use plan::{
    DEADLINE_PASSED, JobFacts, JobPolicy, VALIDATOR_REFUSED, deadline_passed, next_step,
};
pub use settings::{IntakeSettings, PIPELINE_VARIABLES, WorkerSettings};
pub use worker::{
    DEPENDENCY, DoorbellPublisher, DrainReport, EVENTS_CHANNEL, FULFILMENT_CHANNEL,
    FULFILMENT_DRAINERS, HEARTBEAT_KEY, JOB_KIND, JOBS_CHANNEL, ValidationWorker, ValidatorClient,
    WorkerError, WorkerParts, doorbell_needed, draining,
};
