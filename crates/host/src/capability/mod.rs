//! What the host gives components to import: key-value stores, SQLite, outbound Redis,
//! variables and outbound HTTP, each in one module.

pub(crate) mod bindings;
pub(crate) mod grant;
pub(crate) mod key_value;
pub(crate) mod outbound_http;
pub(crate) mod redis;
pub(crate) mod sqlite;
pub(crate) mod variables;
pub(crate) mod view;
