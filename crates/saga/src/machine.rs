//! The saga's states and transitions.

use orders_core::OrderStatus;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A forward step, in the order the saga runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Reserve the order's stock (all lines or none).
    Reserve,
    /// Authorize the payment of the order's total.
    Authorize,
    /// Create the shipment (label and tracking number).
    Ship,
    /// Capture the authorized charge: the point of no return.
    Capture,
    /// Commit the reserved stock as shipped.
    Commit,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 5] = [
        Self::Reserve,
        Self::Authorize,
        Self::Ship,
        Self::Capture,
        Self::Commit,
    ];

    /// The step's name, as events and logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserve => "reserve",
            Self::Authorize => "authorize",
            Self::Ship => "ship",
            Self::Capture => "capture",
            Self::Commit => "commit",
        }
    }

    /// The service the step calls.
    pub fn service(self) -> Service {
        match self {
            Self::Reserve | Self::Commit => Service::Inventory,
            Self::Authorize | Self::Capture => Service::Payment,
            Self::Ship => Service::Shipping,
        }
    }

    /// The step after this one, if any.
    fn next(self) -> Option<Step> {
        match self {
            Self::Reserve => Some(Self::Authorize),
            Self::Authorize => Some(Self::Ship),
            Self::Ship => Some(Self::Capture),
            Self::Capture => Some(Self::Commit),
            Self::Commit => None,
        }
    }

    /// Whether the saga may still be undone at this step: until the charge is captured.
    fn can_be_undone(self) -> bool {
        self <= Self::Capture
    }

    /// What undoes this step, if anything has to.
    fn compensation(self) -> Option<Compensation> {
        match self {
            Self::Reserve => Some(Compensation::ReleaseStock),
            Self::Authorize | Self::Capture => Some(Compensation::RefundPayment),
            Self::Ship => Some(Compensation::CancelShipment),
            Self::Commit => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step that undoes a forward step; each must also work when the step it undoes never took
/// effect (and then refuse that step if it arrives late).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compensation {
    /// Cancel the shipment (undoes [`Step::Ship`]).
    CancelShipment,
    /// Void the authorization, or refund the captured charge (undoes [`Step::Authorize`] and
    /// [`Step::Capture`]).
    RefundPayment,
    /// Release the reserved stock (undoes [`Step::Reserve`]).
    ReleaseStock,
}

impl Compensation {
    /// Every compensation, in the order they run: the reverse of the steps they undo.
    pub const ALL: [Compensation; 3] = [
        Self::CancelShipment,
        Self::RefundPayment,
        Self::ReleaseStock,
    ];

    /// The compensation's name, as events and logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CancelShipment => "cancel_shipment",
            Self::RefundPayment => "refund_payment",
            Self::ReleaseStock => "release_stock",
        }
    }

    /// The service the compensation calls.
    pub fn service(self) -> Service {
        match self {
            Self::CancelShipment => Service::Shipping,
            Self::RefundPayment => Service::Payment,
            Self::ReleaseStock => Service::Inventory,
        }
    }

    /// The compensations a saga that reached `step` runs, in order: one for every step up to
    /// and including `step`, which may have taken effect even if its answer never came.
    fn needed_after(step: Step) -> impl Iterator<Item = Compensation> {
        Self::ALL.into_iter().filter(move |compensation| {
            Step::ALL
                .into_iter()
                .take_while(|reached| *reached <= step)
                .any(|reached| reached.compensation() == Some(*compensation))
        })
    }
}

impl fmt::Display for Compensation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A service the saga calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Stock.
    Inventory,
    /// Charges.
    Payment,
    /// Shipments.
    Shipping,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 3] = [Self::Inventory, Self::Payment, Self::Shipping];

    /// The service's name (its component's, and its circuit breaker's).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inventory => "inventory",
            Self::Payment => "payment",
            Self::Shipping => "shipping",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a saga is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Going forward: `step` is next (it may have been tried already, without an answer).
    Running {
        /// The next step.
        step: Step,
    },
    /// Undoing: `next` is the next compensation of a saga that reached `reached`.
    Compensating {
        /// The furthest step the saga reached (and possibly took).
        reached: Step,
        /// The next compensation.
        next: Compensation,
    },
    /// Every step done.
    Confirmed,
    /// Every compensation done.
    Cancelled,
}

