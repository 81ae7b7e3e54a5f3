//! The ledger's tables, views and triggers, and the versioned migrations that create them
//! (and upgrade the previous release's `orders` table).

use crate::{Ledger, LedgerError, Sql, SqlValue};
use orders_core::Timestamp;

/// The deadline of jobs that have none: those carried over from the previous release, which
/// kept no deadline. (It is `i64::MAX` milliseconds, the largest time SQLite stores.)
pub const NO_DEADLINE: Timestamp = Timestamp(i64::MAX as u64);

/// The statements of `job_results`' trigger as version 1 created them (see `VERSION_1`).
macro_rules! job_results_steps {
    () => {
        "
        INSERT INTO order_events (order_id, at, kind, detail)
        SELECT NEW.order_id, NEW.now, 'lease_expired',
            'taken over from ' || NEW.recovered_from || ', whose lease had expired'
        WHERE NEW.recovered_from IS NOT NULL;

        INSERT INTO order_events (order_id, at, kind, attempt, outcome, latency_ms)
        SELECT NEW.order_id, NEW.now, 'attempt', NEW.attempt, NEW.outcome, NEW.latency_ms
        WHERE NEW.attempt IS NOT NULL;

        -- A decision moves the order only while it is processing ...
        UPDATE orders
        SET status = NEW.status, reason = NEW.reason, detail = NEW.detail,
            updated_at = NEW.now, decided_at = NEW.now
        WHERE NEW.step = 'decide' AND id = NEW.order_id AND status = 'processing';
        -- ... and whether it did (changes() counts the UPDATE) is kept for the caller: 1 moved,
        -- 0 already decided, NULL no such order.
        INSERT INTO apply_outcomes (batch, slot, order_id, status, moved, written_at)
        SELECT NEW.batch, NEW.slot, NEW.order_id, NEW.status,
            CASE
                WHEN changes() > 0 THEN 1
                WHEN EXISTS (SELECT 1 FROM orders WHERE id = NEW.order_id) THEN 0
            END,
            NEW.now
        WHERE NEW.step = 'decide';
        INSERT INTO order_events (order_id, at, kind, outcome, detail)
        SELECT outcome.order_id, NEW.now,
            CASE outcome.moved WHEN 1 THEN outcome.status ELSE 'duplicate_ignored' END,
            CASE outcome.moved WHEN 1 THEN NEW.reason ELSE outcome.status END,
            CASE outcome.moved
                WHEN 1 THEN NEW.detail
                ELSE 'the order was already ' ||
                    (SELECT o.status FROM orders AS o WHERE o.id = NEW.order_id)
            END
        FROM apply_outcomes AS outcome
        WHERE outcome.batch = NEW.batch AND outcome.slot = NEW.slot
            AND outcome.moved IS NOT NULL;
        DELETE FROM jobs
        WHERE NEW.step = 'decide' AND id = NEW.job_id AND lease_owner = NEW.worker;

        -- A deferral by the worker holding the lease is recorded only if it starts a streak:
        -- the job was not put off since its last attempt (or this result counts an attempt,
        -- which ends the old streak). Judged before the job changes.
        INSERT INTO order_events (order_id, at, kind, attempt, detail)
        SELECT NEW.order_id, NEW.now, NEW.event_kind, NEW.attempt, NEW.event_detail
        FROM jobs
        WHERE NEW.step = 'defer' AND id = NEW.job_id AND lease_owner = NEW.worker
            AND (deferred_since IS NULL OR NEW.counts_attempt);

        -- Any other step changes the job only for the worker that holds its lease ...
        UPDATE jobs
        SET state = CASE NEW.step WHEN 'dead_letter' THEN 'dead' ELSE 'queued' END,
            due_at = coalesce(NEW.due_at, due_at),
            attempts = attempts + NEW.counts_attempt,
            poison_count = poison_count + (NEW.step = 'poison'),
            deferrals = deferrals + (NEW.step = 'defer'),
            deferred_since = CASE
                WHEN NEW.step = 'defer' AND NEW.counts_attempt THEN NEW.now
                WHEN NEW.step = 'defer' THEN coalesce(deferred_since, NEW.now)
                WHEN NEW.counts_attempt THEN NULL
                ELSE deferred_since
            END,
            last_error = coalesce(NEW.error, last_error),
            last_attempt_at = CASE WHEN NEW.counts_attempt THEN NEW.now ELSE last_attempt_at END,
            lease_owner = NULL,
            lease_until = NULL,
            previous_owner = NULL
        WHERE NEW.step IN ('retry', 'poison', 'defer', 'dead_letter')
            AND id = NEW.job_id AND lease_owner = NEW.worker;
        -- ... which is then recorded (changes() counts the UPDATE; deferrals were above) ...
        INSERT INTO order_events (order_id, at, kind, attempt, detail)
        SELECT NEW.order_id, NEW.now, NEW.event_kind, NEW.attempt, NEW.event_detail
        WHERE NEW.step IN ('retry', 'poison', 'dead_letter') AND changes() > 0;
        -- ... and a dead job is entered in the queue (changes() counts the event just
        -- written, which was written exactly when the job changed).
        INSERT INTO dead_letters (source, job_id, order_id, reason, attempts, created_at)
        SELECT 'job', id, order_id, NEW.error, attempts, NEW.now
        FROM jobs
        WHERE NEW.step = 'dead_letter' AND changes() > 0 AND id = NEW.job_id;
    "
    };
}

