//! The one error type commands return: a code the UI switches on and a message it shows.

use serde::Serialize;
use specta::Type;

/// What kind of failure: the UI picks its wording and actions by this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Type)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorCode {
    /// The engine (VM) is not running, or its socket does not answer.
    EngineNotRunning,
    NotFound,
    /// The object is in use or in the wrong state (dockerd's 409).
    Conflict,
    /// The request was refused as malformed (dockerd's 400).
    InvalidInput,
    Internal,
}

#[derive(Debug, Clone, Serialize, Type, thiserror::Error)]
#[error("{message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        AppError {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::Internal, e.to_string())
    }
}

impl From<bollard::errors::Error> for AppError {
    fn from(e: bollard::errors::Error) -> Self {
        use bollard::errors::Error as E;
        match e {
            E::DockerResponseServerError {
                status_code,
                message,
            } => {
                let code = match status_code {
                    404 => ErrorCode::NotFound,
                    409 => ErrorCode::Conflict,
                    400 => ErrorCode::InvalidInput,
                    _ => ErrorCode::Internal,
                };
                AppError::new(code, message)
            }
            E::SocketNotFoundError(path) => AppError::new(
                ErrorCode::EngineNotRunning,
                format!("the engine's socket {path} is not there"),
            ),
            E::IOError { err } => AppError::new(
                ErrorCode::EngineNotRunning,
                format!("the engine does not answer: {err}"),
            ),
            E::HyperResponseError { err } if err.is_closed() || err.is_incomplete_message() => {
                AppError::new(
                    ErrorCode::EngineNotRunning,
                    format!("the engine does not answer: {err}"),
                )
            }
            other => AppError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerd_statuses_become_codes_the_ui_switches_on() {
        let e: AppError = bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message: "container is running".into(),
        }
        .into();
        assert_eq!(e.code, ErrorCode::Conflict);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "conflict", "message": "container is running"})
        );
        let e: AppError = bollard::errors::Error::IOError {
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
        .into();
        assert_eq!(e.code, ErrorCode::EngineNotRunning);
    }
}
