//! The route table: which public path goes to which service, under which path, for which
//! methods, behind which guard. Everything is reached by service chaining
//! (`http://<component>.spin.internal/<path>`), so the services themselves stay private.

use serde::Serialize;

/// A component the gateway forwards to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// Orders: intake, reads, timelines, cancellation.
    Orders,
    /// Stock levels (and the service's fault controls).
    Inventory,
    /// Payments by order id.
    Payment,
    /// Shipments by order id.
    Shipping,
    /// Operator controls.
    Admin,
    /// Notifications of confirmed and cancelled orders.
    Notifications,
}

impl Service {
    /// Every service, in the order `/mesh/service-status` lists them.
    pub const ALL: [Service; 6] = [
        Service::Orders,
        Service::Inventory,
        Service::Payment,
        Service::Shipping,
        Service::Admin,
        Service::Notifications,
    ];

    /// The component's id in `spin.toml`.
    pub fn component(self) -> &'static str {
        match self {
            Service::Orders => "orders",
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Shipping => "shipping",
            Service::Admin => "admin",
            Service::Notifications => "notifications",
        }
    }

    /// The service-chaining origin, `http://<component>.spin.internal`.
    pub fn origin(self) -> String {
        format!("http://{}.spin.internal", self.component())
    }
}

/// Who may use a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Anyone (rate-limited).
    Public,
    /// Operators: `Authorization: Bearer <admin_token>`, or loopback clients when no token is
    /// set; the `Authorization` header is forwarded on these routes only.
    Admin,
}

/// A `/mesh/*` view the gateway answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshView {
    /// `/mesh/traffic-stats`.
    TrafficStats,
    /// `/mesh/service-status`.
    ServiceStatus,
    /// `/mesh/route-info`.
    RouteInfo,
}

/// A request to pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The service.
    pub service: Service,
    /// The path (and query) below the service's origin.
    pub path: String,
    /// The route's guard.
    pub access: Access,
}

impl Forward {
    /// The URL to call.
    pub fn url(&self) -> String {
        format!("{}{}", self.service.origin(), self.path)
    }
}

/// What answers a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `GET /api/health`: the gateway itself.
    Health,
    /// A `/mesh/*` view.
    Mesh(MeshView),
    /// A service, by chaining.
    Forward(Forward),
    /// The Campus seed's `POST /order`: a synchronous order (see [`crate::campus`]).
    CampusOrder,
}

/// The route table's answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// A route matched; `route` is its [`RouteEntry::id`].
    Found {
        /// The route's id.
        route: &'static str,
        /// What answers.
        target: Target,
    },
    /// A route matched the path but not the method.
    MethodNotAllowed {
        /// The route's id.
        route: &'static str,
        /// The methods it takes (`Allow`).
        allow: &'static str,
    },
    /// No route (or a path with `.`, `..` or empty segments where a name belongs).
    NotFound,
}

impl Resolution {
    /// The route's id for statistics and logs ([`UNMATCHED`] when none matched).
    pub fn route(&self) -> &'static str {
        match self {
            Resolution::Found { route, .. } | Resolution::MethodNotAllowed { route, .. } => route,
            Resolution::NotFound => UNMATCHED,
        }
    }
}

/// The route id statistics count requests that matched no route under.
pub const UNMATCHED: &str = "unmatched";

/// One row of the route table, as `/mesh/route-info` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct RouteEntry {
    /// A short id, used in statistics and logs.
    pub id: &'static str,
    /// The public path (`{name}` a segment, `...` any rest).
    pub route: &'static str,
    /// The methods it takes.
    pub methods: &'static str,
    /// Where it goes (`gateway` for the views it answers itself).
    pub upstream: &'static str,
    /// The guard.
    pub access: Access,
    /// Whether the client's rate limit applies.
    pub rate_limited: bool,
}