/// Version 1: every table, view and trigger.
pub(crate) const VERSION_1: &[&str] = &[
    "CREATE TABLE ledger_schema (version INTEGER PRIMARY KEY)",
    // Orders, in the order they were accepted (`seq`, the rowid, which VACUUM keeps because it
    // is declared). `items` is `LineItem::to_json`; `reason` a code, `detail` its explanation.
    // The `key_` columns hold the idempotency key the order was accepted under, while it is
    // kept: all NULL for orders carried over from the previous release and once the key is
    // forgotten or pruned.
    "CREATE TABLE orders (
        seq              INTEGER PRIMARY KEY,
        id               TEXT NOT NULL UNIQUE,
        customer         TEXT,
        items            TEXT NOT NULL,
        status           TEXT NOT NULL,
        reason           TEXT,
        detail           TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL,
        decided_at       INTEGER,
        idempotency_key  TEXT,
        key_fingerprint  TEXT,
        key_completed    INTEGER,
        key_locked_until INTEGER
    )",
    // Unique while kept; forgotten keys leave the index, so it holds only live keys.
    "CREATE UNIQUE INDEX orders_by_idempotency_key ON orders (idempotency_key)
    WHERE idempotency_key IS NOT NULL",
    // (status, seq): SQLite appends the rowid, so pages by status follow acceptance order.
    "CREATE INDEX orders_by_status_and_seq ON orders (status)",
    // Named positions in `orders`: `keys_pruned_through`, the highest `seq` key pruning has
    // passed; `legacy_orders_through`, the highest `seq` carried over from the previous
    // release (0 when none was).
    "CREATE TABLE ledger_marks (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID",
    "INSERT INTO ledger_marks (name, value)
    VALUES ('keys_pruned_through', 0), ('legacy_orders_through', 0)",
    // The outbox: one row per piece of work still to do. A lease is held while
    // `lease_until` is in the future; `previous_owner` is the holder of an expired lease a
    // claim took the job over from, until the job's results are applied (a release keeps it,
    // so the next claim reports it; NULL when the job was free). A dead job ('dead') waits for
    // a replay or its deadline.
    "CREATE TABLE jobs (
        id              INTEGER PRIMARY KEY,
        kind            TEXT NOT NULL,
        order_id        TEXT NOT NULL,
        state           TEXT NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'dead')),
        due_at          INTEGER NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        poison_count    INTEGER NOT NULL DEFAULT 0,
        deferrals       INTEGER NOT NULL DEFAULT 0,
        deferred_since  INTEGER,
        lease_owner     TEXT,
        lease_until     INTEGER,
        previous_owner  TEXT,
        last_error      TEXT,
        last_attempt_at INTEGER,
        created_at      INTEGER NOT NULL,
        deadline_at     INTEGER NOT NULL,
        UNIQUE (kind, order_id)
    )",
    "CREATE INDEX jobs_due ON jobs (kind, state, due_at)",
    "CREATE TABLE order_events (
        seq        INTEGER PRIMARY KEY,
        order_id   TEXT NOT NULL,
        at         INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        attempt    INTEGER,
        outcome    TEXT,
        latency_ms INTEGER,
        detail     TEXT
    )",
    "CREATE INDEX order_events_by_order ON order_events (order_id, seq)",
    "CREATE TABLE dead_letters (
        id          INTEGER PRIMARY KEY,
        source      TEXT NOT NULL CHECK (source IN ('job', 'message')),
        job_id      INTEGER,
        order_id    TEXT,
        channel     TEXT,
        payload     BLOB,
        reason      TEXT NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0,
        created_at  INTEGER NOT NULL,
        replayed_at INTEGER
    )",
    "CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL",
    // What each decision of an `apply` call did, kept from the trigger's write to the caller's
    // read-back (which deletes it). The primary key makes a batch id unique while its rows
    // exist: a second batch with the same id fails on its first decision instead of mixing.
    "CREATE TABLE apply_outcomes (
        batch      TEXT NOT NULL,
        slot       INTEGER NOT NULL,
        order_id   TEXT NOT NULL,
        status     TEXT NOT NULL,
        moved      INTEGER,
        written_at INTEGER NOT NULL,
        PRIMARY KEY (batch, slot)
    ) WITHOUT ROWID",
    // Intake: one INSERT stores the order with its idempotency key, and its job, or nothing.
    // Its `accepted` event is not stored: reads derive it from the order.
    "CREATE VIEW order_intake (
        key, fingerprint, locked_until, order_id, customer, items, created_at, deadline_at
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    "CREATE TRIGGER order_intake_insert INSTEAD OF INSERT ON order_intake
    BEGIN
        INSERT INTO orders (id, customer, items, status, created_at, updated_at,
            idempotency_key, key_fingerprint, key_completed, key_locked_until)
        VALUES (NEW.order_id, NEW.customer, NEW.items, 'processing', NEW.created_at,
            NEW.created_at, NEW.key, NEW.fingerprint, 0, NEW.locked_until);
        INSERT INTO jobs (kind, order_id, due_at, created_at, deadline_at)
        VALUES ('validate', NEW.order_id, NEW.created_at, NEW.created_at, NEW.deadline_at);
    END",
    // Key pruning: one INSERT clears the keys of the orders after `after_seq` up to
    // `through_seq` (all expired: the caller chose them) and moves the mark to `through_seq`.
    // `cleared` is only returned to the caller.
    "CREATE VIEW key_pruning (after_seq, through_seq, cleared)
    AS SELECT NULL, NULL, NULL WHERE 0",
    "CREATE TRIGGER key_pruning_insert INSTEAD OF INSERT ON key_pruning
    BEGIN
        UPDATE orders
        SET idempotency_key = NULL, key_fingerprint = NULL, key_completed = NULL,
            key_locked_until = NULL
        WHERE seq > NEW.after_seq AND seq <= NEW.through_seq AND idempotency_key IS NOT NULL;
        UPDATE ledger_marks SET value = NEW.through_seq WHERE name = 'keys_pruned_through';
    END",
    // Workers' results: one row per job (see `worker.rs` for the columns' meaning). The
    // trigger relies on `changes()`, which inside a trigger counts the rows changed by the
    // trigger's previous statement. A deferral is recorded only when it starts a deferral
    // streak (as `defer_due`'s are). The worker that changes a job it holds has reported the
    // owner its claim took the job over from, so `previous_owner` is cleared then.
    "CREATE VIEW job_results (
        batch, worker, now, slot, job_id, order_id, attempt, outcome, latency_ms,
        recovered_from, step, status, reason, detail, due_at, error, counts_attempt,
        event_kind, event_detail
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER job_results_apply INSTEAD OF INSERT ON job_results BEGIN",
        job_results_steps!(),
        "END"
    ),
    // Replaying a job's dead letter (marking it replayed) requeues the job, atomically. The
    // replayed job gets its original retry window again, counted from the replay.
    "CREATE TRIGGER dead_letter_replayed AFTER UPDATE OF replayed_at ON dead_letters
    WHEN OLD.replayed_at IS NULL AND NEW.replayed_at IS NOT NULL AND NEW.source = 'job'
    BEGIN
        UPDATE jobs
        SET state = 'queued', due_at = NEW.replayed_at, poison_count = 0,
            deferred_since = NULL, lease_owner = NULL, lease_until = NULL,
            deadline_at = CASE
                WHEN deadline_at = 9223372036854775807 THEN deadline_at
                ELSE max(deadline_at, NEW.replayed_at + (deadline_at - created_at))
            END
        WHERE id = NEW.job_id AND state = 'dead';
        INSERT INTO order_events (order_id, at, kind, detail)
        SELECT NEW.order_id, NEW.replayed_at, 'replayed', 'from dead letter ' || NEW.id
        WHERE changes() > 0;
    END",
    // Clearing everything in one statement.
    "CREATE VIEW ledger_reset (requested) AS SELECT NULL WHERE 0",
    "CREATE TRIGGER ledger_reset_insert INSTEAD OF INSERT ON ledger_reset
    BEGIN
        DELETE FROM order_events;
        DELETE FROM jobs;
        DELETE FROM orders;
        DELETE FROM dead_letters;
        DELETE FROM apply_outcomes;
        UPDATE ledger_marks SET value = 0;
    END",
];

