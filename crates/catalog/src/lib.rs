//! Orderly's product catalogue, as data: `catalog.json` beside this crate holds every product
//! the services know (the classroom seeds' medicines, `Test Product`, the Campus seed's food and
//! the Node seed's `PROD-00n`) with the quantities one order line may ask for. A deployment can
//! replace it with its own JSON of the same shape (see [`Catalog::from_json`]).

use serde::Deserialize;

/// The catalogue shipped with Orderly.
const STANDARD: &str = include_str!("../catalog.json");

/// Why a catalogue could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON of the expected shape.
    #[error(
        "the catalogue is not valid JSON of the form {{\"products\": [{{\"name\", \"min_quantity\", \"max_quantity\"}}]}}"
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

/// One product and the quantities a line may order.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogProduct {
    /// The product's name, as orders spell it (compared ignoring case and surrounding spaces).
    pub name: String,
    /// The fewest units one line may order.
    pub min_quantity: u32,
    /// The most units one line may order.
    pub max_quantity: u32,
}

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

    /// A catalogue from JSON of the same shape as `catalog.json`; names must be unique
    /// (ignoring case) and ranges non-empty.
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
        assert_eq!(catalog.find("vaccine x").unwrap().max_quantity, 50);
    }

    #[test]
    fn refuses_catalogues_that_make_no_sense() {
        let one = |name: &str, min: u32, max: u32| {
            format!(
                r#"{{"products": [{{"name": "{name}", "min_quantity": {min}, "max_quantity": {max}}}]}}"#
            )
        };
        assert!(Catalog::from_json(&one("A", 1, 5)).is_ok());
        assert!(matches!(
            Catalog::from_json(&one("A", 0, 5)),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::from_json(&one("A", 6, 5)),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::from_json(&one(" A", 1, 5)),
            Err(CatalogError::Invalid { .. })
        ));
        let twice = r#"{"products": [{"name": "A", "min_quantity": 1, "max_quantity": 2}, {"name": "a", "min_quantity": 1, "max_quantity": 2}]}"#;
        assert!(matches!(
            Catalog::from_json(twice),
            Err(CatalogError::Invalid { .. })
        ));
        assert!(matches!(
            Catalog::from_json("[]"),
            Err(CatalogError::Malformed(_))
        ));
    }
}
