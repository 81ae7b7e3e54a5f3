//! Who may call a route, answered as a problem response: the admin guard (`admin_token`) and
//! the internal guard (`internal_token`), decided by `guest_kit_core::access`.

use crate::{Incoming, problem, variable};
use guest_kit_core::access::{Denied, INTERNAL_TOKEN_HEADER, check_admin, check_internal};
use http_problem::Problem;
use spin_sdk::http::Response;

/// Admin routes: `Authorization: Bearer <admin_token>` when the `admin_token` variable is set
/// (401 `/problems/admin-token` otherwise); loopback and service-chained clients only when it
/// is not (403 `/problems/admin-loopback-only`). The component must list `admin_token` among
/// its variables.
pub fn admin(request: &Incoming) -> Result<(), Response> {
    let token = variable("admin_token");
    check_admin(
        token.as_deref(),
        request.header("authorization"),
        request.header("spin-client-addr"),
    )
    .map_err(|denied| match denied {
        Denied::Token => {
            let mut response = problem(
                &Problem::new(401, "Unauthorized")
                    .with_type("/problems/admin-token")
                    .with_detail("admin routes need Authorization: Bearer <admin_token>"),
            );
            response.set_header("www-authenticate", "Bearer");
            response
        }
        Denied::NotLocal => problem(
            &Problem::new(403, "Forbidden")
                .with_type("/problems/admin-loopback-only")
                .with_detail(
                    "admin routes answer only clients on this machine unless the admin_token \
                     variable is set",
                ),
        ),
    })
}

/// A service's internal routes: service-chained calls pass; other callers need header
/// `x-orderly-internal-token: <internal_token>` when the `internal_token` variable is set
/// (401 `/problems/internal-token` otherwise), and must be on this machine when it is not
/// (403 `/problems/internal-loopback-only`). The component must list `internal_token` among
/// its variables.
pub fn internal(request: &Incoming) -> Result<(), Response> {
    let token = variable("internal_token");
    check_internal(
        token.as_deref(),
        request.header(INTERNAL_TOKEN_HEADER),
        request.header("spin-client-addr"),
    )
    .map_err(|denied| match denied {
        Denied::Token => problem(
            &Problem::new(401, "Unauthorized")
                .with_type("/problems/internal-token")
                .with_detail(format!(
                    "internal routes need the header {INTERNAL_TOKEN_HEADER}: <internal_token>"
                )),
        ),
        Denied::NotLocal => problem(
            &Problem::new(403, "Forbidden")
                .with_type("/problems/internal-loopback-only")
                .with_detail(
                    "internal routes answer only clients on this machine unless the \
                     internal_token variable is set",
                ),
        ),
    })
}

/// The gate in front of a service's own routes: the internal guard, then the fault controls
/// (`/configure`, `/set_failure_mode`, `/get_failure_mode`) behind the admin guard. `Some`
/// answer when the gate answers (a refusal, or a fault route); `None` to route the request.
pub fn service_gate(service: &str, request: &Incoming) -> Option<Response> {
    if let Err(refusal) = internal(request) {
        return Some(refusal);
    }
    if crate::faults::is_route(&request.path_info) {
        return Some(match admin(request) {
            Ok(()) => crate::faults::routes(service, request)?,
            Err(refusal) => refusal,
        });
    }
    None
}