/// Version 2: fulfilment. A decision that validates an order queues its follow-up job (the
/// fulfilment saga's) in the same statement; each saga's state lives in `sagas`; customers
/// cancel through `cancel_requests`; reset clears sagas too.
pub(crate) const VERSION_2: &[&str] = &[
    // One row per order whose fulfilment began (or was cancelled): `state` is the saga as
    // JSON (the `saga` crate's), NULL until its first step; `cancel_requested` the customer's
    // note once a cancellation was asked for.
    "CREATE TABLE sagas (
        order_id         TEXT PRIMARY KEY,
        state            TEXT,
        cancel_requested TEXT,
        created_at       INTEGER NOT NULL,
        updated_at       INTEGER NOT NULL
    ) WITHOUT ROWID",
    "DROP TRIGGER job_results_apply",
    "DROP VIEW job_results",
    // As in version 1, plus `follow_up`: the kind of job a decision that moves the order
    // queues next (due at once, without a deadline of its own: its worker keeps the time).
    "CREATE VIEW job_results (
        batch, worker, now, slot, job_id, order_id, attempt, outcome, latency_ms,
        recovered_from, step, status, reason, detail, due_at, error, counts_attempt,
        event_kind, event_detail, follow_up
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER job_results_apply INSTEAD OF INSERT ON job_results BEGIN",
        job_results_steps!(),
        "
        -- A decision that moved the order queues its follow-up job.
        INSERT OR IGNORE INTO jobs (kind, order_id, due_at, created_at, deadline_at)
        SELECT NEW.follow_up, outcome.order_id, NEW.now, NEW.now, 9223372036854775807
        FROM apply_outcomes AS outcome
        WHERE NEW.step = 'decide' AND NEW.follow_up IS NOT NULL
            AND outcome.batch = NEW.batch AND outcome.slot = NEW.slot AND outcome.moved = 1;
        END"
    ),
    // A saga's progress, written by the worker holding its job: the saga's new state, the
    // order's status (and reason, once it has one), one event, and the job: finished (deleted)
    // or, after a step that was done, with its attempts counted afresh for the next step.
    "CREATE VIEW saga_progress (
        worker, now, job_id, order_id, state, status, reason, detail, event_kind,
        event_outcome, event_detail, step_done, finished
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    WHERE 0",
    "CREATE TRIGGER saga_progress_insert INSTEAD OF INSERT ON saga_progress
    WHEN EXISTS (SELECT 1 FROM jobs WHERE id = NEW.job_id AND lease_owner = NEW.worker)
    BEGIN
        INSERT INTO sagas (order_id, state, created_at, updated_at)
        VALUES (NEW.order_id, NEW.state, NEW.now, NEW.now)
        ON CONFLICT (order_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at;
        UPDATE orders
        SET status = NEW.status, reason = coalesce(NEW.reason, reason),
            detail = coalesce(NEW.detail, detail), updated_at = NEW.now
        WHERE id = NEW.order_id;
        INSERT INTO order_events (order_id, at, kind, outcome, detail)
        VALUES (NEW.order_id, NEW.now, NEW.event_kind, NEW.event_outcome, NEW.event_detail);
        UPDATE jobs
        SET attempts = 0, poison_count = 0, deferred_since = NULL, last_error = NULL,
            previous_owner = NULL
        WHERE id = NEW.job_id AND NEW.step_done AND NOT NEW.finished;
        DELETE FROM jobs WHERE id = NEW.job_id AND NEW.finished;
    END",
    // A customer's cancellation, in one statement. An order still being validated is
    // cancelled at once (its validation job goes; a late decision finds it decided). An order
    // in fulfilment that is not shipped yet gets the request noted on its saga (the first note
    // wins) and its job due at once: the saga's worker undoes what was done. Anything else is
    // left as it is; the caller reads the order back to see which case it was.
    "CREATE VIEW cancel_requests (order_id, now, detail)
    AS SELECT NULL, NULL, NULL WHERE 0",
    "CREATE TRIGGER cancel_requests_insert INSTEAD OF INSERT ON cancel_requests
    BEGIN
        DELETE FROM jobs
        WHERE kind = 'validate' AND order_id = NEW.order_id
            AND EXISTS (SELECT 1 FROM orders WHERE id = NEW.order_id AND status = 'processing');
        UPDATE orders
        SET status = 'cancelled', reason = 'cancelled_by_customer', detail = NEW.detail,
            updated_at = NEW.now, decided_at = NEW.now
        WHERE id = NEW.order_id AND status = 'processing';
        INSERT INTO order_events (order_id, at, kind, outcome, detail)
        SELECT NEW.order_id, NEW.now, 'cancelled', 'cancelled_by_customer', NEW.detail
        WHERE changes() > 0;

        INSERT INTO sagas (order_id, cancel_requested, created_at, updated_at)
        SELECT NEW.order_id, NEW.detail, NEW.now, NEW.now
        FROM orders WHERE id = NEW.order_id AND status IN ('validated', 'reserved', 'paid')
        ON CONFLICT (order_id) DO UPDATE
        SET cancel_requested = excluded.cancel_requested, updated_at = excluded.updated_at
        WHERE cancel_requested IS NULL;
        INSERT INTO order_events (order_id, at, kind, detail)
        SELECT NEW.order_id, NEW.now, 'cancel_requested', NEW.detail WHERE changes() > 0;
        UPDATE jobs SET due_at = min(due_at, NEW.now)
        WHERE kind = 'fulfil' AND order_id = NEW.order_id AND state = 'queued'
            AND EXISTS (SELECT 1 FROM sagas
                WHERE order_id = NEW.order_id AND cancel_requested IS NOT NULL);
    END",
    "DROP TRIGGER ledger_reset_insert",
    "CREATE TRIGGER ledger_reset_insert INSTEAD OF INSERT ON ledger_reset
    BEGIN
        DELETE FROM order_events;
        DELETE FROM jobs;
        DELETE FROM orders;
        DELETE FROM dead_letters;
        DELETE FROM apply_outcomes;
        DELETE FROM sagas;
        UPDATE ledger_marks SET value = 0;
    END",
];

