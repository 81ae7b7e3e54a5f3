//! Orderly's order rules, in plain Rust: what a valid new order is, how orders are identified,
//! and the statuses an order moves through. Time and randomness come in as arguments, so every
//! rule is deterministic and unit-tested natively.

mod id;
mod order;
mod text;
mod time;

pub use id::{OrderId, OrderIdError};
pub use order::{
    CustomerName, LineItem, NewOrder, Order, OrderError, OrderStatus, ProductName, Quantity,
    StatusError,
};
pub use text::{TextError, clean as clean_text};
pub use time::Timestamp;
