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
use std::time::{Duration, Instant};

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use bytes::Bytes;
use futures_util::StreamExt;
use maskid_face::FacePolicy;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

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
    /// A probe (health, readiness, metrics): never counted in flight, answered on the
    /// connections kept in reserve.
    pub probe: bool,
    /// Its query parameters (their types and meaning: [`openapi`]).
    pub query: &'static [&'static str],
    /// What a success answers.
    pub answer: Answer,
}

/// A successful answer: its status and, for JSON, the name of its schema in [`openapi`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// JSON of this schema, with this status.
    Json(u16, &'static str),
    /// Prometheus text.
    Text,
    /// 204, no body.
    Empty,
}

/// Every endpoint of the service.
pub const ENDPOINTS: &[Endpoint] = &[
    Endpoint {
        method: "get",
        path: "/healthz",
        role: None,
        summary: "The process is up.",
        images: &[],
        probe: true,
        query: &[],
        answer: Answer::Json(200, "Health"),
    },
    Endpoint {
        method: "get",
        path: "/readyz",
        role: None,
        summary: "Models and gallery are loaded.",
        images: &[],
        probe: true,
        query: &[],
        answer: Answer::Json(200, "Ready"),
    },
    Endpoint {
        method: "get",
        path: "/metrics",
        role: Some(Role::Read),
        summary: "Prometheus metrics.",
        images: &[],
        probe: true,
        query: &[],
        answer: Answer::Text,
    },
    Endpoint {
        method: "get",
        path: "/openapi.json",
        role: Some(Role::Read),
        summary: "This document.",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Json(200, "OpenApi"),
    },
    Endpoint {
        method: "get",
        path: "/v1/subjects",
        role: Some(Role::Read),
        summary:
            "Enrolled people by name, a page at a time (?limit=100&after=NAME; `next` names the next page's start).",
        images: &[],
        probe: false,
        query: &["limit", "after"],
        answer: Answer::Json(200, "SubjectPage"),
    },
    Endpoint {
        method: "post",
        path: "/v1/subjects",
        role: Some(Role::Write),
        summary: "Create a person: JSON {name, metadata}.",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Json(201, "Subject"),
    },
    Endpoint {
        method: "get",
        path: "/v1/subjects/{name}",
        role: Some(Role::Read),
        summary: "A person and their faces.",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Json(200, "SubjectFaces"),
    },
    Endpoint {
        method: "delete",
        path: "/v1/subjects/{name}",
        role: Some(Role::Write),
        summary: "Remove a person and their faces.",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Empty,
    },
    Endpoint {
        method: "post",
        path: "/v1/subjects/{name}/faces",
        role: Some(Role::Write),
        summary: "Enrol a photo of a person (created if new); exactly one face unless ?face= says otherwise; a face that would make a poor reference (turned, blurred, tiny) is refused with 422 poor_reference unless ?allow_poor=true.",
        images: &["image"],
        probe: false,
        query: &["face", "allow_poor"],
        answer: Answer::Json(201, "Enrolment"),
    },
    Endpoint {
        method: "delete",
        path: "/v1/faces/{id}",
        role: Some(Role::Write),
        summary: "Remove one enrolled face.",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Empty,
    },
    Endpoint {
        method: "post",
        path: "/v1/identify",
        role: Some(Role::Read),
        summary: "The enrolled people most like the photo's face (?top=3&fpir=0.001&face=largest, or &threshold= instead of fpir); with face=all, every face of a group photo answered on its own in `faces`.",
        images: &["image"],
        probe: false,
        query: &["top", "fpir", "threshold", "face"],
        answer: Answer::Json(200, "Identify"),
    },
    Endpoint {
        method: "post",
        path: "/v1/verify",
        role: Some(Role::Read),
        summary: "Whether photos a and b show the same person (?threshold=&face=largest).",
        images: &["a", "b"],
        probe: false,
        query: &["threshold", "face"],
        answer: Answer::Json(200, "Verify"),
    },
    Endpoint {
        method: "get",
        path: "/v1/keys",
        role: Some(Role::Admin),
        summary: "The API keys (names and roles).",
        images: &[],
        probe: false,
        query: &[],
        answer: Answer::Json(200, "Keys"),
    },
];

/// The router over `state`; `probes_only`: the probes alone, every other request answered
/// 503 (the router of the connections kept in reserve).
pub fn router(state: Shared, probes_only: bool) -> Router {
    let mut router = Router::new();
    for e in ENDPOINTS.iter().filter(|e| e.probe || !probes_only) {
        router = router.route(e.path, handler(e));
    }
    let fallback = move || async move {
        if probes_only {
            ApiError::unavailable(
                "busy",
                "every connection is in use; this one answers only /healthz, /readyz and /metrics",
            )
        } else {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint (see /openapi.json)")
        }
    };
    router
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), gate))
        .fallback(fallback)
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