/// Version 3: the outbox of final orders. Whatever statement makes an order `confirmed` or
/// `cancelled` (a saga's last step, a customer's cancellation) also enters it in
/// `final_orders`, through a trigger on `orders`, so services that follow orders to their end
/// (notifications) read a cursor's worth of rows instead of scanning every order. Orders
/// already final when the migration runs are entered too. Reset clears it.
const VERSION_3: &[&str] = &[
    // AUTOINCREMENT: a `seq` is never handed out twice, even after a reset emptied the table,
    // so a reader's cursor never skips a later order.
    "CREATE TABLE final_orders (
        seq      INTEGER PRIMARY KEY AUTOINCREMENT,
        order_id TEXT NOT NULL UNIQUE,
        status   TEXT NOT NULL,
        at       INTEGER NOT NULL
    )",
    "INSERT INTO final_orders (order_id, status, at)
    SELECT id, status, updated_at FROM orders
    WHERE status IN ('confirmed', 'cancelled') ORDER BY updated_at, seq",
    "CREATE TRIGGER orders_final AFTER UPDATE OF status ON orders
    WHEN NEW.status IN ('confirmed', 'cancelled') AND OLD.status IS NOT NEW.status
    BEGIN
        INSERT OR IGNORE INTO final_orders (order_id, status, at)
        VALUES (NEW.id, NEW.status, NEW.updated_at);
    END",
    "DROP TRIGGER ledger_reset_insert",
    "CREATE TRIGGER ledger_reset_insert INSTEAD OF INSERT ON ledger_reset
    BEGIN
        DELETE FROM order_events;
        DELETE FROM jobs;
        DELETE FROM orders;
        DELETE FROM dead_letters;
        DELETE FROM apply_outcomes;
        DELETE FROM sagas;
        DELETE FROM final_orders;
        UPDATE ledger_marks SET value = 0;
    END",
];

