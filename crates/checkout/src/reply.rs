//! What the caller of the synchronous path is told: the HTTP status and, for an error, the
//! problem's `type` and title, from how the path ended or, for a replayed request, from the
//! order's state now.

use crate::Checkout;
use orders_core::OrderStatus;
use saga::Step;

/// The answer's status and, unless it succeeded, its problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The problem's `type` and title (`None` for 201 and 202).
    pub problem: Option<(&'static str, &'static str)>,
}

const PAID: Reply = Reply {
    status: 201,
    problem: None,
};
const CONTINUING: Reply = Reply {
    status: 202,
    problem: None,
};
const REJECTED: Reply = Reply {
    status: 422,
    problem: Some(("/problems/order-rejected", "The order was rejected")),
};
const OUT_OF_STOCK: Reply = Reply {
    status: 409,
    problem: Some(("/problems/out-of-stock", "Out of stock")),
};
const DECLINED: Reply = Reply {
    status: 402,
    problem: Some(("/problems/payment-declined", "Payment declined")),
};
const REFUSED: Reply = Reply {
    status: 409,
    problem: Some(("/problems/step-refused", "A service refused the order")),
};
const CANCELLED: Reply = Reply {
    status: 409,
    problem: Some(("/problems/order-cancelled", "The order was cancelled")),
};
const UNAVAILABLE: Reply = Reply {
    status: 503,
    problem: Some((
        "/problems/dependency-unavailable",
        "A dependency is failing",
    )),
};
const TIMED_OUT: Reply = Reply {
    status: 504,
    problem: Some(("/problems/dependency-timeout", "A dependency is too slow")),
};

/// The answer for how the synchronous path ended.
pub fn reply(outcome: &Checkout) -> Reply {
    match outcome {
        Checkout::Paid => PAID,
        Checkout::Continuing => CONTINUING,
        Checkout::Rejected {
            status: OrderStatus::Rejected,
            ..
        } => REJECTED,
        // The validator refused the call itself: it is the failing dependency.
        Checkout::Rejected { .. } | Checkout::Unavailable { .. } => UNAVAILABLE,
        Checkout::Refused { step, .. } => refused(*step),
        Checkout::TimedOut { .. } => TIMED_OUT,
    }
}

/// The answer to a replayed synchronous request (same key and body) for an order that is
/// `status` now with `reason`: what the first request answered, as far as the order tells.
pub fn replay(status: OrderStatus, reason: Option<&str>) -> Reply {
    match status {
        OrderStatus::Paid | OrderStatus::Shipped | OrderStatus::Confirmed => PAID,
        OrderStatus::Processing | OrderStatus::Validated | OrderStatus::Reserved => CONTINUING,
        OrderStatus::Rejected => REJECTED,
        OrderStatus::Failed => UNAVAILABLE,
        OrderStatus::Cancelling | OrderStatus::Cancelled => match reason.unwrap_or_default() {
            "reserve_refused" => OUT_OF_STOCK,
            "authorize_refused" => DECLINED,
            crate::DEPENDENCY_FAILED => UNAVAILABLE,
            reason if reason.ends_with("_unavailable") => UNAVAILABLE,
            reason if reason.ends_with("_deadline_passed") => TIMED_OUT,
            _ => CANCELLED,
        },
    }
}

fn refused(step: Step) -> Reply {
    match step {
        Step::Reserve => OUT_OF_STOCK,
        Step::Authorize => DECLINED,
        _ => REFUSED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_cascade_to_their_statuses() {
        let refused = |step| Checkout::Refused {
            step,
            detail: String::new(),
        };
        let statuses: Vec<u16> = [
            Checkout::Paid,
            Checkout::Continuing,
            Checkout::Rejected {
                status: OrderStatus::Rejected,
                reason: None,
                detail: None,
            },
            refused(Step::Reserve),
            refused(Step::Authorize),
            Checkout::Unavailable {
                detail: String::new(),
            },
            Checkout::TimedOut {
                detail: String::new(),
            },
        ]
        .iter()
        .map(|outcome| reply(outcome).status)
        .collect();
        assert_eq!(statuses, [201, 202, 422, 409, 402, 503, 504]);
        assert_eq!(
            reply(&refused(Step::Reserve)).problem.unwrap().0,
            "/problems/out-of-stock"
        );
    }

    #[test]
    fn a_replay_answers_from_the_order_s_state() {
        assert_eq!(replay(OrderStatus::Confirmed, None), PAID);
        assert_eq!(replay(OrderStatus::Reserved, None), CONTINUING);
        assert_eq!(
            replay(OrderStatus::Cancelled, Some("reserve_refused")),
            OUT_OF_STOCK
        );
        assert_eq!(
            replay(OrderStatus::Cancelling, Some("authorize_refused")),
            DECLINED
        );
        assert_eq!(
            replay(OrderStatus::Cancelled, Some("validate_deadline_passed")),
            TIMED_OUT
        );
        assert_eq!(
            replay(OrderStatus::Cancelled, Some(crate::DEPENDENCY_FAILED)),
            UNAVAILABLE
        );
        assert_eq!(
            replay(OrderStatus::Cancelling, Some("reserve_unavailable")),
            UNAVAILABLE
        );
        assert_eq!(
            replay(OrderStatus::Cancelled, Some("cancelled_by_customer")),
            CANCELLED
        );
    }
}
