//! Orderly's fulfilment saga, as a pure state machine: once an order is validated, reserve its
//! stock, authorize its payment, create its shipment, capture the charge and commit the stock;
//! if a step is refused for good (or the customer cancels first), undo what may have been done,
//! in reverse: cancel the shipment, void or refund the payment, release the stock.
//!
//! The machine only says what to do next ([`Saga::next_action`]) and what an outcome means
//! ([`Saga::record`]); callers make the calls, persist the saga after every step, and retry a
//! call whose outcome is unknown. Every step and compensation must be idempotent (keyed by the
//! order id) and a compensation must also work for a step that never took effect, leaving a
//! mark that refuses the step if it arrives late: the machine compensates every step it
//! reached, because a step whose answer was lost may have taken effect.
//!
//! Capturing the charge is the point of no return: once it succeeded the saga only goes
//! forward (a cancellation that arrives later is refused).

mod machine;

pub use machine::{
    Action, CancelError, Cancellation, CancellationCause, Compensation, Ending, GiveUp, Outcome,
    Phase, Saga, Service, Step,
};
