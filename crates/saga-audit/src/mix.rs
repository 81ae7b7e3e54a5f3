//! The orders of a saga run, drawn from a seed: mostly small orders of any product, some
//! large orders of the scarcest products (so their stock runs out), some worth more than the
//! payment limit (so payment declines them), and a share the customer cancels.

use catalog::{Catalog, CatalogProduct};
use serde_json::json;

/// Share of orders that ask for much of a scarce product.
const SCARCE_SHARE: f64 = 0.2;
/// Share of orders worth more than the payment limit (when a product can be).
const OVER_LIMIT_SHARE: f64 = 0.05;
/// How many of the products with the least stock count as scarce.
const SCARCE_PRODUCTS: usize = 2;
/// The most lines of a small order.
const MAX_SMALL_LINES: usize = 3;
/// The most units of one line of a small order.
const MAX_SMALL_QUANTITY: u32 = 10;

/// What an order was drawn to exercise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Small lines of any product.
    Small,
    /// Much of a scarce product: may run out of stock.
    Scarce,
    /// Worth more than the payment limit: payment declines it.
    OverLimit,
}

/// One order to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedOrder {
    /// Its id, also its idempotency key.
    pub id: String,
    /// (product, quantity) per line.
    pub lines: Vec<(String, u32)>,
    /// What it was drawn to exercise.
    pub kind: Kind,
    /// Whether the customer cancels it shortly after creating it.
    pub cancel: bool,
    /// How long after its creation the cancellation goes, in milliseconds.
    pub cancel_after_ms: u64,
}

impl PlannedOrder {
    /// Its `POST /orders` body.
    pub fn body(&self) -> String {
        let items: Vec<_> = self
            .lines
            .iter()
            .map(|(product, quantity)| json!({"product": product, "quantity": quantity}))
            .collect();
        json!({"order_id": self.id, "customer": "Saga Lab", "items": items}).to_string()
    }
}

/// What a mix is drawn from.
#[derive(Debug, Clone)]
pub struct MixSettings {
    /// Seeds every draw.
    pub seed: u64,
    /// How many orders.
    pub orders: usize,
    /// Share of orders (0 to 1) the customer cancels.
    pub cancel_fraction: f64,
    /// The longest wait before a cancellation, in milliseconds.
    pub max_cancel_delay_ms: u64,
    /// The payment service's limit, in cents.
    pub payment_limit_cents: u64,
    /// Prefix of the order ids (`<prefix>-<n>`).
    pub id_prefix: String,
}

/// The orders `settings` describe over `catalog`'s products: the same seed always draws the
/// same orders.
pub fn plan(catalog: &Catalog, settings: &MixSettings) -> Vec<PlannedOrder> {
    let products = catalog.products();
    let mut by_stock: Vec<&CatalogProduct> = products.iter().collect();
    by_stock.sort_by_key(|product| product.initial_stock);
    let scarce = &by_stock[..SCARCE_PRODUCTS.min(by_stock.len())];
    let over_limit = over_limit_product(products, settings.payment_limit_cents);
    let mut draws = fastrand::Rng::with_seed(settings.seed);
    (0..settings.orders)
        .map(|n| {
            let roll = draws.f64();
            let (kind, lines) = match over_limit {
                Some((product, least)) if roll < OVER_LIMIT_SHARE => (
                    Kind::OverLimit,
                    vec![(
                        product.name.clone(),
                        draws.u32(least..=product.max_quantity),
                    )],
                ),
                _ if roll < OVER_LIMIT_SHARE + SCARCE_SHARE && !scarce.is_empty() => {
                    let product = scarce[draws.usize(..scarce.len())];
                    let most = product.max_quantity;
                    let least = (most / 2).max(product.min_quantity);
                    (
                        Kind::Scarce,
                        vec![(product.name.clone(), draws.u32(least..=most))],
                    )
                }
                _ => {
                    let count = draws.usize(1..=MAX_SMALL_LINES);
                    let lines = (0..count)
                        .map(|_| {
                            let product = &products[draws.usize(..products.len())];
                            let most = product.max_quantity.min(MAX_SMALL_QUANTITY);
                            let least = product.min_quantity.min(most);
                            (product.name.clone(), draws.u32(least..=most))
                        })
                        .collect();
                    (Kind::Small, lines)
                }
            };
            let cancel = draws.f64() < settings.cancel_fraction;
            PlannedOrder {
                id: format!("{}-{n}", settings.id_prefix),
                lines,
                kind,
                cancel,
                cancel_after_ms: draws.u64(0..=settings.max_cancel_delay_ms),
            }
        })
        .collect()
}