/// A request's line in the metrics, written when it goes: with its answer's status, or 499
/// when it was dropped first (its client hung up, also in the middle of its body).
struct Recorded {
    state: Shared,
    method: String,
    route: String,
    start: Instant,
    status: Option<u16>,
    /// The name of the key the request was let in with (never the key).
    key: Option<String>,
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let status = self.status.unwrap_or(499);
        let took = self.start.elapsed();
        self.state.metrics.record(&self.method, &self.route, status, took);
        if self.state.options.access_log {
            // The route's pattern, not its path: subject names stay out of the log.
            let key = self.key.as_deref().map_or("-".to_string(), maskid_gallery::escaped_name);
            let ms = took.as_secs_f64() * 1e3;
            eprintln!("maskid: access {} {} {status} {ms:.1} ms key={key}", self.method, self.route);
        }
    }
}

/// A request counted in flight while it lives.
struct InFlight(Shared);

impl InFlight {
    /// Counts a request in, or refuses it past `max_in_flight`.
    fn enter(state: &Shared) -> Result<Self, ApiError> {
        let guard = Self(state.clone());
        if state.in_flight.fetch_add(1, Ordering::SeqCst) >= state.limits.max_in_flight {
            return Err(ApiError::unavailable("busy", "too many requests in flight; retry"));
        }
        Ok(guard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The role a request needs and whether it is a probe. HEAD is GET without the body, so it
/// needs GET's key. (Methods a path lacks are answered 405 by the router before the gate.)
fn endpoint_of(route: &str, method: &Method) -> (Option<Role>, bool) {
    let method = if method == Method::HEAD { "get" } else { method.as_str() };
    match ENDPOINTS.iter().find(|e| e.path == route && method.eq_ignore_ascii_case(e.method)) {
        Some(e) => (e.role, e.probe),
        // Not reached through the router; closed all the same.
        None => (Some(Role::Admin), false),
    }
}

/// Every matched request passes here, in this order: its protocol checked (transfer coding,
/// charset), its key checked from the headers (remembered keys first) and its announced
/// length from `Content-Length`, its body read at a minimum rate into the body budget, and
/// only then counted in flight (probes never) and run, all under the request timeout.
async fn gate(State(state): State<Shared>, matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let route = matched.map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let (role, probe) = endpoint_of(&route, request.method());
    let mut recorded = Recorded {
        state: state.clone(),
        method: request.method().to_string(),
        route,
        start: Instant::now(),
        status: None,
        key: None,
    };
    let admitted = async {
        check_protocol(request.headers())?;
        if let Some(role) = role {
            recorded.key = Some(authorize(&state, request.headers(), role).await?);
        }
        let announced = check_length(&state, request.headers())?;
        let (request, _body_memory) = read_body(&state, request, announced).await?;
        let _in_flight = if probe { None } else { Some(InFlight::enter(&state)?) };
        Ok::<_, ApiError>(next.run(request).await)
    };
    let response = match tokio::time::timeout(state.limits.request_timeout, admitted).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => e.into_response(),
        Err(_) => {
            ApiError::unavailable("timeout", format!("the request took longer than {:?}", state.limits.request_timeout))
                .into_response()
        }
    };
    recorded.status = Some(response.status().as_u16());
    response
}

/// Refuses what would be misread: a transfer coding other than chunked (its body would be
/// passed on still coded), a content coding, a charset other than UTF-8.
fn check_protocol(headers: &HeaderMap) -> Result<(), ApiError> {
    let text = |name| headers.get_all(name).iter().map(|v| v.to_str().unwrap_or("?").to_string()).collect::<Vec<_>>();
    let codings = text(header::TRANSFER_ENCODING).join(",");
    if !codings.is_empty() && !codings.split(',').all(|c| c.trim().eq_ignore_ascii_case("chunked")) {
        return Err(ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "unsupported_transfer_coding",
            format!("transfer coding '{codings}': send the body as it is or chunked"),
        ));
    }
    let content_codings = text(header::CONTENT_ENCODING).join(",");
    if content_codings.split(',').any(|c| !c.trim().is_empty() && !c.trim().eq_ignore_ascii_case("identity")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content coding '{content_codings}': send the body uncompressed"),
        ));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    for parameter in content_type.split(';').skip(1) {
        if let Some((name, value)) = parameter.split_once('=') {
            let value = value.trim().trim_matches('"');
            let utf8 = value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8");
            if name.trim().eq_ignore_ascii_case("charset") && !utf8 {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("charset '{value}': send UTF-8"),
                ));
            }
        }
    }
    Ok(())
}

