//! Errors. [`AppError`] variants are what a caller acts on; the ingress maps each to one HTTP
//! status (and, on a socket, to an error frame). Adapters return [`StoreError`].

/// A business-rule or input error, or an infrastructure failure.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is understood but not allowed in the current state.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid session.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// 404: the thing does not exist (or is hidden from the caller).
    #[error("{0}")]
    NotFound(String),
    /// 422: a field is malformed or out of bounds; `more` has the other fields of the same
    /// request found wrong, so a form can show every problem at once.
    #[error("{message}")]
    Validation {
        field: String,
        message: String,
        more: Vec<(String, String)>,
    },
    /// 413: the request's content is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// 415: content of a kind that is not accepted.
    #[error("{0}")]
    Unsupported(String),
    /// 429: throttled; retry after the given number of seconds.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_secs: u64,
    },
    /// 503: a dependency is down; the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a defect or an unexpected store failure (logged, never shown in detail).
    #[error("internal error: {0:#}")]
    Internal(anyhow::Error),
}

impl AppError {
    pub fn validation(field: &str, message: impl Into<String>) -> Self {
        AppError::Validation {
            field: field.to_string(),
            message: message.into(),
            more: Vec::new(),
        }
    }
    /// Both results, or every field error of the two in one (any other error as it is).
    pub fn both<A, B>(a: AppResult<A>, b: AppResult<B>) -> AppResult<(A, B)> {
        match (a, b) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            (
                Err(AppError::Validation {
                    field,
                    message,
                    mut more,
                }),
                Err(AppError::Validation {
                    field: f2,
                    message: m2,
                    more: more2,
                }),
            ) => {
                more.push((f2, m2));
                more.extend(more2);
                Err(AppError::Validation {
                    field,
                    message,
                    more,
                })
            }
            (Err(e), _) | (_, Err(e)) => Err(e),
        }
    }
    pub fn not_found(what: &str) -> Self {
        AppError::NotFound(format!("{what} not found"))
    }
    /// The original's message for a non-member touching a room.
    pub fn room_forbidden() -> Self {
        AppError::Forbidden("User can't access room".into())
    }
    /// Short machine-readable code used in WebSocket error frames.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::BadRequest(_) => "bad_request",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Validation { .. } => "invalid",
            AppError::TooLarge(_) => "too_large",
            AppError::Unsupported(_) => "unsupported",
            AppError::TooManyRequests { .. } => "rate_limited",
            AppError::Unavailable(_) => "unavailable",
            AppError::Internal(_) => "internal",
        }
    }
}

/// What a store adapter reports; translated to [`AppError`] by the service.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was hit (the value names what collided).
    #[error("already exists: {0}")]
    Conflict(String),
    /// The store cannot be reached right now; retryable.
    #[error("store unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Anything else.
    #[error("store failure: {0:#}")]
    Other(anyhow::Error),
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => AppError::BadRequest(format!("{what} already exists")),
            StoreError::Unavailable(e) => {
                AppError::Unavailable(format!("storage unavailable: {e:#}"))
            }
            StoreError::Other(e) => AppError::Internal(e),
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;
pub type StoreResult<T> = Result<T, StoreError>;
