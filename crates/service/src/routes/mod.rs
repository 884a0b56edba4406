//! The routes: one table of endpoints (method, path, role, summary) from which the router,
//! the role checks and the OpenAPI document are all built, so they cannot drift apart; the
//! gate every request passes; the helpers handlers share. Handlers live by resource:
//! `subjects` (people and faces), `recognition` (identify, verify), `keys`, `ops` (health,
//! metrics), and `openapi`.

mod keys;
mod openapi;
mod ops;
mod recognition;
mod subjects;

pub use openapi::openapi;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use bytes::Bytes;
use maskid_face::FacePolicy;
use serde_json::json;

use crate::auth::{presented_secret, secret_sha256, Role};
use crate::error::ApiError;
use crate::AppState;

type Shared = Arc<AppState>;
type ApiResult = Result<Response, ApiError>;

/// One endpoint: method, path, the role it needs (`None`: open), and what it does.
pub struct Endpoint {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Option<Role>,
    pub summary: &'static str,
    /// The image fields of its body, if it takes images.
    pub images: &'static [&'static str],
}

/// Every endpoint of the service.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint { method: "get", path: "/healthz", role: None, summary: "The process is up.", images: &[] },
    Endpoint { method: "get", path: "/readyz", role: None, summary: "Models and gallery are loaded.", images: &[] },
    Endpoint { method: "get", path: "/metrics", role: Some(Role::Read), summary: "Prometheus metrics.", images: &[] },
    Endpoint { method: "get", path: "/openapi.json", role: Some(Role::Read), summary: "This document.", images: &[] },
    Endpoint {
        method: "get",
        path: "/v1/subjects",
        role: Some(Role::Read),
        summary: "Every enrolled person.",
        images: &[],
    },
    Endpoint {
        method: "post",
        path: "/v1/subjects",
        role: Some(Role::Write),
        summary: "Create a person: JSON {name, metadata}.",
        images: &[],
    },
    Endpoint {
        method: "get",
        path: "/v1/subjects/{name}",
        role: Some(Role::Read),
        summary: "A person and their faces.",
        images: &[],
    },
    Endpoint {
        method: "delete",
        path: "/v1/subjects/{name}",
        role: Some(Role::Write),
        summary: "Remove a person and their faces.",
        images: &[],
    },
    Endpoint {
        method: "post",
        path: "/v1/subjects/{name}/faces",
        role: Some(Role::Write),
        summary: "Enrol a photo of a person (created if new); exactly one face unless ?face= says otherwise.",
        images: &["image"],
    },
    Endpoint {
        method: "delete",
        path: "/v1/faces/{id}",
        role: Some(Role::Write),
        summary: "Remove one enrolled face.",
        images: &[],
    },
    Endpoint {
        method: "post",
        path: "/v1/identify",
        role: Some(Role::Read),
        summary: "The enrolled people most like the photo's face (?top=3&threshold=&face=largest).",
        images: &["image"],
    },
    Endpoint {
        method: "post",
        path: "/v1/verify",
        role: Some(Role::Read),
        summary: "Whether photos a and b show the same person (?threshold=&face=largest).",
        images: &["a", "b"],
    },
    Endpoint {
        method: "get",
        path: "/v1/keys",
        role: Some(Role::Admin),
        summary: "The API keys (names and roles).",
        images: &[],
    },
];

/// The router over `state`.
pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    for e in ENDPOINTS {
        router = router.route(e.path, handler(e));
    }
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint (see /openapi.json)")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
        })
        .layer(axum::extract::DefaultBodyLimit::max(state.limits.max_body_bytes))
        .with_state(state)
}

fn handler(e: &Endpoint) -> MethodRouter<Shared> {
    match (e.method, e.path) {
        ("get", "/healthz") => get(|| async { Json(json!({ "status": "ok" })) }),
        ("get", "/readyz") => get(ops::readyz),
        ("get", "/metrics") => get(ops::metrics),
        ("get", "/openapi.json") => get(|| async { Json(openapi()) }),
        ("get", "/v1/subjects") => get(subjects::list_subjects),
        ("post", "/v1/subjects") => post(subjects::create_subject),
        ("get", "/v1/subjects/{name}") => get(subjects::get_subject),
        ("delete", "/v1/subjects/{name}") => delete(subjects::delete_subject),
        ("post", "/v1/subjects/{name}/faces") => post(subjects::enroll),
        ("delete", "/v1/faces/{id}") => delete(subjects::delete_face),
        ("post", "/v1/identify") => post(recognition::identify),
        ("post", "/v1/verify") => post(recognition::verify),
        ("get", "/v1/keys") => get(keys::list_keys),
        (method, path) => unreachable!("BUG: no handler for {method} {path}"),
    }
}

/// A request in flight: counted while it lives and recorded in the metrics when it goes,
/// whether answered or dropped because its client hung up (recorded as status 499).
struct InFlight {
    state: Shared,
    method: String,
    route: String,
    start: Instant,
    counted: bool,
    status: Option<u16>,
}