/// Version 4: the synchronous path holds its order's jobs from the moment they exist. Intake
/// can create the validation job already leased (`lease_owner`, `lease_until`; NULL for the
/// asynchronous path), and a decision can queue its follow-up job leased to the deciding
/// worker until `follow_up_lease_until`, so no worker claims either in between.
const VERSION_4: &[&str] = &[
    "DROP TRIGGER order_intake_insert",
    "DROP VIEW order_intake",
    "CREATE VIEW order_intake (
        key, fingerprint, locked_until, order_id, customer, items, created_at, deadline_at,
        lease_owner, lease_until
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    "CREATE TRIGGER order_intake_insert INSTEAD OF INSERT ON order_intake
    BEGIN
        INSERT INTO orders (id, customer, items, status, created_at, updated_at,
            idempotency_key, key_fingerprint, key_completed, key_locked_until)
        VALUES (NEW.order_id, NEW.customer, NEW.items, 'processing', NEW.created_at,
            NEW.created_at, NEW.key, NEW.fingerprint, 0, NEW.locked_until);
        INSERT INTO jobs (kind, order_id, due_at, created_at, deadline_at, lease_owner,
            lease_until)
        VALUES ('validate', NEW.order_id, NEW.created_at, NEW.created_at, NEW.deadline_at,
            NEW.lease_owner, NEW.lease_until);
    END",
    "DROP TRIGGER job_results_apply",
    "DROP VIEW job_results",
    "CREATE VIEW job_results (
        batch, worker, now, slot, job_id, order_id, attempt, outcome, latency_ms,
        recovered_from, step, status, reason, detail, due_at, error, counts_attempt,
        event_kind, event_detail, follow_up, follow_up_lease_until
    ) AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0",
    concat!(
        "CREATE TRIGGER job_results_apply INSTEAD OF INSERT ON job_results BEGIN",
        job_results_steps!(),
        "
        -- A decision that moved the order queues its follow-up job, held by the deciding
        -- worker when it asks.
        INSERT OR IGNORE INTO jobs (kind, order_id, due_at, created_at, deadline_at,
            lease_owner, lease_until)
        SELECT NEW.follow_up, outcome.order_id, NEW.now, NEW.now, 9223372036854775807,
            CASE WHEN NEW.follow_up_lease_until IS NOT NULL THEN NEW.worker END,
            NEW.follow_up_lease_until
        FROM apply_outcomes AS outcome
        WHERE NEW.step = 'decide' AND NEW.follow_up IS NOT NULL
            AND outcome.batch = NEW.batch AND outcome.slot = NEW.slot AND outcome.moved = 1;
        END"
    ),
];

