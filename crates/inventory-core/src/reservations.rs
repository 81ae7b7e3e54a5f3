//! Reservations by order id: reserve (all lines or none), release, commit.

use crate::{Inventory, InventoryError, Units};
use orderly_sql::{RowReader, Sql, SqlValue};
use orders_core::{LineItem, OrderId, ProductName};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// Where an order's reservation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReservationState {
    /// Its units are held for the order.
    Reserved,
    /// Its units went back to the shelf (or it was released before it reserved anything).
    Released,
    /// Its units shipped.
    Committed,
}

impl ReservationState {
    /// The state as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Released => "released",
            Self::Committed => "committed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Reserved, Self::Released, Self::Committed]
            .into_iter()
            .find(|state| state.as_str() == text)
    }
}

/// One SKU an order holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedLine {
    /// The product, as the catalogue spells it.
    pub sku: ProductName,
    /// How many units (the order's lines for this SKU, added up).
    pub units: Units,
}

/// An order's reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The order.
    pub order_id: OrderId,
    /// Where it is.
    pub state: ReservationState,
    /// What it holds (or held), one line per SKU, by SKU ignoring case; empty when the order
    /// was released before it reserved (a tombstone).
    pub lines: Vec<ReservedLine>,
}

/// A line the shelf cannot fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    /// The product, as the catalogue spells it.
    pub sku: ProductName,
    /// The units the order asked for.
    pub requested: Units,
    /// The units available when it asked.
    pub available: u64,
}

/// What a reserve did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReserveOutcome {
    /// The order holds its lines: reserved now, or by an earlier identical call (the state
    /// then says whether they were committed since).
    Reserved(Reservation),
    /// A line cannot be filled; nothing was taken. (The first such line, in the order's order.)
    OutOfStock(Shortage),
}

/// One line of the JSON the statements exchange.
#[derive(Debug, Deserialize)]
struct StoredLine {
    sku: String,
    units: u32,
}

/// Reserves `?2`'s lines (JSON `[{"sku", "units"}]`, one per SKU) for order `?1`, deciding the
/// outcome from what it sees: 'released' (refused: a release came first), 'existing' (the
/// same lines are held already), 'conflict' (other lines are), 'unknown' (`sku` is not
/// stocked), 'short' (`sku` lacks units), or 'reserved' (the view's trigger takes the units).
/// `lines` is what the order holds, or will.
const RESERVE: &str = "WITH
        request (position, sku, units) AS (
            SELECT key, json_extract(value, '$.sku'), json_extract(value, '$.units')
            FROM json_each(?2)
        ),
        matched (position, asked, sku, units, available) AS (
            SELECT r.position, r.sku, s.sku, r.units, s.available
            FROM request AS r LEFT JOIN inventory_stock AS s ON s.sku = r.sku COLLATE NOCASE
        ),
        kept (sku, units) AS (
            SELECT sku, units FROM inventory_reservation_lines WHERE order_id = ?1
        ),
        unknown (sku) AS (
            SELECT asked FROM matched WHERE sku IS NULL ORDER BY position LIMIT 1
        ),
        short (sku, requested, available) AS (
            SELECT sku, units, available FROM matched
            WHERE available < units ORDER BY position LIMIT 1
        )
    INSERT INTO inventory_reserve (order_id, outcome, state, lines, sku, requested, available)
    SELECT ?1,
        CASE
            WHEN state = 'released' THEN 'released'
            WHEN state IS NOT NULL THEN
                CASE WHEN (SELECT count(*) FROM kept) = (SELECT count(*) FROM request)
                    AND NOT EXISTS (SELECT 1 FROM request AS r WHERE NOT EXISTS (
                        SELECT 1 FROM kept AS k
                        WHERE k.sku = r.sku COLLATE NOCASE AND k.units = r.units))
                THEN 'existing' ELSE 'conflict' END
            WHEN EXISTS (SELECT 1 FROM unknown) THEN 'unknown'
            WHEN EXISTS (SELECT 1 FROM short) THEN 'short'
            ELSE 'reserved'
        END,
        state,
        CASE WHEN state IS NULL
            THEN (SELECT json_group_array(json_object('sku', sku, 'units', units)) FROM matched)
            ELSE (SELECT json_group_array(json_object('sku', sku, 'units', units)) FROM kept)
        END,
        coalesce((SELECT sku FROM unknown), (SELECT sku FROM short)),
        (SELECT requested FROM short),
        (SELECT available FROM short)
    FROM (SELECT (SELECT state FROM inventory_reservations WHERE order_id = ?1) AS state)
    RETURNING outcome, state, lines, sku, requested, available";

/// The order `?1`'s state (NULL when it has no row) and lines, as JSON.
macro_rules! state_and_lines {
    () => {
        "(SELECT state FROM inventory_reservations WHERE order_id = ?1) AS state,
        (SELECT json_group_array(json_object('sku', sku, 'units', units))
            FROM inventory_reservation_lines WHERE order_id = ?1) AS lines"
    };
}

