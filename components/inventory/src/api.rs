//! HTTP edges: request bodies parsed into the domain's types, resources shown as JSON, and
//! every error mapped to its status and problem body, once.

use guest_kit::service::{self, CommonError, parse_json};
use http_problem::Problem;
use inventory_core::{InventoryError, Reservation, Shortage, StockLevel, Units};
use orders_core::{LineItem, OrderId, ProductName};
use serde::Deserialize;
use serde_json::{Value, json};
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// What every service answers the same way (bad body, not found, refused...).
    Common(CommonError),
    /// A line cannot be filled: nothing was reserved.
    OutOfStock(Shortage),
    /// The inventory refused or failed.
    Inventory(InventoryError),
    /// The `catalog` variable holds no valid catalogue.
    Catalog(catalog::CatalogError),
}

impl From<CommonError> for ApiError {
    fn from(error: CommonError) -> Self {
        Self::Common(error)
    }
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        Self::Inventory(error)
    }
}

/// The problem response for each error.
impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        let problem = match error {
            ApiError::Common(error) => return error.into_response(),
            ApiError::OutOfStock(shortage) => Problem::new(409, "Conflict")
                .with_type("/problems/out-of-stock")
                .with_detail(format!(
                    "{}: {} requested, {} available",
                    shortage.sku.as_str(),
                    shortage.requested.get(),
                    shortage.available
                ))
                .with("sku", shortage.sku.as_str())
                .with("requested", shortage.requested.get())
                .with("available", shortage.available),
            ApiError::Inventory(error) => return inventory_problem(error),
            ApiError::Catalog(error) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/catalog")
                .with_detail(format!("the `catalog` variable: {error}")),
        };
        guest_kit::problem(&problem)
    }
}

/// The answer to each [`InventoryError`].
fn inventory_problem(error: InventoryError) -> Response {
    let detail = guest_kit::error_chain(&error);
    let conflict = |kind: &str| {
        Problem::new(409, "Conflict")
            .with_type(kind)
            .with_detail(detail.clone())
    };
    let problem = match &error {
        InventoryError::Sql { .. } => return service::storage_unavailable(detail),
        InventoryError::Corrupt { .. } => service::corrupt_data(detail),
        InventoryError::UnknownSku(sku) => Problem::new(422, "Unprocessable Content")
            .with_type("/problems/unknown-sku")
            .with_detail(detail)
            .with("sku", sku.as_str()),
        InventoryError::InvalidLines { .. } => Problem::new(400, "Bad Request")
            .with_type("/problems/invalid-field")
            .with_detail(detail)
            .with("field", "lines"),
        InventoryError::LinesConflict(_) => conflict("/problems/reservation-conflict"),
        InventoryError::Released(_) => conflict("/problems/reservation-released"),
        InventoryError::Committed(_) => conflict("/problems/reservation-committed"),
        InventoryError::UnknownOrder(_) => Problem::new(404, "Not Found")
            .with_type("/problems/unknown-reservation")
            .with_detail(detail),
    };
    guest_kit::problem(&problem)
}

/// `POST /reservations`: `{"order_id", "lines": [{"sku", "quantity"}]}`.
pub struct ReserveRequest {
    /// The order reserving.
    pub order_id: OrderId,
    /// What it reserves.
    pub lines: Vec<LineItem>,
}

impl ReserveRequest {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            order_id: String,
            lines: Value,
        }
        let body: Body = parse_json(body)?;
        Ok(Self {
            order_id: OrderId::parse(&body.order_id)
                .map_err(|error| CommonError::invalid("order_id", error))?,
            lines: LineItem::list_from_sku_lines(body.lines).map_err(|error| {
                let field = error.field().unwrap_or("lines").to_owned();
                CommonError::invalid(field, error)
            })?,
        })
    }
}

/// `POST /restock`: `{"sku", "units"}`.
pub struct RestockRequest {
    /// The product received.
    pub sku: ProductName,
    /// How many units.
    pub units: Units,
}

impl RestockRequest {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            sku: String,
            units: u32,
        }
        let body: Body = parse_json(body)?;
        Ok(Self {
            sku: ProductName::new(&body.sku).map_err(|error| CommonError::invalid("sku", error))?,
            units: Units::new(body.units).map_err(|error| CommonError::invalid("units", error))?,
        })
    }
}

/// An order id from a path segment; an id no order can have names no reservation.
pub fn order_id(segment: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(segment)
        .map_err(|_| CommonError::NotFound(format!("no reservation for order {segment:?}")).into())
}

/// A reservation as JSON.
pub fn reservation_json(reservation: &Reservation) -> Value {
    let lines: Vec<Value> = reservation
        .lines
        .iter()
        .map(|line| json!({"sku": line.sku.as_str(), "quantity": line.units.get()}))
        .collect();
    json!({
        "order_id": reservation.order_id.as_str(),
        "state": reservation.state.as_str(),
        "lines": lines,
    })
}

/// A stock level as JSON, with the catalogue's initial stock when the product is in it.
pub fn level_json(level: &StockLevel, initial: Option<u32>) -> Value {
    json!({
        "sku": level.sku.as_str(),
        "available": level.available,
        "reserved": level.reserved,
        "shipped": level.shipped,
        "received": level.received,
        "initial": initial,
    })
}