/// The product one line of which can cost the most, and the fewest units of it that cost more
/// than `limit_cents`, if any line can.
fn over_limit_product(
    products: &[CatalogProduct],
    limit_cents: u64,
) -> Option<(&CatalogProduct, u32)> {
    let product = products
        .iter()
        .max_by_key(|product| product.price_cents * u64::from(product.max_quantity))?;
    let least = (limit_cents / product.price_cents.max(1) + 1).max(u64::from(product.min_quantity));
    let least = u32::try_from(least).ok()?;
    (least <= product.max_quantity).then_some((product, least))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(seed: u64, orders: usize) -> MixSettings {
        MixSettings {
            seed,
            orders,
            cancel_fraction: 0.05,
            max_cancel_delay_ms: 50,
            payment_limit_cents: 1_000_000,
            id_prefix: "saga-1".into(),
        }
    }

    #[test]
    fn a_seed_always_draws_the_same_orders() {
        let catalog = Catalog::standard();
        assert_eq!(
            plan(&catalog, &settings(7, 300)),
            plan(&catalog, &settings(7, 300))
        );
        assert_ne!(
            plan(&catalog, &settings(7, 300)),
            plan(&catalog, &settings(8, 300))
        );
    }

    #[test]
    fn the_mix_runs_scarce_products_out_declines_some_and_cancels_a_share() {
        let catalog = Catalog::standard();
        let orders = plan(&catalog, &settings(1, 5_000));
        let count = |kind| orders.iter().filter(|order| order.kind == kind).count();
        assert!(
            (800..1_200).contains(&count(Kind::Scarce)),
            "{}",
            count(Kind::Scarce)
        );
        assert!((150..350).contains(&count(Kind::OverLimit)));
        let cancelled = orders.iter().filter(|order| order.cancel).count();
        assert!((150..350).contains(&cancelled), "{cancelled}");

        let mut demand = std::collections::HashMap::<&str, u64>::new();
        for order in &orders {
            let price = |name: &str| catalog.find(name).unwrap().price_cents;
            let total: u64 = order
                .lines
                .iter()
                .map(|(name, quantity)| price(name) * u64::from(*quantity))
                .sum();
            assert_eq!(
                total > 1_000_000,
                order.kind == Kind::OverLimit,
                "{order:?}"
            );
            for (name, quantity) in &order.lines {
                let product = catalog.find(name).unwrap();
                assert!((product.min_quantity..=product.max_quantity).contains(quantity));
                *demand.entry(&product.name).or_default() += u64::from(*quantity);
            }
            assert!(order.cancel_after_ms <= 50);
        }
        let short = catalog
            .products()
            .iter()
            .filter(|product| {
                demand.get(product.name.as_str()).copied().unwrap_or(0)
                    > u64::from(product.initial_stock)
            })
            .count();
        assert!(short >= 1, "some product runs out: {demand:?}");
        assert_eq!(orders[4_999].id, "saga-1-4999");
    }

    #[test]
    fn bodies_are_orders_with_every_line() {
        let order = PlannedOrder {
            id: "o-1".into(),
            lines: vec![("Pizza".into(), 2), ("Taco".into(), 1)],
            kind: Kind::Small,
            cancel: false,
            cancel_after_ms: 0,
        };
        let body: serde_json::Value = serde_json::from_str(&order.body()).unwrap();
        assert_eq!(body["order_id"], "o-1");
        assert_eq!(body["items"][1], json!({"product": "Taco", "quantity": 1}));
    }

    #[test]
    fn no_order_goes_over_a_limit_no_line_can_reach() {
        let catalog = Catalog::standard();
        let orders = plan(
            &catalog,
            &MixSettings {
                payment_limit_cents: u64::MAX / 2,
                ..settings(3, 500)
            },
        );
        assert!(orders.iter().all(|order| order.kind != Kind::OverLimit));
    }
}
