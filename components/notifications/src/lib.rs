//! `notifications`: the notification service's reads, over HTTP (the Redis- and
//! cron-triggered `notification` and `notification-sweeper` record them).
//!
//! - `GET /notifications?limit=&after=`: notifications in the order their orders became final,
//!   1 to 1000 per page (100 unless asked); `next` is the cursor for `after`.
//! - `GET /notifications/:order_id`: the order's notification, 404 until it has one.
//! - `GET /notifications/health`: the service and its database.
//!
//! Served at `/notifications/...` and privately (`http://notifications.spin.internal`), which
//! the gateway forwards `/api/notifications/...` to.

use guest_kit::{Incoming, SpinSql};
use http_problem::Problem;
use notification_core::{MAX_PAGE, Notification, NotificationError, Notifier};
use orders_core::OrderId;
use serde_json::json;
use spin_sdk::http::{IncomingRequest, Method, Response, ResponseOutparam};
use spin_sdk::http_component;

/// Notifications a page holds when the client does not say.
const DEFAULT_LIMIT: u32 = 100;

#[http_component]
async fn handle(request: IncomingRequest, out: ResponseOutparam) {
    // Reads only: no body is taken.
    guest_kit::serve(request, out, 0, async |request| route(request)).await;
}

fn route(request: &Incoming) -> Response {
    if request.method != Method::Get {
        return guest_kit::method_not_allowed("GET");
    }
    let answer = match request.path_info.trim_start_matches('/') {
        "" => list(&request.query),
        "health" => health(),
        id if !id.contains('/') => show(id),
        _ => return guest_kit::not_found(format!("no resource at {}", request.path)),
    };
    answer.unwrap_or_else(|problem| guest_kit::problem(&problem))
}

fn list(query: &str) -> Result<Response, Problem> {
    let mut limit = DEFAULT_LIMIT;
    let mut after = None;
    for (key, value) in guest_kit::query_pairs(query) {
        let bad = |detail: String| {
            Problem::new(400, "Bad Request").with_detail(format!("{key}: {detail}"))
        };
        match key.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE).contains(n))
                    .ok_or_else(|| bad(format!("must be a whole number from 1 to {MAX_PAGE}")))?
            }
            "after" => {
                after = Some(
                    value
                        .parse::<u64>()
                        .map_err(|_| bad("must be a page's next cursor".into()))?,
                )
            }
            _ => {}
        }
    }
    let sql = open()?;
    let page = Notifier::new(&sql)
        .notifications(after, limit)
        .map_err(unavailable)?;
    Ok(guest_kit::json(
        200,
        &json!({
            "notifications": page.notifications,
            "next": page.next.map(|next| next.to_string()),
        }),
    ))
}

fn show(id: &str) -> Result<Response, Problem> {
    let no_notification =
        || Problem::new(404, "Not Found").with_detail(format!("no notification for order {id:?}"));
    let id = OrderId::parse(id).map_err(|_| no_notification())?;
    let sql = open()?;
    let found: Option<Notification> = Notifier::new(&sql).notification(&id).map_err(unavailable)?;
    found
        .map(|notification| guest_kit::json(200, &notification))
        .ok_or_else(no_notification)
}

fn health() -> Result<Response, Problem> {
    let sql = open()?;
    Notifier::new(&sql)
        .notifications(None, 1)
        .map_err(unavailable)?;
    Ok(guest_kit::json(
        200,
        &json!({"service": "notifications", "status": "healthy"}),
    ))
}

fn open() -> Result<SpinSql, Problem> {
    SpinSql::open_default().map_err(|error| {
        Problem::new(503, "Service Unavailable").with_detail(format!("the database: {error}"))
    })
}

fn unavailable(error: NotificationError) -> Problem {
    Problem::new(503, "Service Unavailable").with_detail(guest_kit::error_chain(&error))
}