/// Every route, in the order they are documented.
pub const ROUTES: [RouteEntry; 15] = [
    entry(
        "health",
        "/api/health",
        "GET",
        "gateway",
        Access::Public,
        false,
    ),
    entry(
        "orders",
        "/api/orders/...",
        "GET, POST",
        "http://orders.spin.internal/...",
        Access::Public,
        true,
    ),
    entry(
        "campus-order",
        "/order",
        "POST",
        "http://orders.spin.internal/?mode=sync",
        Access::Public,
        true,
    ),
    entry(
        "inventory-stock",
        "/api/inventory/stock",
        "GET",
        "http://inventory.spin.internal/stock",
        Access::Public,
        true,
    ),
    entry(
        "inventory-sku",
        "/api/inventory/stock/{sku}",
        "GET",
        "http://inventory.spin.internal/stock/{sku}",
        Access::Public,
        true,
    ),
    entry(
        "payment",
        "/api/payments/{order_id}",
        "GET",
        "http://payment.spin.internal/payments/{order_id}",
        Access::Public,
        true,
    ),
    entry(
        "shipment",
        "/api/shipments/{order_id}",
        "GET",
        "http://shipping.spin.internal/shipments/{order_id}",
        Access::Public,
        true,
    ),
    entry(
        "notifications",
        "/api/notifications/...",
        "GET",
        "http://notifications.spin.internal/...",
        Access::Public,
        true,
    ),
    entry(
        "inventory-configure",
        "/api/inventory/configure",
        "GET, POST",
        "http://inventory.spin.internal/configure",
        Access::Admin,
        true,
    ),
    entry(
        "payment-configure",
        "/api/payment/configure",
        "GET, POST",
        "http://payment.spin.internal/configure",
        Access::Admin,
        true,
    ),
    entry(
        "shipping-configure",
        "/api/shipping/configure",
        "GET, POST",
        "http://shipping.spin.internal/configure",
        Access::Admin,
        true,
    ),
    entry(
        "admin",
        "/api/admin/...",
        "any",
        "http://admin.spin.internal/...",
        Access::Admin,
        true,
    ),
    entry(
        "mesh-traffic-stats",
        "/mesh/traffic-stats",
        "GET",
        "gateway",
        Access::Public,
        false,
    ),
    entry(
        "mesh-service-status",
        "/mesh/service-status",
        "GET",
        "gateway",
        Access::Public,
        false,
    ),
    entry(
        "mesh-route-info",
        "/mesh/route-info",
        "GET",
        "gateway",
        Access::Public,
        false,
    ),
];

const fn entry(
    id: &'static str,
    route: &'static str,
    methods: &'static str,
    upstream: &'static str,
    access: Access,
    rate_limited: bool,
) -> RouteEntry {
    RouteEntry {
        id,
        route,
        methods,
        upstream,
        access,
        rate_limited,
    }
}

/// Whether the client's rate limit applies to `path`: everything under `/api/` except
/// `/api/health` (unknown routes included, so probing for routes costs the same), and the
/// Campus `/order`; nothing under `/mesh/`.
pub fn rate_limited(path: &str) -> bool {
    (path.starts_with("/api/") && path != "/api/health") || path == CAMPUS_ORDER
}

/// The Campus seed's order route.
const CAMPUS_ORDER: &str = "/order";

