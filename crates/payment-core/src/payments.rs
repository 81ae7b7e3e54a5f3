//! The payment of each order and the operations on it, each one statement.

use crate::{Amount, CardNumber, DeclineReason, PaymentError, Payments};
use orderly_sql::{RowReader, Sql, SqlValue};
use orders_core::OrderId;
use std::fmt;

/// A payment's id: `pay_` and ten digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PaymentId(String);

impl PaymentId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where an order's payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// The amount is held on the card, not yet charged.
    Authorized,
    /// The authorization was declined; nothing is held.
    Declined,
    /// The amount was charged.
    Captured,
    /// The authorization was released uncharged.
    Voided,
    /// The charge was refunded in full.
    Refunded,
    /// Compensated before anything was authorized (a tombstone): never charged, and no
    /// authorization is accepted any more.
    Cancelled,
}

impl PaymentState {
    const ALL: [PaymentState; 6] = [
        Self::Authorized,
        Self::Declined,
        Self::Captured,
        Self::Voided,
        Self::Refunded,
        Self::Cancelled,
    ];

    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorized => "authorized",
            Self::Declined => "declined",
            Self::Captured => "captured",
            Self::Voided => "voided",
            Self::Refunded => "refunded",
            Self::Cancelled => "cancelled",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == text)
    }
}

impl fmt::Display for PaymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An operation that moves a payment on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Charge an authorization.
    Capture,
    /// Release an authorization uncharged.
    Void,
    /// Give a charge back.
    Refund,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Capture => "capture",
            Self::Void => "void",
            Self::Refund => "refund",
        })
    }
}

/// The answer to an authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorization {
    /// The amount is held on the card.
    Authorized {
        /// The payment's id.
        payment_id: PaymentId,
    },
    /// The card or amount was declined.
    Declined {
        /// Why.
        reason: DeclineReason,
    },
}

/// An order's payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// The order it pays for.
    pub order_id: OrderId,
    /// Where it is.
    pub state: PaymentState,
    /// The amount authorized (or declined); `None` for a tombstone.
    pub amount: Option<Amount>,
    /// The card's last four digits; `None` for a tombstone.
    pub card_last4: Option<String>,
    /// Why it was declined, if it was.
    pub decline: Option<DeclineReason>,
    /// The cents charged: 0, or the whole amount once captured.
    pub captured_cents: u64,
    /// The cents refunded: 0, or everything charged once refunded.
    pub refunded_cents: u64,
}

impl Payment {
    /// What the order is charged now: captured less refunded.
    pub fn charged_cents(&self) -> u64 {
        self.captured_cents.saturating_sub(self.refunded_cents)
    }
}

/// The columns [`read_payment`] expects, in order.
macro_rules! columns {
    () => {
        "id, order_id, state, amount_cents, card_last4, decline_reason, captured_cents, \
        refunded_cents"
    };
}

/// Stores an authorization's outcome for order `?1` (`?2` the state, 'authorized' or
/// 'declined'; `?3` the amount; `?4` the card's last digits; `?5` the decline's code), or
/// returns the order's payment as it is when it has one.
const AUTHORIZE: &str = concat!(
    "INSERT INTO payment_intents
        (order_id, state, amount_cents, card_last4, decline_reason)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (order_id) DO UPDATE SET state = state
    RETURNING ",
    columns!()
);

/// Captures order `?1`'s authorization; returns its payment as it then is.
const CAPTURE: &str = concat!(
    "UPDATE payment_intents SET
        state = CASE state WHEN 'authorized' THEN 'captured' ELSE state END,
        captured_cents = CASE state WHEN 'authorized' THEN amount_cents ELSE captured_cents END
    WHERE order_id = ?1
    RETURNING ",
    columns!()
);

/// Voids order `?1`'s authorization; returns its payment as it then is.
const VOID: &str = concat!(
    "UPDATE payment_intents SET
        state = CASE state WHEN 'authorized' THEN 'voided' ELSE state END
    WHERE order_id = ?1
    RETURNING ",
    columns!()
);

