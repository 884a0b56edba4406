//! The API's errors: JSON `{"error": {"code", "message"}}` with the status that fits, in the
//! API's terms (fields and query parameters, not command-line flags or file paths); bad
//! input is never a 500, and a 500 tells the client nothing of the server's insides (the
//! cause goes to the service's log).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable machine-readable code (`no_face`, `busy`, ...).
    pub code: &'static str,
    /// What went wrong, in the API's terms.
    pub message: String,
}

impl ApiError {
    /// An error with its status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    /// A 400 `bad_request`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// A fault of the service: `cause` is logged, the client reads a generic message.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        eprintln!("maskid: internal error: {cause}");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error (the cause is in the service's log)")
    }

    /// Retryable: the service or its gallery cannot take the request now.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// The same error about the request's image `field` (verify takes two).
    pub fn about_image(mut self, field: &str) -> Self {
        if self.status.is_client_error() {
            self.message = format!("image '{field}': {}", self.message);
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": { "code": self.code, "message": self.message } });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<maskid_gallery::Error> for ApiError {
    fn from(e: maskid_gallery::Error) -> Self {
        use maskid_gallery::Error as E;
        match e {
            E::Duplicate(what) => Self::new(StatusCode::CONFLICT, "duplicate", what.to_string()),
            E::NotFound(what) => Self::new(StatusCode::NOT_FOUND, "not_found", what.to_string()),
            e @ E::ModelMismatch { .. } => Self::new(StatusCode::CONFLICT, "model_mismatch", e.to_string()),
            E::Invalid(what) => Self::new(StatusCode::BAD_REQUEST, "invalid", what.to_string()),
            e @ E::Busy { .. } => {
                eprintln!("maskid: {}", maskid_core::error_message(&e));
                Self::unavailable("gallery_busy", "the gallery is locked by another writer; retry")
            }
            E::Unavailable { gallery, reason } => {
                eprintln!("maskid: gallery {gallery} unavailable: {reason}");
                Self::unavailable("gallery_unavailable", "the gallery's database cannot be reached now; retry")
            }
            other => Self::internal(maskid_core::error_message(&other)),
        }
    }
}

impl From<maskid_pipeline::Error> for ApiError {
    fn from(e: maskid_pipeline::Error) -> Self {
        match e {
            maskid_pipeline::Error::Face(face) => face.into(),
            maskid_pipeline::Error::Gallery(gallery) => gallery.into(),
            e @ (maskid_pipeline::Error::Threshold { .. }
            | maskid_pipeline::Error::Fpir { .. }
            | maskid_pipeline::Error::ThresholdAndFpir
            | maskid_pipeline::Error::NoCalibration { .. }) => Self::bad_request(e.to_string()),
            maskid_pipeline::Error::PoorReference { problems } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "poor_reference",
                format!("a poor reference ({problems}): send a sharper photo facing the camera, or enrol it anyway with ?allow_poor=true"),
            ),
            other => Self::internal(maskid_core::error_message(&other)),
        }
    }
}

impl From<maskid_face::Error> for ApiError {
    fn from(e: maskid_face::Error) -> Self {
        use maskid_face::Error as E;
        let unprocessable = |code, message: String| Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message);
        match e {
            E::BadImage { reason, .. } => {
                Self::new(StatusCode::BAD_REQUEST, "bad_image", format!("not a readable image ({reason})"))
            }
            E::TooLarge { width, height, megapixels, limit_mp, .. } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "image_too_large",
                format!(
                    "the image is {width}x{height} ({megapixels:.1} MP); this service takes at most {limit_mp:.1} MP"
                ),
            ),
            E::NoFace { threshold, .. } => {
                unprocessable("no_face", format!("no face found (detector score threshold {threshold})"))
            }
            E::SeveralFaces { count, .. } => unprocessable(
                "several_faces",
                format!(
                    "{count} faces found where exactly one is needed; choose one with ?face=largest or ?face=center"
                ),
            ),
            E::Landmarks(why) => unprocessable("face_unusable", format!("the face cannot be aligned: {why}")),
            other => Self::internal(maskid_core::error_message(&other)),
        }
    }
}