/// Releases order `?1`: 'release' (its units go back), 'tombstone' (it never reserved: the
/// release is recorded), 'released' (already), or 'committed' (refused).
const RELEASE: &str = concat!(
    "INSERT INTO inventory_release (order_id, outcome, lines)
    SELECT ?1,
        CASE state WHEN 'reserved' THEN 'release' WHEN 'released' THEN 'released'
            WHEN 'committed' THEN 'committed' ELSE 'tombstone' END,
        lines
    FROM (SELECT ",
    state_and_lines!(),
    ")
    RETURNING outcome, lines"
);

/// Commits order `?1`: 'commit' (its units ship), 'committed' (already), 'released' (refused),
/// or 'unknown' (no reservation).
const COMMIT: &str = concat!(
    "INSERT INTO inventory_commit (order_id, outcome, lines)
    SELECT ?1,
        CASE state WHEN 'reserved' THEN 'commit' WHEN 'committed' THEN 'committed'
            WHEN 'released' THEN 'released' ELSE 'unknown' END,
        lines
    FROM (SELECT ",
    state_and_lines!(),
    ")
    RETURNING outcome, lines"
);

impl<S: Sql> Inventory<S> {
    /// Reserves an order's lines, all or none, in one statement. Lines naming the same SKU
    /// (ignoring case) are added up. Idempotent: when the order already holds the same lines,
    /// returns its reservation (committed, perhaps) and takes nothing.
    ///
    /// Errors: [`InventoryError::InvalidLines`] (none, or more than an order may have),
    /// [`InventoryError::UnknownSku`], [`InventoryError::LinesConflict`] (the order holds
    /// other lines), [`InventoryError::Released`] (the order was released, perhaps before
    /// this reserve arrived: the compensation wins).
    pub fn reserve(
        &self,
        order_id: &OrderId,
        lines: &[LineItem],
    ) -> Result<ReserveOutcome, InventoryError> {
        let request = merge(lines)?;
        let parameters = [SqlValue::text(order_id.as_str()), SqlValue::Text(request)];
        let mut found = self.run("reserve stock", RESERVE, &parameters)?;
        if outcome_of(&found.rows) == Some("unknown") {
            // Seed and ask again, even if another connection seeded first (it may have done so
            // between the two statements): only a product the catalogue lacks stays unknown.
            self.seed()?;
            found = self.run("reserve stock", RESERVE, &parameters)?;
        }
        let what = || format!("the reservation of order {order_id}");
        let row = found
            .rows
            .first()
            .ok_or_else(|| InventoryError::corrupt(what(), "reserving returned no outcome"))?;
        let mut reader = RowReader::new(row);
        let corrupt = |detail| InventoryError::corrupt(what(), detail);
        let outcome = reader.text("outcome").map_err(corrupt)?;
        let state = reader.optional_text("state").map_err(corrupt)?;
        let lines = reader.text("lines").map_err(corrupt)?;
        let sku = reader.optional_text("sku").map_err(corrupt)?;
        let requested = reader.optional_count::<u32>("requested").map_err(corrupt)?;
        let available = reader.optional_count::<u64>("available").map_err(corrupt)?;
        let reservation = |state| -> Result<ReserveOutcome, InventoryError> {
            Ok(ReserveOutcome::Reserved(Reservation {
                order_id: order_id.clone(),
                state,
                lines: read_lines(&lines, &what)?,
            }))
        };
        match (outcome.as_str(), state, sku, requested, available) {
            ("reserved", None, ..) => reservation(ReservationState::Reserved),
            ("existing", Some(state), ..) => reservation(
                ReservationState::parse(&state)
                    .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
            ),
            ("released", ..) => Err(InventoryError::Released(order_id.clone())),
            ("conflict", ..) => Err(InventoryError::LinesConflict(order_id.clone())),
            ("unknown", _, Some(sku), ..) => Err(InventoryError::UnknownSku(sku)),
            ("short", _, Some(sku), Some(requested), Some(available)) => {
                Ok(ReserveOutcome::OutOfStock(Shortage {
                    sku: product(&sku, &what)?,
                    requested: Units::new(requested).map_err(|error| corrupt(error.to_string()))?,
                    available,
                }))
            }
            (outcome, ..) => Err(corrupt(format!("unexpected outcome {outcome:?}"))),
        }
    }

    /// Releases an order's reservation, in one statement: its units become available again.
    /// Idempotent. An order that never reserved is recorded as released (a tombstone), so a
    /// reserve arriving late is refused. Refused once committed
    /// ([`InventoryError::Committed`]).
    pub fn release(&self, order_id: &OrderId) -> Result<Reservation, InventoryError> {
        let (outcome, lines) = self.settle("release a reservation", RELEASE, order_id)?;
        match outcome.as_str() {
            "release" | "released" | "tombstone" => Ok(Reservation {
                order_id: order_id.clone(),
                state: ReservationState::Released,
                lines,
            }),
            "committed" => Err(InventoryError::Committed(order_id.clone())),
            other => Err(unexpected(order_id, other)),
        }
    }

    /// Commits an order's reservation, in one statement: its units ship. Idempotent. Refused
    /// after a release ([`InventoryError::Released`]) and for an order that never reserved
    /// ([`InventoryError::UnknownOrder`]).
    pub fn commit(&self, order_id: &OrderId) -> Result<Reservation, InventoryError> {
        let (outcome, lines) = self.settle("commit a reservation", COMMIT, order_id)?;
        match outcome.as_str() {
            "commit" | "committed" => Ok(Reservation {
                order_id: order_id.clone(),
                state: ReservationState::Committed,
                lines,
            }),
            "released" => Err(InventoryError::Released(order_id.clone())),
            "unknown" => Err(InventoryError::UnknownOrder(order_id.clone())),
            other => Err(unexpected(order_id, other)),
        }
    }

    /// The order's reservation (a tombstone when it was released before reserving), if any.
    pub fn reservation(&self, order_id: &OrderId) -> Result<Option<Reservation>, InventoryError> {
        let found = self.run(
            "read a reservation",
            concat!("SELECT ", state_and_lines!()),
            &[SqlValue::text(order_id.as_str())],
        )?;
        let what = || format!("the reservation of order {order_id}");
        let corrupt = |detail| InventoryError::corrupt(what(), detail);
        let row = found.rows.first().ok_or_else(|| corrupt("no row".into()))?;
        let mut reader = RowReader::new(row);
        let Some(state) = reader.optional_text("state").map_err(corrupt)? else {
            return Ok(None);
        };
        let lines = reader.text("lines").map_err(corrupt)?;
        Ok(Some(Reservation {
            order_id: order_id.clone(),
            state: ReservationState::parse(&state)
                .ok_or_else(|| corrupt(format!("unknown state {state:?}")))?,
            lines: read_lines(&lines, &what)?,
        }))
    }

    /// Runs a release or commit statement; returns its outcome and the order's lines.
    fn settle(
        &self,
        operation: &'static str,
        statement: &str,
        order_id: &OrderId,
    ) -> Result<(String, Vec<ReservedLine>), InventoryError> {
        let found = self.run(operation, statement, &[SqlValue::text(order_id.as_str())])?;
        let what = || format!("the reservation of order {order_id}");
        let corrupt = |detail| InventoryError::corrupt(what(), detail);
        let row = found
            .rows
            .first()
            .ok_or_else(|| corrupt("the statement returned no outcome".into()))?;
        let mut reader = RowReader::new(row);
        let outcome = reader.text("outcome").map_err(corrupt)?;
        let lines = reader.text("lines").map_err(corrupt)?;
        Ok((outcome, read_lines(&lines, &what)?))
    }
}

/// The request's lines as JSON `[{"sku", "units"}]`, one per SKU (ignoring ASCII case, as
/// the stock does), ordered by SKU.
fn merge(lines: &[LineItem]) -> Result<String, InventoryError> {
    if lines.is_empty() || lines.len() > LineItem::MAX_PER_ORDER {
        return Err(InventoryError::InvalidLines { lines: lines.len() });
    }
    let mut merged: BTreeMap<String, (&str, u32)> = BTreeMap::new();
    for line in lines {
        let sku = line.product.as_str();
        // At most 50 lines of at most 1000 units: the sum cannot overflow.
        merged.entry(sku.to_ascii_lowercase()).or_insert((sku, 0)).1 += line.quantity.get();
    }
    let request: Vec<_> = merged
        .into_values()
        .map(|(sku, units)| json!({"sku": sku, "units": units}))
        .collect();
    Ok(serde_json::Value::from(request).to_string())
}

/// The outcome column of a reserve's result, if readable.
fn outcome_of(rows: &[Vec<SqlValue>]) -> Option<&str> {
    match rows.first()?.first()? {
        SqlValue::Text(outcome) => Some(outcome),
        _ => None,
    }
}

/// Lines stored as JSON, ordered by SKU ignoring case.
fn read_lines(text: &str, what: &dyn Fn() -> String) -> Result<Vec<ReservedLine>, InventoryError> {
    let stored: Vec<StoredLine> = serde_json::from_str(text)
        .map_err(|error| InventoryError::corrupt(what(), format!("its lines: {error}")))?;
    let mut lines = stored
        .into_iter()
        .map(|line| {
            Ok(ReservedLine {
                sku: product(&line.sku, what)?,
                units: Units::new(line.units)
                    .map_err(|error| InventoryError::corrupt(what(), error.to_string()))?,
            })
        })
        .collect::<Result<Vec<_>, InventoryError>>()?;
    lines.sort_by_key(|line| line.sku.as_str().to_ascii_lowercase());
    Ok(lines)
}

/// A SKU read back from the database.
fn product(sku: &str, what: &dyn Fn() -> String) -> Result<ProductName, InventoryError> {
    ProductName::new(sku)
        .map_err(|error| InventoryError::corrupt(what(), format!("SKU {sku:?}: {error}")))
}

fn unexpected(order_id: &OrderId, outcome: &str) -> InventoryError {
    InventoryError::corrupt(
        format!("the reservation of order {order_id}"),
        format!("unexpected outcome {outcome:?}"),
    )
}