/// Every version's statements: `MIGRATIONS[n]` takes the schema from version `n` to `n + 1`.
const MIGRATIONS: [&[&str]; 4] = [VERSION_1, VERSION_2, VERSION_3, VERSION_4];

/// The schema's current version.
#[cfg(test)]
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Moves the previous release's `orders` table aside before version 1 is created.
const SET_LEGACY_ORDERS_ASIDE: &str = "ALTER TABLE orders RENAME TO legacy_orders";

/// Copies the previous release's orders into version 1, then drops them: every order kept, in
/// the order they were created, one line item each, without an idempotency key, `pending`
/// becoming `processing` with a validation job due at once. The marks then say which orders
/// were carried over, and key pruning starts after them.
const UPGRADE_LEGACY_ORDERS: &[&str] = &[
    "INSERT INTO orders
        (id, customer, items, status, reason, detail, created_at, updated_at, decided_at)
    SELECT id, NULL, json_array(json_object('product', product, 'quantity', quantity)),
        CASE status WHEN 'pending' THEN 'processing' ELSE status END,
        reason, NULL, created_at, updated_at,
        CASE status WHEN 'pending' THEN NULL ELSE updated_at END
    FROM legacy_orders ORDER BY created_at, id",
    "INSERT INTO jobs (kind, order_id, due_at, created_at, deadline_at)
    SELECT 'validate', id, created_at, created_at, 9223372036854775807
    FROM legacy_orders WHERE status = 'pending'",
    "UPDATE ledger_marks SET value = (SELECT coalesce(max(seq), 0) FROM orders)
    WHERE name IN ('keys_pruned_through', 'legacy_orders_through')",
    "DROP TABLE legacy_orders",
];

