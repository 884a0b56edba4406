//! API keys: random secrets shown once at creation, stored as their SHA-256 (a 256-bit random
//! secret needs no slow hash), each with a role. Roles are ordered: admin can do what write
//! can, write what read can.
//!
//! A key found in the gallery is remembered for [`KEY_CACHE_TTL`], so good keys do not queue
//! behind a flood of bad ones for the gallery; a removed key stops working within that time.
//! Unknown keys are looked up at most [`KEY_LOOKUPS`] at a time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

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
/// `X-API-Key: KEY`, exactly one of them, once: a request with two keys (a stale one beside
/// a good one) is refused rather than answered with whichever is read first.
pub fn presented_secret(headers: &HeaderMap) -> Result<&str, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    let api_keys = headers.get_all("x-api-key").iter().count();
    let authorizations = headers.get_all(axum::http::header::AUTHORIZATION).iter().count();
    if api_keys + authorizations > 1 {
        return Err(unauthorized(
            "more than one API key presented (X-API-Key and Authorization, or one twice): send one",
        ));
    }
    if let Some(value) = headers.get("x-api-key") {
        let key = value.to_str().map_err(|_| unauthorized("the X-API-Key header is not text"))?.trim();
        return if key.is_empty() { Err(unauthorized("the X-API-Key header is empty")) } else { Ok(key) };
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

/// How long a key found in the gallery is taken without asking it again.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);

/// Gallery lookups of keys not in the cache at once; more wait their turn.
pub const KEY_LOOKUPS: usize = 2;

/// Keys whose roles were read lately, by secret hash.
pub struct KeyCache {
    known: Mutex<HashMap<String, (Role, String, Instant)>>,
    /// Lookups of keys not known.
    pub lookups: Semaphore,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self { known: Mutex::default(), lookups: Semaphore::new(KEY_LOOKUPS) }
    }
}

impl KeyCache {
    /// Most keys remembered; past it the oldest are forgotten first.
    const CAPACITY: usize = 1024;

    /// The role and name of the key of this hash, if read within [`KEY_CACHE_TTL`].
    pub fn key(&self, hash: &str) -> Option<(Role, String)> {
        let known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        known.get(hash).filter(|(.., at)| at.elapsed() < KEY_CACHE_TTL).map(|(role, name, _)| (*role, name.clone()))
    }

    /// Remembers a key read from the gallery now.
    pub fn remember(&self, hash: String, role: Role, name: String) {
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= Self::CAPACITY {
            known.retain(|_, (.., at)| at.elapsed() < KEY_CACHE_TTL);
        }
        if known.len() < Self::CAPACITY {
            known.insert(hash, (role, name, Instant::now()));
        }
    }
}