impl InFlight {
    /// Enters a request; `counted`: it counts against `max_in_flight`. Returns the guard and
    /// whether the limit is exceeded.
    fn enter(state: &Shared, method: &str, route: &str, counted: bool) -> (Self, bool) {
        let before = if counted { state.in_flight.fetch_add(1, Ordering::SeqCst) } else { 0 };
        let guard = Self {
            state: state.clone(),
            method: method.to_string(),
            route: route.to_string(),
            start: Instant::now(),
            counted,
            status: None,
        };
        (guard, counted && before >= state.limits.max_in_flight)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.counted {
            self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
        }
        let status = self.status.unwrap_or(499);
        self.state.metrics.record(&self.method, &self.route, status, self.start.elapsed());
    }
}

/// Every matched request passes here: counted, refused past the in-flight limit (health
/// probes excepted), its key checked from the headers and its announced length from
/// `Content-Length` before any body is read, then run under the request timeout.
async fn gate(State(state): State<Shared>, matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let endpoint =
        ENDPOINTS.iter().find(|e| e.path == route && request.method().as_str().eq_ignore_ascii_case(e.method));
    let role = endpoint.and_then(|e| e.role);
    let (mut guard, over_limit) = InFlight::enter(&state, request.method().as_str(), &route, role.is_some());
    let response = if over_limit {
        ApiError::unavailable("busy", "too many requests in flight; retry").into_response()
    } else {
        let admitted = async {
            if let Some(role) = role {
                authorize(&state, request.headers(), role).await?;
            }
            check_length(&state, request.headers())?;
            Ok::<_, ApiError>(next.run(request).await)
        };
        match tokio::time::timeout(state.limits.request_timeout, admitted).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => e.into_response(),
            Err(_) => ApiError::unavailable(
                "timeout",
                format!("the request took longer than {:?}", state.limits.request_timeout),
            )
            .into_response(),
        }
    };
    guard.status = Some(response.status().as_u16());
    response
}

/// Checks the request's key against `role`, on a worker thread and the reading connection.
async fn authorize(state: &Shared, headers: &HeaderMap, role: Role) -> Result<(), ApiError> {
    let hash = secret_sha256(presented_secret(headers)?);
    let key = blocking(state, move |s| Ok(s.gallery.key_by_hash(&hash)?)).await?;
    let key = key.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))?;
    let has = key.role;
    if has < role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs a key with role {}; the key presented has role {}", role.name(), has.name()),
        ));
    }
    Ok(())
}

/// Refuses a body announced larger than the limit, before reading it.
fn check_length(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_LENGTH) else { return Ok(()) };
    let length: u64 = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| ApiError::bad_request("bad Content-Length"))?;
    if length > state.limits.max_body_bytes as u64 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is {length} bytes; this service takes at most {}", state.limits.max_body_bytes),
        ));
    }
    Ok(())
}

/// Runs blocking work (SQLite, ONNX Runtime) off the async threads.
async fn blocking<T: Send + 'static>(
    state: &Shared,
    work: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || work(&state))
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
}

/// Model work on `images`: it waits for its share of the decode memory budget (refused
/// at once when one request alone needs more than the budget) and for one of
/// `max_concurrent` model slots. Both are held by the worker until the work really ends,
/// also when the request is dropped meanwhile (timeout, client gone).
async fn model_work<T: Send + 'static>(
    state: &Shared,
    images: Vec<(&'static str, Bytes)>,
    work: impl FnOnce(&AppState, Vec<Bytes>) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let sized = images.clone();
    let need_bytes: u64 = blocking(state, move |s| {
        let max_pixels = s.recognizer.models().config.max_pixels;
        let memory = |image| maskid_face::decode_memory(image, max_pixels).map_err(ApiError::from);
        sized.iter().map(|(field, image)| memory(image).map_err(|e| e.about_image(field))).sum()
    })
    .await?;
    let budget = state.limits.decode_budget_bytes;
    if need_bytes > budget {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "image_too_large",
            format!("decoding needs {} MB, more than this service's budget of {} MB", need_bytes >> 20, budget >> 20),
        ));
    }
    let need_kib = u32::try_from(need_bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    let closed = |_| ApiError::unavailable("shutting_down", "the service is stopping");
    let memory = state.decode_budget.clone().acquire_many_owned(need_kib).await.map_err(closed)?;
    let slot = state.model_slots.clone().acquire_owned().await.map_err(closed)?;
    let bytes = images.into_iter().map(|(_, b)| b).collect();
    blocking(state, move |s| {
        let _held = (memory, slot);
        work(s, bytes)
    })
    .await
}

fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", e.body_text())
        } else {
            ApiError::bad_request(e.body_text())
        }
    })
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(v)| v).map_err(|e| ApiError::bad_request(e.body_text()))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| ApiError::bad_request(e.body_text()))
}

/// The `face` query parameter: one face per photo on every endpoint.
fn face_policy(name: Option<&str>, default: FacePolicy) -> Result<FacePolicy, ApiError> {
    name.map_or(Ok(default), |n| FacePolicy::parse_one(n).map_err(|e| ApiError::bad_request(format!("face: {e}"))))
}