/// Why a saga is being undone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum CancellationCause {
    /// The customer cancelled the order.
    Requested,
    /// A service refused `step` for good (out of stock, payment declined, ...).
    Refused {
        /// The refused step.
        step: Step,
    },
    /// `step` could not be done before the order's deadline.
    DeadlinePassed {
        /// The step still to do.
        step: Step,
    },
    /// `step`'s service was failing (or its circuit open) when the order could not wait: a
    /// synchronous order gave up on it.
    Unavailable {
        /// The step still to do.
        step: Step,
    },
}

/// Why a running saga is given up on ([`Saga::give_up`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Its deadline passed.
    DeadlinePassed,
    /// The service of its next step is failing, and the order cannot wait for it.
    Unavailable,
}

/// Why a saga is being undone, with the details a person reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cancellation {
    /// The cause.
    #[serde(flatten)]
    pub cause: CancellationCause,
    /// What happened, in words (a service's reason, the customer's note, ...).
    pub detail: String,
}

impl Cancellation {
    /// The reason code an order cancelled for this shows (`out_of_stock` is the service's
    /// business; this says which kind of cancellation it was).
    pub fn reason(&self) -> String {
        match &self.cause {
            CancellationCause::Requested => "cancelled_by_customer".into(),
            CancellationCause::Refused { step } => format!("{step}_refused"),
            CancellationCause::DeadlinePassed { step } => format!("{step}_deadline_passed"),
            CancellationCause::Unavailable { step } => format!("{step}_unavailable"),
        }
    }
}

/// What the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Make a forward step.
    Call(Step),
    /// Undo a step.
    Compensate(Compensation),
    /// Nothing: the saga ended.
    Finished(Ending),
}

impl Action {
    /// The service the action calls, if it calls one.
    pub fn service(self) -> Option<Service> {
        match self {
            Self::Call(step) => Some(step.service()),
            Self::Compensate(compensation) => Some(compensation.service()),
            Self::Finished(_) => None,
        }
    }
}

/// How a saga ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every step done.
    Confirmed,
    /// Every compensation done.
    Cancelled,
}

/// The answer to the saga's latest action. (An action whose answer is unknown, or that failed
/// in a way worth retrying, is not recorded: the caller tries it again later.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The service did it (or had done it already).
    Done,
    /// The service refused it for good.
    Refused {
        /// The service's reason.
        detail: String,
    },
}

/// Why a saga cannot be cancelled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CancelError {
    /// Its charge is captured and it only goes forward now.
    #[error("the order is charged and shipped; it can no longer be cancelled")]
    Captured,
    /// It is confirmed.
    #[error("the order is confirmed; it can no longer be cancelled")]
    Confirmed,
}

/// A refusal the saga cannot act on: a compensation, or committing stock after the charge was
/// captured, was refused. An operator has to look (the caller dead-letters the saga's job).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{service} refused to {action}, which the saga cannot undo or skip: {detail}")]
pub struct Stuck {
    /// The refused action's name.
    pub action: &'static str,
    /// The service that refused.
    pub service: Service,
    /// The service's reason.
    pub detail: String,
}

/// One order's fulfilment saga, as persisted after every step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saga {
    /// Where it is.
    #[serde(flatten)]
    phase: Phase,
    /// Why it is being undone, once it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cancellation: Option<Cancellation>,
}

impl Default for Saga {
    fn default() -> Self {
        Self::new()
    }
}

