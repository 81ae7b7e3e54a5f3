//! What runs components: the HTTP, Redis and cron triggers.

pub(crate) mod cron;
pub(crate) mod http;
pub(crate) mod redis;
