//! The app's Redis channels, published on from outside the app: redelivered doorbells and
//! poison messages, sent to the experiment's own `redis-server`, each publish counting the
//! subscribers that received it (so a message nobody heard is seen, not assumed delivered).

use anyhow::Context as _;
use orders_core::OrderId;
use pipeline::Doorbell;
use redis::aio::MultiplexedConnection;

pub use pipeline::{EVENTS_CHANNEL, FULFILMENT_CHANNEL, JOBS_CHANNEL};

/// A connection to the app's Redis server, shared by clones.
#[derive(Clone)]
pub struct Publisher {
    connection: MultiplexedConnection,
}

impl Publisher {
    /// Connects to the Redis server at `url`.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).with_context(|| format!("Redis URL {url}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        Ok(Self { connection })
    }

    /// Publishes `payload` on `channel`; how many subscribers received it.
    pub async fn publish(&self, channel: &str, payload: &[u8]) -> anyhow::Result<u64> {
        let mut connection = self.connection.clone();
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async(&mut connection)
            .await
            .with_context(|| format!("PUBLISH on {channel}"))
    }

    /// Publishes order `order_id`'s doorbell on `channel`, as the app rings it; how many
    /// subscribers received it.
    pub async fn ring(&self, channel: &str, order_id: &str) -> anyhow::Result<u64> {
        let order = OrderId::parse(order_id)
            .map_err(|error| anyhow::anyhow!("order id {order_id:?}: {error}"))?;
        self.publish(channel, &Doorbell::for_order(&order).to_bytes())
            .await
    }

    /// Publishes a doorbell about no order in particular (more work waiting) on `channel`.
    pub async fn ring_backlog(&self, channel: &str) -> anyhow::Result<u64> {
        self.publish(channel, &Doorbell::backlog().to_bytes()).await
    }
}
