//! Order intake: a new order, its validation job and its idempotency key written in one
//! transaction (the transactional outbox), with the IETF Idempotency-Key draft's answers for a
//! key seen before.

use ledger::{Intake, IntakeOutcome, Ledger, LedgerError, Sql, StoredKey};
use orders_core::{NewOrder, Order, OrderId, Timestamp};
use resilience::{IdempotencyKey, KeyDecision, KeyRecord, decide};

use crate::settings::IntakeSettings;

/// What became of a create request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntakeResult {
    /// A new order was stored; `body` is the JSON answer (replays rebuild it from the order
    /// as accepted). Once the answer is sent (and the doorbell rung), call [`complete`].
    Created {
        /// The order.
        order: Order,
        /// The answer's body.
        body: String,
    },
    /// The key was used before with the same request: the first answer, again.
    Replay {
        /// The order the key created.
        order_id: String,
        /// The first answer's body, rebuilt from the order as it was accepted.
        body: String,
    },
    /// The first request with this key is still being handled.
    InFlight {
        /// When to try again, in milliseconds.
        retry_after_ms: u64,
    },
    /// The key was used before with a different request.
    KeyReused,
    /// Another order already has the client's `order_id` (under another key).
    OrderIdTaken(OrderId),
}

/// Accepts `new` under `key` at `now`: stores it, or answers as the key's history says. The
/// answer is `body_of(&order)`, for a replay built again from the order as first accepted.
pub fn accept<S: Sql>(
    ledger: &Ledger<S>,
    key: &IdempotencyKey,
    new: NewOrder,
    now: Timestamp,
    entropy: [u8; 10],
    settings: &IntakeSettings,
    body_of: impl Fn(&Order) -> String,
) -> Result<IntakeResult, LedgerError> {
    let fingerprint = new.fingerprint();
    let order = new.accept(now, entropy);
    let intake = Intake {
        order: &order,
        key: key.as_str(),
        fingerprint: &fingerprint,
        locked_until: Timestamp(now.millis() + settings.in_flight_lock_ms),
        deadline_at: Timestamp(now.millis() + settings.deadline_ms),
    };
    // At most twice: a key found expired is forgotten, and the request tried once more.
    for _ in 0..2 {
        let stored = match ledger.accept(&intake)? {
            IntakeOutcome::Created => {
                let body = body_of(&order);
                return Ok(IntakeResult::Created { order, body });
            }
            IntakeOutcome::OrderIdTaken => return Ok(IntakeResult::OrderIdTaken(order.id)),
            IntakeOutcome::KeyTaken(stored) => stored,
        };
        match decide(
            Some(&record(&stored)),
            &fingerprint,
            now.millis(),
            settings.key_ttl_ms,
        ) {
            KeyDecision::Proceed => {
                let expired_before = Timestamp(now.millis().saturating_sub(settings.key_ttl_ms));
                ledger.forget_key_if_expired(key.as_str(), expired_before)?;
            }
            KeyDecision::Replay => {
                return Ok(IntakeResult::Replay {
                    order_id: stored.order.id.to_string(),
                    body: body_of(&stored.order),
                });
            }
            KeyDecision::InFlight { retry_after_ms } => {
                return Ok(IntakeResult::InFlight { retry_after_ms });
            }
            KeyDecision::Mismatch => return Ok(IntakeResult::KeyReused),
        }
    }
    // The key expired and was forgotten, yet another request took it again meanwhile: that
    // request is now the first one, and this one is its concurrent duplicate.
    Ok(IntakeResult::InFlight {
        retry_after_ms: 1_000,
    })
}

/// Marks the request under `key` as finished: later duplicates get its answer replayed.
pub fn complete<S: Sql>(ledger: &Ledger<S>, key: &IdempotencyKey) -> Result<(), LedgerError> {
    ledger.complete_key(key.as_str())
}

fn record(stored: &StoredKey) -> KeyRecord {
    KeyRecord {
        fingerprint: stored.fingerprint.clone(),
        created_ms: stored.created_at.millis(),
        completed: stored.completed,
        locked_until_ms: stored.locked_until.millis(),
    }
}
