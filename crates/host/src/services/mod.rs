//! What the capabilities and triggers stand on, with no WebAssembly in it: the clock, Redis
//! servers (real or embedded), SQLite files, address allow-lists and locks.

pub(crate) mod allowed_hosts;
pub(crate) mod clock;
pub(crate) mod lock;
pub(crate) mod redis;
pub(crate) mod sqlite_file;
