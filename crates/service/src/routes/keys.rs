//! The API keys (admin).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{blocking, ApiResult, Shared};

pub(super) async fn list_keys(State(state): State<Shared>) -> ApiResult {
    let keys = blocking(&state, |s| Ok(s.gallery.keys()?)).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}
