//! What the capabilities and triggers stand on, with no WebAssembly in it: the clock, Redis
//! servers (real or embedded), SQLite files, address allow-lists, locks, the host's metrics
//! and the thinning of repeated log lines.

pub(crate) mod allowed_hosts;
pub(crate) mod clock;
pub(crate) mod lock;
pub(crate) mod metrics;
pub(crate) mod redis;
pub(crate) mod repeated_log;
pub(crate) mod sqlite_file;
