//! The API's errors: JSON `{"error": {"code", "message"}}` with the status that fits; bad
//! input is never a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, Json(body)).into_response()
    }
}

impl From<maskid_gallery::Error> for ApiError {
    fn from(e: maskid_gallery::Error) -> Self {
        use maskid_gallery::Error as E;
        let message = e.to_string();
        match e {
            E::Duplicate(_) => Self::new(StatusCode::CONFLICT, "duplicate", message),
            E::NotFound(_) => Self::new(StatusCode::NOT_FOUND, "not_found", message),
            E::ModelMismatch(_) => Self::new(StatusCode::CONFLICT, "model_mismatch", message),
            E::Invalid(_) => Self::new(StatusCode::BAD_REQUEST, "invalid", message),
            E::Database(_) => Self::internal(message),
        }
    }
}

impl From<maskid_pipeline::Error> for ApiError {
    fn from(e: maskid_pipeline::Error) -> Self {
        match e {
            maskid_pipeline::Error::Face(face) => face.into(),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<maskid_face::Error> for ApiError {
    fn from(e: maskid_face::Error) -> Self {
        use maskid_face::Error as E;
        let message = e.to_string();
        match e {
            E::BadImage { .. } => Self::new(StatusCode::BAD_REQUEST, "bad_image", message),
            E::TooLarge { .. } => Self::new(StatusCode::PAYLOAD_TOO_LARGE, "image_too_large", message),
            E::NoFace { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "no_face", message),
            E::SeveralFaces { .. } => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "several_faces", message),
            E::Landmarks(_) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "face_unusable", message),
            _ => Self::internal(message),
        }
    }
}
