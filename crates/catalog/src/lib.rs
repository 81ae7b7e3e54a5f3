//! Orderly's product catalogue, as data: `catalog.json` beside this crate holds every product
//! the services know (the classroom seeds' medicines, `Test Product`, the Campus seed's food and
//! the Node seed's `PROD-00n`) with the quantities one order line may ask for, its unit price
//! and the stock the inventory starts with. One catalogue serves the validator (names and
//! quantities), the inventory (initial stock) and pricing. A deployment can replace it with its
//! own JSON of the same shape (see [`Catalog::from_json`]); every field is required.

use serde::Deserialize;

/// The catalogue shipped with Orderly.
const STANDARD: &str = include_str!("../catalog.json");

/// Why a catalogue could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON of the expected shape.
    #[error(
        "the catalogue is not valid JSON of the form {{\"products\": [{{\"name\", \"min_quantity\", \"max_quantity\", \"price_cents\", \"initial_stock\"}}]}}"
    )]
    Malformed(#[source] serde_json::Error),
    /// A product entry makes no sense.
    #[error("catalogue product {name:?}: {reason}")]
    Invalid {
        /// The product.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// One product: the quantities a line may order, its price and its initial stock.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogProduct {
    /// The product's name, as orders spell it (compared ignoring case and surrounding spaces).
    pub name: String,
    /// The fewest units one line may order.
    pub min_quantity: u32,
    /// The most units one line may order.
    pub max_quantity: u32,
    /// The price of one unit, in cents: 1 to [`MAX_PRICE_CENTS`].
    pub price_cents: u64,
    /// The units in stock when the inventory first learns of the product (0 is allowed: it
    /// starts sold out until restocked).
    pub initial_stock: u32,
}

/// The highest unit price a catalogue may set, in cents (1,000,000.00): a bound against typos
/// that keeps any order's total far inside SQLite's 64-bit integers.
pub const MAX_PRICE_CENTS: u64 = 100_000_000;

/// Every known product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    products: Vec<CatalogProduct>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    products: Vec<CatalogProduct>,
}

impl Catalog {
    /// The catalogue shipped in `catalog.json`.
    pub fn standard() -> Self {
        Self::from_json(STANDARD).expect("catalog.json is checked by the crate's tests")
    }

    /// A catalogue from JSON of the same shape as `catalog.json`: names unique (ignoring case)
    /// and without surrounding spaces, quantity ranges non-empty, prices 1 to
    /// [`MAX_PRICE_CENTS`] cents.
    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let file: CatalogFile = serde_json::from_str(text).map_err(CatalogError::Malformed)?;
        for (index, product) in file.products.iter().enumerate() {
            let invalid = |reason| CatalogError::Invalid {
                name: product.name.clone(),
                reason,
            };
            if product.name.trim().is_empty() || product.name.trim() != product.name {
                return Err(invalid(
                    "the name must be non-empty, without surrounding spaces",
                ));
            }
            if product.min_quantity == 0 || product.min_quantity > product.max_quantity {
                return Err(invalid(
                    "min_quantity must be at least 1 and at most max_quantity",
                ));
            }
            if !(1..=MAX_PRICE_CENTS).contains(&product.price_cents) {
                return Err(invalid("price_cents must be 1 to 100000000"));
            }
            if file.products[..index]
                .iter()
                .any(|other| other.name.eq_ignore_ascii_case(&product.name))
            {
                return Err(invalid("the name appears twice"));
            }
        }
        Ok(Self {
            products: file.products,
        })
    }

    /// The product called `name` (ignoring ASCII case and surrounding spaces).
    pub fn find(&self, name: &str) -> Option<&CatalogProduct> {
        let wanted = name.trim();
        self.products
            .iter()
            .find(|product| product.name.eq_ignore_ascii_case(wanted))
    }

    /// Every product, in catalogue order.
    pub fn products(&self) -> &[CatalogProduct] {
        &self.products
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_catalogue_knows_every_seed_product() {
        let catalog = Catalog::standard();
        for name in [
            "Medicine A",
            "Test Product",
            "burger",
            "PIZZA",
            " sushi ",
            "taco",
            "salad",
            "PROD-001",
            "PROD-005",
        ] {
            assert!(catalog.find(name).is_some(), "{name}");
        }
        assert!(catalog.find("Unobtainium").is_none());
        let vaccine = catalog.find("vaccine x").unwrap();
        assert_eq!(
            (
                vaccine.max_quantity,
                vaccine.price_cents,
                vaccine.initial_stock
            ),
            (50, 4500, 5000)
        );
    }

    #[test]
    fn every_standard_product_has_a_price_and_stock_for_several_full_lines() {
        for product in Catalog::standard().products() {
            assert!(product.price_cents > 0, "{}", product.name);
            assert!(
                product.initial_stock >= 10 * product.max_quantity,
                "{} starts with too little stock for ten full lines",
                product.name
            );
        }
    }

    /// A catalogue of one product with these fields.
    fn one(name: &str, min: u32, max: u32, price: u64, stock: u32) -> String {
        format!(
            r#"{{"products": [{{"name": "{name}", "min_quantity": {min}, "max_quantity": {max}, "price_cents": {price}, "initial_stock": {stock}}}]}}"#
        )
    }

    fn invalid_reason(text: &str) -> &'static str {
        match Catalog::from_json(text) {
            Err(CatalogError::Invalid { reason, .. }) => reason,
            other => panic!("expected an invalid product, got {other:?}"),
        }
    }

    #[test]
    fn refuses_catalogues_that_make_no_sense() {
        let a = Catalog::from_json(&one("A", 1, 5, 100, 0)).unwrap();
        assert_eq!(a.products()[0].initial_stock, 0);
        assert!(Catalog::from_json(&one("A", 1, 5, MAX_PRICE_CENTS, u32::MAX)).is_ok());
        assert!(invalid_reason(&one("A", 0, 5, 100, 1)).contains("min_quantity"));
        assert!(invalid_reason(&one("A", 6, 5, 100, 1)).contains("min_quantity"));
        assert!(invalid_reason(&one(" A", 1, 5, 100, 1)).contains("name"));
        assert!(invalid_reason(&one("A", 1, 5, 0, 1)).contains("price_cents"));
        assert!(invalid_reason(&one("A", 1, 5, MAX_PRICE_CENTS + 1, 1)).contains("price_cents"));
        let twice = format!(
            r#"{{"products": [{}, {}]}}"#,
            r#"{"name": "A", "min_quantity": 1, "max_quantity": 2, "price_cents": 1, "initial_stock": 1}"#,
            r#"{"name": "a", "min_quantity": 1, "max_quantity": 2, "price_cents": 1, "initial_stock": 1}"#
        );
        assert_eq!(invalid_reason(&twice), "the name appears twice");
    }

    #[test]
    fn refuses_malformed_catalogues() {
        let without_price = r#"{"products": [{"name": "A", "min_quantity": 1, "max_quantity": 2, "initial_stock": 1}]}"#;
        let negative_stock =
            one("A", 1, 2, 100, 1).replace("\"initial_stock\": 1", "\"initial_stock\": -1");
        let unknown_field = one("A", 1, 2, 100, 1).replace("}]}", r#", "colour": "red"}]}"#);
        for text in ["[]", without_price, &negative_stock, &unknown_field] {
            assert!(
                matches!(Catalog::from_json(text), Err(CatalogError::Malformed(_))),
                "{text}"
            );
        }
    }
}