/// Refunds order `?1`'s charge; returns its payment as it then is.
const REFUND: &str = concat!(
    "UPDATE payment_intents SET
        state = CASE state WHEN 'captured' THEN 'refunded' ELSE state END,
        refunded_cents = CASE state WHEN 'captured' THEN captured_cents ELSE refunded_cents END
    WHERE order_id = ?1
    RETURNING ",
    columns!()
);

/// Leaves order `?1` uncharged: voids an authorization, refunds a charge, or records a
/// tombstone when it has no payment; returns its payment as it then is.
const COMPENSATE: &str = concat!(
    "INSERT INTO payment_intents (order_id, state) VALUES (?1, 'cancelled')
    ON CONFLICT (order_id) DO UPDATE SET
        state = CASE state WHEN 'authorized' THEN 'voided' WHEN 'captured' THEN 'refunded'
            ELSE state END,
        refunded_cents = CASE state WHEN 'captured' THEN captured_cents ELSE refunded_cents END
    RETURNING ",
    columns!()
);

impl<S: Sql> Payments<S> {
    /// Authorizes `amount` on `card` for an order, in one statement, or declines it (see
    /// [`crate::PaymentPolicy`]). Idempotent: once an order has a payment, the same amount and
    /// card get the first answer again, even if the policy changed since.
    ///
    /// Errors: [`PaymentError::Conflict`] (the order's payment is for another amount or card
    /// — cards are compared by their last four digits, all that is kept) and
    /// [`PaymentError::Closed`] (it was voided, refunded or compensated: the compensation
    /// wins over a late authorization).
    pub fn authorize(
        &self,
        order_id: &OrderId,
        amount: Amount,
        card: &CardNumber,
    ) -> Result<Authorization, PaymentError> {
        let decline = self.policy.decline(amount, card);
        let state = match decline {
            None => PaymentState::Authorized,
            Some(_) => PaymentState::Declined,
        };
        let found = self.run(
            "authorize a payment",
            AUTHORIZE,
            &[
                SqlValue::text(order_id.as_str()),
                SqlValue::text(state.as_str()),
                SqlValue::unsigned(amount.cents()),
                SqlValue::text(card.last4()),
                SqlValue::optional_text(decline.map(DeclineReason::code)),
            ],
        )?;
        let payment = read_only_row(order_id, &found.rows)?
            .ok_or_else(|| corrupt(order_id, "authorizing returned no row".into()))?;
        match payment.state {
            PaymentState::Voided | PaymentState::Refunded | PaymentState::Cancelled => {
                Err(PaymentError::Closed {
                    order_id: order_id.clone(),
                    state: payment.state,
                })
            }
            _ if payment.amount != Some(amount)
                || payment.card_last4.as_deref() != Some(card.last4()) =>
            {
                Err(PaymentError::Conflict(order_id.clone()))
            }
            PaymentState::Authorized | PaymentState::Captured => Ok(Authorization::Authorized {
                payment_id: payment.id,
            }),
            PaymentState::Declined => Ok(Authorization::Declined {
                reason: payment
                    .decline
                    .ok_or_else(|| corrupt(order_id, "declined without a reason".into()))?,
            }),
        }
    }

    /// Charges the order's authorization, in one statement. Idempotent: a captured payment is
    /// returned as it is, never charged again.
    pub fn capture(&self, order_id: &OrderId) -> Result<Payment, PaymentError> {
        self.transition(
            order_id,
            Operation::Capture,
            CAPTURE,
            PaymentState::Captured,
        )
    }

    /// Releases the order's authorization uncharged, in one statement. Idempotent. A captured
    /// payment cannot be voided (refund it).
    pub fn void(&self, order_id: &OrderId) -> Result<Payment, PaymentError> {
        self.transition(order_id, Operation::Void, VOID, PaymentState::Voided)
    }

    /// Refunds the order's charge in full, in one statement. Idempotent. A payment never
    /// captured cannot be refunded: that is an error, not an implicit void (use
    /// [`Payments::void`], or [`Payments::compensate`], which does whichever applies).
    pub fn refund(&self, order_id: &OrderId) -> Result<Payment, PaymentError> {
        self.transition(order_id, Operation::Refund, REFUND, PaymentState::Refunded)
    }

