//! Health, readiness and metrics.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::{blocking, ApiResult, Shared};

pub(super) async fn readyz(State(state): State<Shared>) -> ApiResult {
    let index = blocking(&state, |s| Ok(s.gallery.index_state()?)).await?;
    let search = if index.sketched { "sketch" } else { "exact" };
    let body = json!({ "status": "ready", "model": state.recognizer.model(), "faces": index.faces, "search": search });
    Ok(Json(body).into_response())
}

pub(super) async fn metrics(State(state): State<Shared>) -> ApiResult {
    // Counted, never listed: a scrape costs the same whatever the subjects hold.
    let (subjects, faces) =
        blocking(&state, |s| Ok((s.gallery.subject_count()?, s.gallery.index_state()?.faces))).await?;
    let text = state.metrics.render(state.in_flight.load(Ordering::SeqCst), subjects, faces);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
