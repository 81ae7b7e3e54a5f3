//! HTTP edges: request bodies parsed into the domain's types, shipments shown as JSON, and
//! every error mapped to its status and problem body, once.

use guest_kit::service::{self, CommonError, parse_json};
use http_problem::Problem;
use orders_core::{CustomerName, LineItem, OrderId};
use serde::Deserialize;
use serde_json::{Value, json};
use shipping_core::{Address, ShipTo, Shipment, ShippingError, StatusUpdate};
use spin_sdk::http::Response;

/// Everything that can go wrong handling a request.
#[derive(Debug)]
pub enum ApiError {
    /// What every service answers the same way (bad body, not found, refused...).
    Common(CommonError),
    /// The shipping service refused or failed.
    Shipping(ShippingError),
    /// The `tracking_seed` variable is not a number.
    Settings(String),
}

impl From<CommonError> for ApiError {
    fn from(error: CommonError) -> Self {
        Self::Common(error)
    }
}

impl From<ShippingError> for ApiError {
    fn from(error: ShippingError) -> Self {
        Self::Shipping(error)
    }
}

/// The problem response for each error.
impl From<ApiError> for Response {
    fn from(error: ApiError) -> Self {
        let problem = match error {
            ApiError::Common(error) => return error.into_response(),
            ApiError::Shipping(error) => return shipping_problem(error),
            ApiError::Settings(detail) => Problem::new(500, "Internal Server Error")
                .with_type("/problems/settings")
                .with_detail(detail),
        };
        guest_kit::problem(&problem)
    }
}

/// The answer to each [`ShippingError`].
fn shipping_problem(error: ShippingError) -> Response {
    let detail = guest_kit::error_chain(&error);
    let conflict = |kind: &str| {
        Problem::new(409, "Conflict")
            .with_type(kind)
            .with_detail(detail.clone())
    };
    let problem = match &error {
        ShippingError::Sql { .. } => return service::storage_unavailable(detail),
        ShippingError::Corrupt { .. } => service::corrupt_data(detail),
        ShippingError::InvalidLines { .. } => Problem::new(400, "Bad Request")
            .with_type("/problems/invalid-field")
            .with_detail(detail)
            .with("field", "lines"),
        ShippingError::UnknownOrder(_) => Problem::new(404, "Not Found")
            .with_type("/problems/unknown-shipment")
            .with_detail(detail),
        ShippingError::Conflict(_) => conflict("/problems/shipment-conflict"),
        ShippingError::Cancelled(_) => conflict("/problems/shipment-cancelled"),
        ShippingError::IllegalTransition { from, .. } => {
            conflict("/problems/illegal-transition").with("status", from.as_str())
        }
        ShippingError::TooLateToCancel { status, .. } => {
            conflict("/problems/too-late-to-cancel").with("status", status.as_str())
        }
    };
    guest_kit::problem(&problem)
}

/// `POST /shipments`: `{"order_id", "lines": [{"sku", "quantity"}], "recipient"?,
/// "address"?}` (the saga sends the order's customer, perhaps `null`, as the recipient).
pub struct ShipRequest {
    /// The order shipped.
    pub order_id: OrderId,
    /// What the parcel carries.
    pub lines: Vec<LineItem>,
    /// Where it goes.
    pub ship_to: ShipTo,
}

impl ShipRequest {
    /// Parses the body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        #[derive(Deserialize)]
        struct Body {
            order_id: String,
            lines: Value,
            recipient: Option<String>,
            address: Option<String>,
        }
        let body: Body = parse_json(body)?;
        Ok(Self {
            order_id: OrderId::parse(&body.order_id)
                .map_err(|error| CommonError::invalid("order_id", error))?,
            lines: LineItem::list_from_sku_lines(body.lines).map_err(|error| {
                let field = error.field().unwrap_or("lines").to_owned();
                CommonError::invalid(field, error)
            })?,
            ship_to: ShipTo {
                recipient: body
                    .recipient
                    .map(|text| CustomerName::new(&text))
                    .transpose()
                    .map_err(|error| CommonError::invalid("recipient", error))?,
                address: body
                    .address
                    .map(|text| Address::new(&text))
                    .transpose()
                    .map_err(|error| CommonError::invalid("address", error))?,
            },
        })
    }
}

/// `POST /shipments/{id}/status`: `{"status": "in_transit" | "delivered"}`.
pub fn parse_status_update(body: &[u8]) -> Result<StatusUpdate, ApiError> {
    #[derive(Deserialize)]
    struct Body {
        status: String,
    }
    let body: Body = parse_json(body)?;
    match body.status.as_str() {
        "in_transit" => Ok(StatusUpdate::InTransit),
        "delivered" => Ok(StatusUpdate::Delivered),
        other => Err(CommonError::invalid(
            "status",
            format!("must be \"in_transit\" or \"delivered\", got {other:?}"),
        )
        .into()),
    }
}

/// An order id from a path segment; an id no order can have names no shipment.
pub fn order_id(segment: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(segment)
        .map_err(|_| CommonError::NotFound(format!("no shipment for order {segment:?}")).into())
}

/// A shipment as JSON.
pub fn shipment_json(shipment: &Shipment) -> Value {
    let lines: Vec<Value> = shipment
        .lines
        .iter()
        .map(|line| json!({"sku": line.product.as_str(), "quantity": line.quantity.get()}))
        .collect();
    json!({
        "order_id": shipment.order_id.as_str(),
        "status": shipment.status.as_str(),
        "tracking_number": shipment.tracking_number.as_str(),
        "label": shipment.label,
        "lines": lines,
        "recipient": shipment.ship_to.recipient.as_ref().map(CustomerName::as_str),
        "address": shipment.ship_to.address.as_ref().map(Address::as_str),
        "created_at": shipment.created_at.to_string(),
        "updated_at": shipment.updated_at.to_string(),
    })
}
