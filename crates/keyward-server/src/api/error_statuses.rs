//! The API and the dashboard answer a service's errors with the same
//! statuses but for the differences written beside both mappings.

use axum::http::StatusCode;
use keyward_service::StoreError;
use keyward_service::{AuthError, ServiceError};

use super::error::ApiError;

/// One error of every kind, with the status the dashboard answers where it
/// differs from the API on purpose.
fn errors() -> Vec<(ServiceError, Option<StatusCode>)> {
    vec![
        (
            ServiceError::Unauthenticated(AuthError::Missing),
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            ServiceError::Unauthenticated(AuthError::Revoked),
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            ServiceError::NotFound {
                what: "key",
                id: "key_x".into(),
            },
            None,
        ),
        (
            ServiceError::Invalid {
                param: Some("name"),
                message: "bad".into(),
            },
            None,
        ),
        (
            ServiceError::PermissionDenied {
                scope: "api.management.write".into(),
                hint: "",
            },
            Some(StatusCode::FORBIDDEN),
        ),
        (
            ServiceError::Conflict("taken".into()),
            Some(StatusCode::BAD_REQUEST),
        ),
        (ServiceError::Refused("closed".into()), None),
        (
            ServiceError::KeyCapReached(3),
            Some(StatusCode::BAD_REQUEST),
        ),
        (
            ServiceError::Store(StoreError::Corrupt("test".into())),
            None,
        ),
    ]
}

#[test]
fn dashboard_differs_from_the_api_only_where_written() {
    for (e, page_differs) in errors() {
        let what = format!("{e:?}");
        let page = keyward_dashboard::status_of(&e);
        let api = ApiError::from(e).status();
        match page_differs {
            None => assert_eq!(page, api, "{what}"),
            Some(status) => {
                assert_eq!(page, status, "{what}");
                assert_ne!(page, api, "{what}: no longer a difference; drop it");
            }
        }
    }
}
