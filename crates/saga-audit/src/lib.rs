//! The fulfilment saga's invariants, checked black-box on what Orderly's services show, and the
//! seeded order mix that puts them under stress.
//!
//! - [`mix`]: orders drawn from a seed (common lines, lines of scarce products that run out,
//!   amounts over the payment limit) and which of them the customer cancels.
//! - [`state`]: the orders, payments, reservations, shipments and stock as read over HTTP
//!   (`GET /orders/{id}`, `/internal/<service>/...`), through any [`state::Reader`].
//! - [`audit`]: the invariants over a [`state::Snapshot`], each with its violations, and a
//!   markdown report.
//!
//! Plain Rust with no runtime of its own, shared by `orderly lab experiment saga` and the black-box tests.

pub mod audit;
pub mod mix;
pub mod state;
