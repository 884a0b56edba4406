//! API keys: random secrets shown once at creation, stored as their SHA-256 (a 256-bit random
//! secret needs no slow hash), each with a role. Roles are ordered: admin can do what write
//! can, write what read can.

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};

pub use maskid_gallery::Role;

use crate::error::ApiError;

/// A new secret: `mk_` and 64 hex digits from the operating system's random source.
pub fn new_secret() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(format!("mk_{}", hex::encode(bytes)))
}

/// What is stored for a secret.
pub fn secret_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The secret a request presents: `Authorization: Bearer KEY` (any case of `Bearer`) or
/// `X-API-Key: KEY`.
pub fn presented_secret(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    if let Some(value) = headers.get("x-api-key") {
        return value.to_str().map_err(|_| unauthorized("the X-API-Key header is not text"));
    }
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(unauthorized("an API key is required: Authorization: Bearer KEY (see `maskid keys create`)"));
    };
    let value = value.to_str().map_err(|_| unauthorized("the Authorization header is not text"))?;
    // The scheme is case-insensitive (RFC 9110, 11.1).
    match value.trim_start().split_once(' ') {
        Some((scheme, key)) if scheme.eq_ignore_ascii_case("bearer") && !key.trim().is_empty() => Ok(key.trim()),
        _ => Err(unauthorized("use Authorization: Bearer KEY")),
    }
}