    /// Leaves the order uncharged, whatever happened, in one statement: voids an
    /// authorization, refunds a charge, leaves a decline or a void or refund as it is, and
    /// when the order has no payment records a tombstone ([`PaymentState::Cancelled`]) so a
    /// late authorization is refused. Idempotent; afterwards `charged_cents()` is 0.
    pub fn compensate(&self, order_id: &OrderId) -> Result<Payment, PaymentError> {
        let found = self.run(
            "compensate a payment",
            COMPENSATE,
            &[SqlValue::text(order_id.as_str())],
        )?;
        read_only_row(order_id, &found.rows)?
            .ok_or_else(|| corrupt(order_id, "compensating returned no row".into()))
    }

    /// The order's payment, if it has one (a tombstone included).
    pub fn payment(&self, order_id: &OrderId) -> Result<Option<Payment>, PaymentError> {
        let found = self.run(
            "read a payment",
            concat!(
                "SELECT ",
                columns!(),
                " FROM payment_intents WHERE order_id = ?1"
            ),
            &[SqlValue::text(order_id.as_str())],
        )?;
        read_only_row(order_id, &found.rows)
    }

    /// Runs `statement`, which moves the order's payment to `target` where `operation` allows
    /// and returns it as it then is: there, it succeeded (now or before); elsewhere, the
    /// operation was illegal.
    fn transition(
        &self,
        order_id: &OrderId,
        operation: Operation,
        statement: &str,
        target: PaymentState,
    ) -> Result<Payment, PaymentError> {
        let what = match operation {
            Operation::Capture => "capture a payment",
            Operation::Void => "void a payment",
            Operation::Refund => "refund a payment",
        };
        let found = self.run(what, statement, &[SqlValue::text(order_id.as_str())])?;
        let payment = read_only_row(order_id, &found.rows)?
            .ok_or_else(|| PaymentError::UnknownOrder(order_id.clone()))?;
        if payment.state == target {
            Ok(payment)
        } else {
            Err(PaymentError::IllegalTransition {
                order_id: order_id.clone(),
                operation,
                state: payment.state,
            })
        }
    }
}

fn corrupt(order_id: &OrderId, detail: String) -> PaymentError {
    PaymentError::Corrupt {
        what: format!("the payment of order {order_id}"),
        detail,
    }
}

/// The order's payment from a statement's rows (at most one: `order_id` is unique).
fn read_only_row(
    order_id: &OrderId,
    rows: &[Vec<SqlValue>],
) -> Result<Option<Payment>, PaymentError> {
    rows.first()
        .map(|row| read_payment(order_id, row))
        .transpose()
}

/// A payment row, in `columns!()` order.
fn read_payment(order_id: &OrderId, row: &[SqlValue]) -> Result<Payment, PaymentError> {
    let corrupt = |detail| corrupt(order_id, detail);
    let mut reader = RowReader::new(row);
    let id = reader.count::<u64>("id").map_err(corrupt)?;
    let stored_order = reader.text("order_id").map_err(corrupt)?;
    if stored_order != order_id.as_str() {
        return Err(corrupt(format!("it belongs to order {stored_order:?}")));
    }
    let state = reader.text("state").map_err(corrupt)?;
    let state =
        PaymentState::parse(&state).ok_or_else(|| corrupt(format!("unknown state {state:?}")))?;
    let amount = reader
        .optional_count::<u64>("amount_cents")
        .map_err(corrupt)?
        .map(|cents| Amount::new(cents).map_err(|error| corrupt(error.to_string())))
        .transpose()?;
    let card_last4 = reader.optional_text("card_last4").map_err(corrupt)?;
    let decline = reader
        .optional_text("decline_reason")
        .map_err(corrupt)?
        .map(|code| {
            DeclineReason::from_code(&code)
                .ok_or_else(|| corrupt(format!("unknown decline reason {code:?}")))
        })
        .transpose()?;
    Ok(Payment {
        id: PaymentId(format!("pay_{id:010}")),
        order_id: order_id.clone(),
        state,
        amount,
        card_last4,
        decline,
        captured_cents: reader.count("captured_cents").map_err(corrupt)?,
        refunded_cents: reader.count("refunded_cents").map_err(corrupt)?,
    })
}
