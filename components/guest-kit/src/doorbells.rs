//! Doorbells published on the app's Redis (`redis_url`), for the native workers'
//! [`DoorbellPublisher`].

use pipeline::{Doorbell, DoorbellPublisher};

/// Publishes doorbells on the app's Redis.
pub struct RedisDoorbells {
    address: String,
}

impl RedisDoorbells {
    /// The publisher for the Redis at the `redis_url` variable (by default the local one).
    pub fn from_variables() -> Self {
        Self {
            address: crate::variable_or("redis_url", "redis://127.0.0.1:6379"),
        }
    }
}

impl DoorbellPublisher for RedisDoorbells {
    fn ring(&self, channel: &str, doorbell: &Doorbell) -> Result<(), String> {
        spin_sdk::redis::Connection::open(&self.address)
            .and_then(|redis| redis.publish(channel, &doorbell.to_bytes()))
            .map_err(|error| format!("{error:?}"))
    }
}
