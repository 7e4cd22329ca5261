//! The one HTTP error type: every failure maps to a status code and a JSON
//! body `{"error": code, "message": text, "field"?: name}`. Internal causes
//! are logged, never sent (STYLE habit 3).

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openturret_domain::ValidationError;
use openturret_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid token (missing, unknown, expired or revoked), or bad
    /// credentials at login.
    #[error("authentication required")]
    Unauthorized(&'static str),
    #[error("{1}")]
    Forbidden(&'static str, String),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A value failed validation: which field and why.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A value clashes with a stored one (a name already in use).
    #[error("{field}: {reason}")]
    Duplicate { field: String, reason: String },
    /// The body is not the JSON the endpoint takes.
    #[error("{0}")]
    BadBody(String),
    #[error("too many attempts")]
    TooMany {
        retry_after: Duration,
        message: String,
    },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
    /// What this deployment cannot do yet, and what to do instead.
    #[error("{0}")]
    NotImplemented(&'static str),
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid {
            field: e.field,
            reason: e.reason,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Conflict { field, reason } => ApiError::Duplicate { field, reason },
            StoreError::Invalid(v) => v.into(),
            other => ApiError::Internal(other.into()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::Unauthorized(msg) => (
                StatusCode::UNAUTHORIZED,
                json!({"error": "unauthorized", "message": msg}),
            ),
            ApiError::Forbidden(code, msg) => (
                StatusCode::FORBIDDEN,
                json!({"error": code, "message": msg}),
            ),
            ApiError::NotFound(what) => (
                StatusCode::NOT_FOUND,
                json!({"error": "not_found", "message": format!("{what} not found")}),
            ),
            ApiError::Invalid { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid", "field": field, "message": format!("{field} {reason}")}),
            ),
            ApiError::Duplicate { field, reason } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "duplicate", "field": field, "message": format!("{field} {reason}")}),
            ),
            ApiError::BadBody(msg) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": "invalid_body", "message": msg}),
            ),
            ApiError::TooMany {
                retry_after,
                message,
            } => (
                StatusCode::TOO_MANY_REQUESTS,
                json!({"error": "too_many_attempts", "message": message,
                       "retry_after_secs": retry_after.as_secs().max(1)}),
            ),
            ApiError::NotImplemented(msg) => (
                StatusCode::NOT_IMPLEMENTED,
                json!({"error": "not_implemented", "message": msg}),
            ),
            ApiError::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "internal", "message": "internal error; the server log has details"}),
                )
            }
        };
        let mut res = (status, axum::Json(body)).into_response();
        if let ApiError::Internal(cause) = &self {
            res.extensions_mut().insert(InternalFailure::of(cause));
        }
        match &self {
            ApiError::Unauthorized(_) => {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooMany { retry_after, .. } => {
                res.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after.as_secs().max(1)),
                );
            }
            _ => {}
        }
        res
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// What kind of internal failure answered a request with 500, for the
/// error log (the cause itself stays in the server's log: it may name
/// what the request was about).
#[derive(Clone, Copy, Debug)]
pub struct InternalFailure {
    pub database: bool,
}

impl InternalFailure {
    pub fn of(cause: &anyhow::Error) -> InternalFailure {
        InternalFailure {
            database: cause.chain().any(|e| {
                matches!(
                    e.downcast_ref::<openturret_store::StoreError>(),
                    Some(
                        openturret_store::StoreError::Backend(_)
                            | openturret_store::StoreError::Integrity(_)
                    )
                )
            }),
        }
    }

    /// The error log's entry for it.
    pub fn event(self, route: &str) -> openturret_domain::model::Event {
        use openturret_domain::model::Event;
        if self.database {
            Event::error(
                "database.error",
                "database",
                "requests failed because the database did not answer as it should (the server's log has the cause)",
            )
        } else {
            Event::error(
                "server.internal_error",
                "",
                "requests failed with an internal error (the server's log has the cause)",
            )
        }
        .with("route", route)
    }
}