/// Resolves `method path?query` (the path as received, still percent-encoded).
pub fn resolve(method: &str, path: &str, query: &str) -> Resolution {
    if let Some(view) = path.strip_prefix("/mesh/") {
        let view = match view {
            "traffic-stats" => ("mesh-traffic-stats", MeshView::TrafficStats),
            "service-status" => ("mesh-service-status", MeshView::ServiceStatus),
            "route-info" => ("mesh-route-info", MeshView::RouteInfo),
            _ => return Resolution::NotFound,
        };
        return only(method, &["GET"], "GET", view.0, Target::Mesh(view.1));
    }
    if path == CAMPUS_ORDER {
        return only(
            method,
            &["POST"],
            "POST",
            "campus-order",
            Target::CampusOrder,
        );
    }
    let Some(rest) = path.strip_prefix("/api/") else {
        return Resolution::NotFound;
    };
    let segments: Vec<&str> = rest.split('/').collect();
    if segments
        .iter()
        .any(|segment| matches!(*segment, "." | ".."))
    {
        return Resolution::NotFound;
    }
    let forward = |service, path: String, access| {
        Target::Forward(Forward {
            service,
            path: with_query(path, query),
            access,
        })
    };
    let named = |segment: &str| !segment.is_empty();
    match segments.as_slice() {
        ["health"] => only(method, &["GET"], "GET", "health", Target::Health),
        ["orders", below @ ..] => {
            let path = format!("/{}", below.join("/"));
            Resolution::Found {
                route: "orders",
                target: forward(Service::Orders, path, Access::Public),
            }
        }
        ["inventory", "stock"] => only(
            method,
            &["GET"],
            "GET",
            "inventory-stock",
            forward(Service::Inventory, "/stock".into(), Access::Public),
        ),
        ["inventory", "stock", sku] if named(sku) => only(
            method,
            &["GET"],
            "GET",
            "inventory-sku",
            forward(Service::Inventory, format!("/stock/{sku}"), Access::Public),
        ),
        [
            service @ ("inventory" | "payment" | "shipping"),
            "configure",
        ] => {
            let (route, service) = match *service {
                "inventory" => ("inventory-configure", Service::Inventory),
                "payment" => ("payment-configure", Service::Payment),
                _ => ("shipping-configure", Service::Shipping),
            };
            only(
                method,
                &["GET", "POST"],
                "GET, POST",
                route,
                forward(service, "/configure".into(), Access::Admin),
            )
        }
        ["payments", id] if named(id) => only(
            method,
            &["GET"],
            "GET",
            "payment",
            forward(Service::Payment, format!("/payments/{id}"), Access::Public),
        ),
        ["shipments", id] if named(id) => only(
            method,
            &["GET"],
            "GET",
            "shipment",
            forward(
                Service::Shipping,
                format!("/shipments/{id}"),
                Access::Public,
            ),
        ),
        ["notifications", below @ ..] => only(
            method,
            &["GET"],
            "GET",
            "notifications",
            forward(
                Service::Notifications,
                format!("/{}", below.join("/")),
                Access::Public,
            ),
        ),
        ["admin", below @ ..] => Resolution::Found {
            route: "admin",
            target: forward(
                Service::Admin,
                format!("/{}", below.join("/")),
                Access::Admin,
            ),
        },
        _ => Resolution::NotFound,
    }
}

fn only(
    method: &str,
    methods: &[&str],
    allow: &'static str,
    route: &'static str,
    target: Target,
) -> Resolution {
    if methods.contains(&method) {
        Resolution::Found { route, target }
    } else {
        Resolution::MethodNotAllowed { route, allow }
    }
}

