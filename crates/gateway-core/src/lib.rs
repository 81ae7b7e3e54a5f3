//! The gateway's plain-Rust logic (the `gateway` component only adapts it to Spin): which
//! service a request goes to and under which path ([`routes`]), which headers go with it and
//! come back ([`headers`]), whom the rate limiter counts it against ([`client`]), how every
//! failure is answered ([`errors`]), and the traffic statistics and service status the
//! `/mesh/*` views show ([`stats`], [`status`]).

pub mod client;
pub mod errors;
pub mod headers;
pub mod routes;
pub mod stats;
pub mod status;

pub use client::{Client, TrustedProxies};
pub use errors::GatewayError;
pub use routes::{Access, Forward, Resolution, Service, Target, resolve};
