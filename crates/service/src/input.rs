//! Images in request bodies: `multipart/form-data` (a file field per image, an optional
//! `metadata` text field holding JSON), `application/json` (`<field>_base64` strings and an
//! optional `metadata` object), or a raw `image/*` body when one image is expected.

use std::collections::HashMap;

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use bytes::Bytes;

use crate::error::ApiError;

/// The images (by field name) and metadata of a request.
pub struct Upload {
    pub images: HashMap<String, Bytes>,
    pub metadata: Option<serde_json::Value>,
}

impl Upload {
    /// The image of `field`.
    pub fn image(&self, field: &str) -> Result<Bytes, ApiError> {
        self.images
            .get(field)
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("the request has no image '{field}'")))
    }
}

/// The request's `Content-Type` as sent, and its media type in lower case without parameters.
pub fn content_type(headers: &HeaderMap) -> (&str, String) {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    (content_type, content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
}

/// 415 for a body of `content_type`, saying what to send instead.
pub fn unsupported_media_type(content_type: &str, expected: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        format!("content type '{content_type}': send {expected}"),
    )
}

/// Reads the images `fields` (all required) from a request body.
pub async fn read_upload(headers: &HeaderMap, body: Bytes, fields: &[&str]) -> Result<Upload, ApiError> {
    let (content_type, mime) = content_type(headers);
    let upload = if mime == "multipart/form-data" {
        multipart(content_type, body, fields).await?
    } else if mime == "application/json" {
        json(&body, fields)?
    } else if (mime.starts_with("image/") || mime == "application/octet-stream") && fields.len() == 1 {
        Upload { images: HashMap::from([(fields[0].to_string(), body)]), metadata: None }
    } else {
        let expected = if fields.len() == 1 {
            "multipart/form-data, application/json or image/*"
        } else {
            "multipart/form-data or application/json"
        };
        return Err(unsupported_media_type(content_type, expected));
    };
    for field in fields {
        upload.image(field)?;
    }
    Ok(upload)
}

async fn multipart(content_type: &str, body: Bytes, fields: &[&str]) -> Result<Upload, ApiError> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::bad_request(format!("multipart without a usable boundary: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut parts = multer::Multipart::new(stream, boundary);
    let mut upload = Upload { images: HashMap::new(), metadata: None };
    let bad = |e: multer::Error| ApiError::bad_request(format!("malformed multipart body: {e}"));
    while let Some(field) = parts.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or("").to_string();
        let data = field.bytes().await.map_err(bad)?;
        if name == "metadata" {
            if upload.metadata.replace(parse_metadata(&data)?).is_some() {
                return Err(ApiError::bad_request("the multipart field 'metadata' appears twice"));
            }
        } else if fields.contains(&name.as_str()) {
            if upload.images.insert(name.clone(), data).is_some() {
                return Err(ApiError::bad_request(format!("the multipart field '{name}' appears twice")));
            }
        } else {
            return Err(ApiError::bad_request(format!("unexpected multipart field '{name}' (expected {fields:?})")));
        }
    }
    Ok(upload)
}

fn json(body: &[u8], fields: &[&str]) -> Result<Upload, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| ApiError::bad_request("the JSON body must be an object"))?;
    let mut images = HashMap::new();
    for field in fields {
        let key = format!("{field}_base64");
        let text = object
            .get(&key)
            .and_then(|v| v.as_str())
            .ok_or_else(|| ApiError::bad_request(format!("the JSON body needs a string '{key}'")))?;
        // A data URI (`data:image/jpeg;base64,...`, what a browser's FileReader gives) is
        // taken as its base64 part.
        let text = text.trim();
        let text = match text.strip_prefix("data:").and_then(|uri| uri.split_once(";base64,")) {
            Some((_, data)) => data,
            None => text,
        };
        let bytes = base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| {
            ApiError::bad_request(format!("'{key}' is not base64 (plain, or a data:image/...;base64, URI): {e}"))
        })?;
        images.insert(field.to_string(), Bytes::from(bytes));
    }
    let metadata = object.get("metadata").cloned();
    if metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request("'metadata' must be a JSON object"));
    }
    Ok(Upload { images, metadata })
}

fn parse_metadata(data: &[u8]) -> Result<serde_json::Value, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| ApiError::bad_request(format!("'metadata' is not JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("'metadata' must be a JSON object"));
    }
    Ok(value)
}