fn with_query(path: String, query: &str) -> String {
    if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(method: &str, path: &str, query: &str) -> (String, Access) {
        match resolve(method, path, query) {
            Resolution::Found {
                target: Target::Forward(forward),
                ..
            } => (forward.url(), forward.access),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn public_routes_go_to_their_service_by_chaining() {
        let public = |url: &str| (url.to_owned(), Access::Public);
        assert_eq!(
            forward("POST", "/api/orders", ""),
            public("http://orders.spin.internal/")
        );
        assert_eq!(
            forward("GET", "/api/orders/", "status=validated&limit=5"),
            public("http://orders.spin.internal/?status=validated&limit=5")
        );
        assert_eq!(
            forward("GET", "/api/orders/o-1/events", ""),
            public("http://orders.spin.internal/o-1/events")
        );
        assert_eq!(
            forward("GET", "/api/inventory/stock", ""),
            public("http://inventory.spin.internal/stock")
        );
        assert_eq!(
            forward("GET", "/api/inventory/stock/Medicine%20A", ""),
            public("http://inventory.spin.internal/stock/Medicine%20A")
        );
        assert_eq!(
            forward("GET", "/api/payments/o-1", ""),
            public("http://payment.spin.internal/payments/o-1")
        );
        assert_eq!(
            forward("GET", "/api/shipments/o-1", ""),
            public("http://shipping.spin.internal/shipments/o-1")
        );
        assert_eq!(
            forward("GET", "/api/notifications", "limit=5"),
            public("http://notifications.spin.internal/?limit=5")
        );
        assert_eq!(
            forward("GET", "/api/notifications/o-1", ""),
            public("http://notifications.spin.internal/o-1")
        );
        assert!(matches!(
            resolve("POST", "/api/notifications/o-1", ""),
            Resolution::MethodNotAllowed { allow: "GET", .. }
        ));
    }

    #[test]
    fn admin_and_fault_controls_are_guarded() {
        let admin = |url: &str| (url.to_owned(), Access::Admin);
        assert_eq!(
            forward("DELETE", "/api/admin/orders", ""),
            admin("http://admin.spin.internal/orders")
        );
        assert_eq!(
            forward("GET", "/api/admin/breaker", ""),
            admin("http://admin.spin.internal/breaker")
        );
        for service in ["inventory", "payment", "shipping"] {
            assert_eq!(
                forward("POST", &format!("/api/{service}/configure"), ""),
                admin(&format!("http://{service}.spin.internal/configure"))
            );
        }
    }

    #[test]
    fn work_routes_of_the_services_are_not_public() {
        for (method, path) in [
            ("POST", "/api/inventory/reservations"),
            ("POST", "/api/payments"),
            ("GET", "/api/payments"),
            ("GET", "/api/payments/"),
            ("POST", "/api/shipments/o-1/cancel"),
            ("GET", "/api/inventory/stock/"),
            ("GET", "/api/internal/inventory/stock"),
            ("GET", "/api/orders/../admin/orders"),
            ("GET", "/api/admin/./orders"),
            ("GET", "/api"),
            ("GET", "/orders"),
            ("GET", "/mesh/other"),
        ] {
            assert_eq!(resolve(method, path, ""), Resolution::NotFound, "{path}");
        }
        assert_eq!(
            resolve("POST", "/api/inventory/stock", ""),
            Resolution::MethodNotAllowed {
                route: "inventory-stock",
                allow: "GET"
            }
        );
        assert_eq!(
            resolve("DELETE", "/api/payment/configure", ""),
            Resolution::MethodNotAllowed {
                route: "payment-configure",
                allow: "GET, POST"
            }
        );
    }

    #[test]
    fn the_gateway_answers_health_and_the_mesh_views_itself() {
        assert_eq!(
            resolve("GET", "/api/health", ""),
            Resolution::Found {
                route: "health",
                target: Target::Health
            }
        );
        assert_eq!(
            resolve("GET", "/mesh/route-info", ""),
            Resolution::Found {
                route: "mesh-route-info",
                target: Target::Mesh(MeshView::RouteInfo)
            }
        );
        assert!(!rate_limited("/api/health"));
        assert!(!rate_limited("/mesh/traffic-stats"));
        assert!(rate_limited("/api/orders"));
        assert!(rate_limited("/api/nothing-here"));
    }

    #[test]
    fn every_resolved_route_is_in_the_table() {
        let paths = [
            ("GET", "/api/health"),
            ("GET", "/api/orders"),
            ("POST", "/order"),
            ("GET", "/api/inventory/stock"),
            ("GET", "/api/inventory/stock/x"),
            ("GET", "/api/payments/x"),
            ("GET", "/api/shipments/x"),
            ("GET", "/api/notifications/x"),
            ("GET", "/api/inventory/configure"),
            ("GET", "/api/payment/configure"),
            ("GET", "/api/shipping/configure"),
            ("GET", "/api/admin/stats"),
            ("GET", "/mesh/traffic-stats"),
            ("GET", "/mesh/service-status"),
            ("GET", "/mesh/route-info"),
        ];
        let resolved: Vec<&str> = paths
            .iter()
            .map(|(method, path)| resolve(method, path, "").route())
            .collect();
        let table: Vec<&str> = ROUTES.iter().map(|entry| entry.id).collect();
        assert_eq!(resolved, table);
        for entry in ROUTES {
            assert_eq!(
                entry.rate_limited,
                rate_limited(entry.route),
                "{}",
                entry.id
            );
        }
    }
}