impl<S: Sql> Ledger<S> {
    /// Creates the schema or brings it up to date, upgrading the previous release's `orders`
    /// table if that is what it finds. Idempotent, and safe when instances race: it runs in
    /// one `BEGIN IMMEDIATE` transaction, so the first instance migrates and the others find
    /// the work done. Operations call it themselves when they find the schema missing.
    pub fn migrate(&self) -> Result<(), LedgerError> {
        self.migration_step("BEGIN IMMEDIATE")?;
        let outcome = self
            .migrate_in_transaction()
            .and_then(|()| self.migration_step("COMMIT"));
        if outcome.is_err() {
            // The transaction may still be open; if SQLite already rolled it back, this
            // fails harmlessly.
            let _ = self.sql.execute("ROLLBACK", &[]);
        }
        outcome
    }

    fn migrate_in_transaction(&self) -> Result<(), LedgerError> {
        let (version, has_orders) = self.schema_version()?;
        let legacy = version == 0 && has_orders;
        if legacy {
            self.migration_step(SET_LEGACY_ORDERS_ASIDE)?;
        }
        for (from, statements) in MIGRATIONS.iter().enumerate().skip(version) {
            for statement in *statements {
                self.migration_step(statement)?;
            }
            if legacy && from == 0 {
                for statement in UPGRADE_LEGACY_ORDERS {
                    self.migration_step(statement)?;
                }
            }
            self.sql
                .execute(
                    "INSERT INTO ledger_schema (version) VALUES (?1)",
                    &[SqlValue::Integer(from as i64 + 1)],
                )
                .map_err(migration_failed)?;
        }
        Ok(())
    }

    /// The schema's version (0 before the first migration), and whether an `orders` table
    /// exists.
    fn schema_version(&self) -> Result<(usize, bool), LedgerError> {
        let found = self
            .sql
            .execute(
                "SELECT
                    EXISTS (SELECT 1 FROM sqlite_schema
                        WHERE type = 'table' AND name = 'ledger_schema'),
                    EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'orders')",
                &[],
            )
            .map_err(migration_failed)?;
        let [
            SqlValue::Integer(has_versions),
            SqlValue::Integer(has_orders),
        ] = found.rows.first().map(Vec::as_slice).unwrap_or_default()
        else {
            return Err(LedgerError::corrupt(
                "the schema catalogue",
                "its query returned no flags",
            ));
        };
        if *has_versions == 0 {
            return Ok((0, *has_orders != 0));
        }
        let versions = self
            .sql
            .execute("SELECT coalesce(max(version), 0) FROM ledger_schema", &[])
            .map_err(migration_failed)?;
        match versions.rows.first().map(Vec::as_slice) {
            Some([SqlValue::Integer(version)]) => usize::try_from(*version)
                .map(|version| (version, *has_orders != 0))
                .map_err(|_| LedgerError::corrupt("ledger_schema", "its version is negative")),
            _ => Err(LedgerError::corrupt(
                "ledger_schema",
                "its version is not an integer",
            )),
        }
    }

    fn migration_step(&self, statement: &str) -> Result<(), LedgerError> {
        self.sql
            .execute(statement, &[])
            .map(drop)
            .map_err(migration_failed)
    }
}

fn migration_failed(source: crate::SqlError) -> LedgerError {
    LedgerError::Sql {
        operation: "migrate its schema",
        source,
    }
}
