//! Orders in SQLite (the `default` database). The schema is created on first use: a statement
//! that finds no table creates it and runs once more.

use orders_core::{Order, OrderId, OrderStatus, ProductName, Quantity, Timestamp};
use spin_sdk::sqlite3::{Connection, Error, QueryResult, RowResult, Value};

const SCHEMA: [&str; 2] = [
    "CREATE TABLE IF NOT EXISTS orders (
        id         TEXT PRIMARY KEY,
        product    TEXT NOT NULL,
        quantity   INTEGER NOT NULL,
        status     TEXT NOT NULL,
        reason     TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, created_at)",
];

const COLUMNS: &str = "id, product, quantity, status, reason, created_at, updated_at";

/// Why a database operation failed.
#[derive(Debug)]
pub enum StoreError {
    /// The order id is taken.
    Duplicate(String),
    /// The database failed, or holds something unreadable.
    Database(String),
}

/// The order table.
pub struct OrderStore {
    connection: Connection,
}

impl OrderStore {
    /// Opens the `default` database.
    pub fn open() -> Result<Self, StoreError> {
        Ok(Self {
            connection: Connection::open_default().map_err(database)?,
        })
    }

    /// Stores a new order.
    pub fn insert(&self, order: &Order) -> Result<(), StoreError> {
        let result = self.execute(
            &format!("INSERT INTO orders ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"),
            &[
                Value::Text(order.id.to_string()),
                Value::Text(order.product.as_str().to_owned()),
                Value::Integer(i64::from(order.quantity.get())),
                Value::Text(order.status.as_str().to_owned()),
                order.reason.clone().map_or(Value::Null, Value::Text),
                Value::Integer(order.created_at.millis() as i64),
                Value::Integer(order.updated_at.millis() as i64),
            ],
        );
        match result {
            Err(Error::Io(message)) if message.contains("UNIQUE constraint failed") => {
                Err(StoreError::Duplicate(order.id.to_string()))
            }
            other => other.map(drop).map_err(database),
        }
    }

    /// One order by id.
    pub fn get(&self, id: &OrderId) -> Result<Option<Order>, StoreError> {
        let result = self
            .execute(
                &format!("SELECT {COLUMNS} FROM orders WHERE id = ?"),
                &[Value::Text(id.to_string())],
            )
            .map_err(database)?;
        result.rows.first().map(restore).transpose()
    }

    /// Up to `limit` orders, oldest first, optionally only those with `status`.
    pub fn list(&self, status: Option<OrderStatus>, limit: u32) -> Result<Vec<Order>, StoreError> {
        let limit = Value::Integer(i64::from(limit));
        let result = match status {
            Some(status) => self.execute(
                &format!(
                    "SELECT {COLUMNS} FROM orders WHERE status = ? ORDER BY created_at, id LIMIT ?"
                ),
                &[Value::Text(status.as_str().to_owned()), limit],
            ),
            None => self.execute(
                &format!("SELECT {COLUMNS} FROM orders ORDER BY created_at, id LIMIT ?"),
                &[limit],
            ),
        }
        .map_err(database)?;
        result.rows.iter().map(restore).collect()
    }

    fn execute(&self, statement: &str, parameters: &[Value]) -> Result<QueryResult, Error> {
        match self.connection.execute(statement, parameters) {
            Err(Error::Io(message)) if message.contains("no such table") => {
                for ddl in SCHEMA {
                    self.connection.execute(ddl, &[])?;
                }
                self.connection.execute(statement, parameters)
            }
            other => other,
        }
    }
}

/// Rebuilds an order from a row in `COLUMNS` order, re-checking every value.
fn restore(row: &RowResult) -> Result<Order, StoreError> {
    let corrupt =
        |what: &str| StoreError::Database(format!("stored order has an unreadable {what}"));
    let text = |index: usize, what: &str| row.get::<&str>(index).ok_or_else(|| corrupt(what));
    let integer = |index: usize, what: &str| row.get::<i64>(index).ok_or_else(|| corrupt(what));
    Ok(Order {
        id: OrderId::parse(text(0, "id")?).map_err(|_| corrupt("id"))?,
        product: ProductName::new(text(1, "product")?).map_err(|_| corrupt("product"))?,
        quantity: Quantity::new(integer(2, "quantity")?).map_err(|_| corrupt("quantity"))?,
        status: text(3, "status")?
            .parse::<OrderStatus>()
            .map_err(|_| corrupt("status"))?,
        reason: row.get::<&str>(4).map(str::to_owned),
        created_at: Timestamp(integer(5, "created_at")? as u64),
        updated_at: Timestamp(integer(6, "updated_at")? as u64),
    })
}

fn database(error: Error) -> StoreError {
    StoreError::Database(match error {
        Error::NoSuchDatabase => "no such database (is `default` in sqlite_databases?)".into(),
        Error::AccessDenied => "access denied (is `default` in sqlite_databases?)".into(),
        Error::InvalidConnection => "invalid connection".into(),
        Error::DatabaseFull => "the database is full".into(),
        Error::Io(detail) => detail,
    })
}
