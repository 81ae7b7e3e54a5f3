//! Order intake: a new order, its validation job and its idempotency key written in one
//! transaction (the transactional outbox), with the IETF Idempotency-Key draft's answers for a
//! key seen before.

use ledger::{Intake, IntakeOutcome, JobHold, Ledger, LedgerError, Sql, StoredKey};
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
/// `hold`: who holds the new order's validation job from the start (the synchronous path),
/// or `None`.
#[allow(clippy::too_many_arguments)]
pub fn accept<S: Sql>(
    ledger: &Ledger<S>,
    key: &IdempotencyKey,
    new: NewOrder,
    now: Timestamp,
    entropy: [u8; 10],
    settings: &IntakeSettings,
    hold: Option<JobHold<'_>>,
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
        hold,
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

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::RusqliteSql;

    const TTL_MS: u64 = 60_000;

    fn settings() -> IntakeSettings {
        IntakeSettings {
            key_ttl_ms: TTL_MS,
            in_flight_lock_ms: 10_000,
            deadline_ms: 86_400_000,
        }
    }

    fn ledger(dir: &tempfile::TempDir) -> Ledger<RusqliteSql> {
        Ledger::new(RusqliteSql::open(dir.path().join("ledger.db")).unwrap())
    }

    fn order(body: &str) -> NewOrder {
        NewOrder::parse(body.as_bytes()).unwrap()
    }

    fn submit(ledger: &Ledger<RusqliteSql>, key: &str, body: &str, now: u64) -> IntakeResult {
        let key = IdempotencyKey::parse(key).unwrap();
        accept(
            ledger,
            &key,
            order(body),
            Timestamp(now),
            [7; 10],
            &settings(),
            None,
            |order| serde_json::to_string(order).unwrap(),
        )
        .unwrap()
    }

    const BODY: &str = r#"{"product": "Medicine A", "quantity": 2}"#;

    #[test]
    fn a_key_is_in_flight_until_completed_then_its_answer_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let IntakeResult::Created { order, body } = submit(&ledger, "k", BODY, 1_000) else {
            panic!("the first request creates the order");
        };
        // Between the order's commit and the key's completion: a duplicate is told to wait.
        assert_eq!(
            submit(&ledger, "k", BODY, 1_001),
            IntakeResult::InFlight {
                retry_after_ms: 9_999
            }
        );
        complete(&ledger, &IdempotencyKey::parse("k").unwrap()).unwrap();
        assert_eq!(
            submit(&ledger, "k", BODY, 1_002),
            IntakeResult::Replay {
                order_id: order.id.to_string(),
                body
            }
        );
        assert_eq!(
            submit(
                &ledger,
                "k",
                r#"{"product": "Medicine A", "quantity": 3}"#,
                1_003
            ),
            IntakeResult::KeyReused
        );
    }

    #[test]
    fn a_key_left_incomplete_by_a_crash_is_replayed_once_its_lock_passes() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let IntakeResult::Created { body, .. } = submit(&ledger, "k", BODY, 1_000) else {
            panic!("created");
        };
        assert!(matches!(
            submit(&ledger, "k", BODY, 10_999),
            IntakeResult::InFlight { .. }
        ));
        assert!(matches!(
            submit(&ledger, "k", BODY, 11_000),
            IntakeResult::Replay { body: replayed, .. } if replayed == body
        ));
    }

    #[test]
    fn an_expired_key_is_forgotten_and_the_request_is_new_again() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let IntakeResult::Created { order: first, .. } = submit(&ledger, "k", BODY, 1_000) else {
            panic!("created");
        };
        complete(&ledger, &IdempotencyKey::parse("k").unwrap()).unwrap();
        let IntakeResult::Created { order: second, .. } =
            submit(&ledger, "k", BODY, 1_000 + TTL_MS + 1)
        else {
            panic!("an expired key starts over");
        };
        assert_ne!(first.id, second.id);
    }

    #[test]
    fn an_order_id_taken_under_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger(&dir);
        let body = r#"{"order_id": "o-1", "product": "Medicine A", "quantity": 2}"#;
        assert!(matches!(
            submit(&ledger, "k1", body, 1_000),
            IntakeResult::Created { .. }
        ));
        assert_eq!(
            submit(&ledger, "k2", body, 1_001),
            IntakeResult::OrderIdTaken(OrderId::parse("o-1").unwrap())
        );
    }
}