/// Checks the request's key against `role`: a key remembered from a recent request at once,
/// others in the gallery, [`crate::auth::KEY_LOOKUPS`] at a time.
async fn authorize(state: &Shared, headers: &HeaderMap, role: Role) -> Result<String, ApiError> {
    let hash = secret_sha256(presented_secret(headers)?);
    let (has, name) = match state.keys.key(&hash) {
        Some(known) => known,
        None => {
            let _turn = state.keys.lookups.acquire().await.map_err(|_| ApiError::internal("key lookups closed"))?;
            let looked_up = hash.clone();
            let key = blocking(state, move |s| Ok(s.gallery.key_by_hash(&looked_up)?)).await?;
            let key = key.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "unknown API key"))?;
            state.keys.remember(hash, key.role, key.name.clone());
            (key.role, key.name)
        }
    };
    if has < role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this needs a key with role {}; the key presented has role {}", role.name(), has.name()),
        ));
    }
    Ok(name)
}

/// The request with its body (of `announced` bytes, from [`check_length`]) read: at least
/// [`Limits::min_body_rate`] bytes a second after [`crate::BODY_GRACE`] (slower: 408), held
/// in the body budget (no room: 503) for as long as the request lives. A client that hangs
/// up mid-body is recorded as 499.
async fn read_body(
    state: &Shared,
    request: Request,
    announced: Option<u64>,
) -> Result<(Request, Option<OwnedSemaphorePermit>), ApiError> {
    let (parts, body) = request.into_parts();
    let chunked = parts.headers.contains_key(header::TRANSFER_ENCODING);
    if !chunked && announced.unwrap_or(0) == 0 {
        return Ok((Request::from_parts(parts, body), None));
    }
    let limits = &state.limits;
    let no_room = || ApiError::unavailable("busy", "too many uploads at once; retry");
    // Announced: its room at once. Chunked: room as it comes.
    let mut held = kib(announced.unwrap_or(0));
    let mut memory = match held {
        0 => None,
        n => Some(state.body_budget.clone().try_acquire_many_owned(n).map_err(|_| no_room())?),
    };
    let start = Instant::now();
    let mut data = bytes::BytesMut::with_capacity(announced.unwrap_or(0).min(limits.max_body_bytes as u64) as usize);
    let mut frames = body.into_data_stream();
    loop {
        let on_pace_until =
            crate::BODY_GRACE + Duration::from_secs_f64(data.len() as f64 / limits.min_body_rate.max(1) as f64);
        let wait = on_pace_until.saturating_sub(start.elapsed());
        let frame = match tokio::time::timeout(wait, frames.next()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => break,
            Ok(Some(Err(e))) if client_gone(&e) => {
                return Err(ApiError::new(
                    StatusCode::from_u16(499).expect("a valid code"),
                    "client_gone",
                    "the client hung up",
                ))
            }
            Ok(Some(Err(e))) => return Err(body_error(e)),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_too_slow",
                    format!(
                        "{} bytes of body in {:.1} s: send at least {} bytes a second",
                        data.len(),
                        start.elapsed().as_secs_f64(),
                        limits.min_body_rate
                    ),
                ))
            }
        };
        if data.len() + frame.len() > limits.max_body_bytes {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body is over {} bytes, the most this service takes", limits.max_body_bytes),
            ));
        }
        data.extend_from_slice(&frame);
        let need = kib(data.len() as u64);
        if need > held {
            let more = state.body_budget.clone().try_acquire_many_owned(need - held).map_err(|_| no_room())?;
            match memory.as_mut() {
                Some(permit) => permit.merge(more),
                None => memory = Some(more),
            }
            held = need;
        }
    }
    Ok((Request::from_parts(parts, axum::body::Body::from(data.freeze())), memory))
}

/// Permits of a memory budget (body, decode) for `bytes`: one per KiB, rounded up.
fn kib(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

/// Whether a body error is the connection ending before the body did (hyper reports an end
/// of stream inside a body as an I/O error under its body error).
fn client_gone(e: &axum::Error) -> bool {
    use std::io::ErrorKind as K;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            return matches!(io.kind(), K::UnexpectedEof | K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe);
        }
        if error.downcast_ref::<hyper::Error>().is_some_and(|h| h.is_incomplete_message() || h.is_closed()) {
            return true;
        }
        source = error.source();
    }
    false
}

fn body_error(e: axum::Error) -> ApiError {
    ApiError::bad_request(format!("cannot read the body: {e}"))
}

/// The length a body announces, refused when larger than the limit, before it is read.
fn check_length(state: &AppState, headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(axum::http::header::CONTENT_LENGTH) else { return Ok(None) };
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
    Ok(Some(length))
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
    let arrived = Instant::now();
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
    let closed = |_| ApiError::unavailable("shutting_down", "the service is stopping");
    let memory = state.decode_budget.clone().acquire_many_owned(kib(need_bytes)).await.map_err(closed)?;
    let slot = state.model_slots.clone().acquire_owned().await.map_err(closed)?;
    let bytes = images.into_iter().map(|(_, b)| b).collect();
    blocking(state, move |s| {
        let _held = (memory, slot);
        let started = Instant::now();
        let done = work(s, bytes);
        s.metrics.record_model(started - arrived, started.elapsed());
        done
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