impl Saga {
    /// A saga that has done nothing yet.
    pub fn new() -> Self {
        Self {
            phase: Phase::Running {
                step: Step::Reserve,
            },
            cancellation: None,
        }
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Why it is being undone, if it is.
    pub fn cancellation(&self) -> Option<&Cancellation> {
        self.cancellation.as_ref()
    }

    /// What to do next.
    pub fn next_action(&self) -> Action {
        match self.phase {
            Phase::Running { step } => Action::Call(step),
            Phase::Compensating { next, .. } => Action::Compensate(next),
            Phase::Confirmed => Action::Finished(Ending::Confirmed),
            Phase::Cancelled => Action::Finished(Ending::Cancelled),
        }
    }

    /// The order's status while the saga is here.
    pub fn status(&self) -> OrderStatus {
        match self.phase {
            Phase::Running {
                step: Step::Reserve,
            } => OrderStatus::Validated,
            Phase::Running {
                step: Step::Authorize,
            } => OrderStatus::Reserved,
            Phase::Running { step: Step::Ship } => OrderStatus::Paid,
            Phase::Running {
                step: Step::Capture | Step::Commit,
            } => OrderStatus::Shipped,
            Phase::Compensating { .. } => OrderStatus::Cancelling,
            Phase::Confirmed => OrderStatus::Confirmed,
            Phase::Cancelled => OrderStatus::Cancelled,
        }
    }

    /// The saga after the answer to [`Saga::next_action`]: the next step, or the first
    /// compensation if a step that can still be undone was refused, or the next compensation.
    /// A finished saga stays as it is.
    pub fn record(&self, outcome: Outcome) -> Result<Saga, Stuck> {
        match (self.phase, outcome) {
            (Phase::Running { step }, Outcome::Done) => Ok(Saga {
                phase: step
                    .next()
                    .map_or(Phase::Confirmed, |step| Phase::Running { step }),
                cancellation: None,
            }),
            (Phase::Running { step }, Outcome::Refused { detail }) if step.can_be_undone() => {
                Ok(self.undo(step, CancellationCause::Refused { step }, detail))
            }
            (Phase::Running { step }, Outcome::Refused { detail }) => Err(Stuck {
                action: step.as_str(),
                service: step.service(),
                detail,
            }),
            (Phase::Compensating { reached, next }, Outcome::Done) => {
                let phase = Compensation::needed_after(reached)
                    .find(|later| *later > next)
                    .map_or(Phase::Cancelled, |later| Phase::Compensating {
                        reached,
                        next: later,
                    });
                Ok(Saga {
                    phase,
                    cancellation: self.cancellation.clone(),
                })
            }
            (Phase::Compensating { next, .. }, Outcome::Refused { detail }) => Err(Stuck {
                action: next.as_str(),
                service: next.service(),
                detail,
            }),
            (Phase::Confirmed | Phase::Cancelled, _) => Ok(self.clone()),
        }
    }

    /// The saga once the customer cancels: it starts undoing what it may have done. A saga
    /// being undone (or undone) stays as it is, keeping its first cause.
    pub fn cancel(&self, detail: impl Into<String>) -> Result<Saga, CancelError> {
        self.stop(CancellationCause::Requested, detail.into())
    }

    /// The saga given up on (`why`): like [`Saga::cancel`], for the step it was waiting to do.
    pub fn give_up(&self, why: GiveUp, detail: impl Into<String>) -> Result<Saga, CancelError> {
        match self.phase {
            Phase::Running { step } => {
                let cause = match why {
                    GiveUp::DeadlinePassed => CancellationCause::DeadlinePassed { step },
                    GiveUp::Unavailable => CancellationCause::Unavailable { step },
                };
                self.stop(cause, detail.into())
            }
            _ => self.stop(CancellationCause::Requested, detail.into()),
        }
    }

    fn stop(&self, cause: CancellationCause, detail: String) -> Result<Saga, CancelError> {
        match self.phase {
            Phase::Running { step } if step.can_be_undone() => Ok(self.undo(step, cause, detail)),
            Phase::Running { .. } => Err(CancelError::Captured),
            Phase::Confirmed => Err(CancelError::Confirmed),
            Phase::Compensating { .. } | Phase::Cancelled => Ok(self.clone()),
        }
    }

    /// Starts undoing a saga that reached `reached`.
    fn undo(&self, reached: Step, cause: CancellationCause, detail: String) -> Saga {
        let first = Compensation::needed_after(reached)
            .next()
            .expect("every step up to capture has a compensation");
        Saga {
            phase: Phase::Compensating {
                reached,
                next: first,
            },
            cancellation: Some(Cancellation { cause, detail }),
        }
    }
}

#[cfg(test)]
mod tests;
