//! The routes, their handlers and the OpenAPI document that describes them (built from the
//! same table, so the two cannot drift apart).

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
use maskid_gallery::ModelRef;
use maskid_pipeline::FaceResult;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::{presented_secret, secret_sha256, Role};
use crate::error::ApiError;
use crate::input::{content_type, read_upload, unsupported_media_type};
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
        ("get", "/readyz") => get(readyz),
        ("get", "/metrics") => get(metrics),
        ("get", "/openapi.json") => get(|| async { Json(openapi()) }),
        ("get", "/v1/subjects") => get(list_subjects),
        ("post", "/v1/subjects") => post(create_subject),
        ("get", "/v1/subjects/{name}") => get(get_subject),
        ("delete", "/v1/subjects/{name}") => delete(delete_subject),
        ("post", "/v1/subjects/{name}/faces") => post(enroll),
        ("delete", "/v1/faces/{id}") => delete(delete_face),
        ("post", "/v1/identify") => post(identify),
        ("post", "/v1/verify") => post(verify),
        ("get", "/v1/keys") => get(list_keys),
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

// Answers are typed structs, not `json!` values: a `serde_json::Value` widens f32 to f64,
// which prints 0.336 as 0.335999995470047.

#[derive(Serialize)]
struct SubjectAnswer {
    subject: maskid_gallery::Subject,
    faces: Vec<maskid_gallery::FaceInfo>,
}

#[derive(Serialize)]
struct EnrolAnswer {
    face_id: i64,
    subject: String,
    subject_created: bool,
    detection_score: f32,
}

#[derive(Serialize)]
struct FaceFound {
    #[serde(rename = "box")]
    bbox: maskid_core::BBox,
    score: f32,
}

#[derive(Serialize)]
struct IdentifyAnswer {
    #[serde(rename = "match")]
    decision: Option<String>,
    threshold: f32,
    candidates: Vec<maskid_gallery::Candidate>,
    face: FaceFound,
    model: ModelRef,
}

#[derive(Serialize)]
struct VerifyAnswer {
    same_person: bool,
    similarity: f32,
    threshold: f32,
    model: ModelRef,
}

fn threshold(state: &AppState, given: Option<f32>) -> Result<f32, ApiError> {
    match given {
        Some(t) if (-1.0..=1.0).contains(&t) => Ok(t),
        Some(t) => Err(ApiError::bad_request(format!("threshold must lie in -1..1, got {t}"))),
        None => Ok(state.options.threshold),
    }
}

async fn readyz(State(state): State<Shared>) -> ApiResult {
    let index = blocking(&state, |s| Ok(s.gallery.index_state()?)).await?;
    let search = if index.sketched { "sketch" } else { "exact" };
    let body = json!({ "status": "ready", "model": state.recognizer.model(), "faces": index.faces, "search": search });
    Ok(Json(body).into_response())
}

async fn metrics(State(state): State<Shared>) -> ApiResult {
    let (subjects, faces) =
        blocking(&state, |s| Ok((s.gallery.subjects()?.len(), s.gallery.index_state()?.faces))).await?;
    let text = state.metrics.render(state.in_flight.load(Ordering::SeqCst), subjects, faces);
    Ok(([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn list_subjects(State(state): State<Shared>) -> ApiResult {
    let subjects = blocking(&state, |s| Ok(s.gallery.subjects()?)).await?;
    Ok(Json(json!({ "subjects": subjects })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSubject {
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
}

async fn create_subject(
    State(state): State<Shared>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let (content_type, mime) = content_type(&headers);
    if mime != "application/json" {
        return Err(unsupported_media_type(content_type, "application/json {\"name\", \"metadata\"}"));
    }
    let new: NewSubject = serde_json::from_slice(&body(raw)?)
        .map_err(|e| ApiError::bad_request(format!("expected JSON {{\"name\", \"metadata\"}}: {e}")))?;
    let metadata = new.metadata.unwrap_or_else(|| json!({}));
    if !metadata.is_object() {
        return Err(ApiError::bad_request("'metadata' must be a JSON object"));
    }
    let subject = blocking(&state, move |s| Ok(s.gallery.add_subject(&new.name, &metadata)?)).await?;
    Ok((StatusCode::CREATED, Json(subject)).into_response())
}

async fn get_subject(State(state): State<Shared>, name: Result<Path<String>, PathRejection>) -> ApiResult {
    let name = path(name)?;
    let (subject, faces) = blocking(&state, move |s| Ok((s.gallery.subject(&name)?, s.gallery.faces(&name)?))).await?;
    Ok(Json(SubjectAnswer { subject, faces }).into_response())
}

async fn delete_subject(State(state): State<Shared>, name: Result<Path<String>, PathRejection>) -> ApiResult {
    let name = path(name)?;
    blocking(&state, move |s| Ok(s.gallery.remove_subject(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaceQuery {
    face: Option<String>,
}

async fn enroll(
    State(state): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<FaceQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = path(name)?;
    maskid_gallery::subject_name(&name)?;
    // One photo enrols one face: several faces of one photo are not one person.
    let policy = face_policy(query(params)?.face.as_deref(), FacePolicy::RequireOne)?;
    let upload = read_upload(&headers, body(raw)?, &["image"]).await?;
    let image = upload.image("image")?;
    let metadata = upload.metadata.unwrap_or_else(|| json!({}));
    let (enrolled, score) = model_work(&state, vec![("image", image)], move |s, images| {
        let photo = s.recognizer.decode_photo(&images[0])?;
        let (enrolled, found) =
            s.recognizer.enroll(&s.gallery, &name, &metadata, &photo, policy, s.options.keep_crops)?;
        Ok((enrolled, found.detection.score))
    })
    .await?;
    let (face_id, subject, created) = (enrolled.face_id, enrolled.subject.name, enrolled.subject_created);
    let body = EnrolAnswer { face_id, subject, subject_created: created, detection_score: score };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn delete_face(State(state): State<Shared>, id: Result<Path<i64>, PathRejection>) -> ApiResult {
    let id = path(id)?;
    blocking(&state, move |s| Ok(s.gallery.remove_face(id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchQuery {
    top: Option<usize>,
    threshold: Option<f32>,
    face: Option<String>,
}

async fn identify(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<MatchQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let params = query(params)?;
    let top = params.top.unwrap_or(3);
    if !(1..=100).contains(&top) {
        return Err(ApiError::bad_request(format!("top must lie in 1..100, got {top}")));
    }
    let threshold = threshold(&state, params.threshold)?;
    let policy = face_policy(params.face.as_deref(), FacePolicy::Largest)?;
    let image = read_upload(&headers, body(raw)?, &["image"]).await?.image("image")?;
    let found = model_work(&state, vec![("image", image)], move |s, images| {
        let photo = s.recognizer.decode_photo(&images[0])?;
        Ok(s.recognizer.identify(&s.gallery, &photo, policy, top, Some(threshold))?)
    })
    .await?;
    let decision = found.matched().map(|c| c.name.clone());
    let detection = found.face.detection;
    let face = FaceFound { bbox: detection.bbox, score: detection.score };
    let body =
        IdentifyAnswer { decision, threshold, candidates: found.candidates, face, model: state.recognizer.model() };
    Ok(Json(body).into_response())
}

async fn verify(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<MatchQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let params = query(params)?;
    if params.top.is_some() {
        return Err(ApiError::bad_request("top is a parameter of identify, not verify"));
    }
    let threshold = threshold(&state, params.threshold)?;
    let policy = face_policy(params.face.as_deref(), FacePolicy::Largest)?;
    let upload = read_upload(&headers, body(raw)?, &["a", "b"]).await?;
    let images = vec![("a", upload.image("a")?), ("b", upload.image("b")?)];
    let decision = model_work(&state, images, move |s, images| {
        let face = |image: &Bytes, field| {
            let found = s.recognizer.decode_photo(image).and_then(|p| s.recognizer.face(&p, policy));
            found.map_err(|e| ApiError::from(e).about_image(field))
        };
        let (a, b): (FaceResult, FaceResult) = (face(&images[0], "a")?, face(&images[1], "b")?);
        Ok(s.recognizer.compare(&a.embedding, &b.embedding, Some(threshold))?)
    })
    .await?;
    let (similarity, same_person, model) = (decision.similarity, decision.same_person, state.recognizer.model());
    Ok(Json(VerifyAnswer { same_person, similarity, threshold, model }).into_response())
}

async fn list_keys(State(state): State<Shared>) -> ApiResult {
    let keys = blocking(&state, |s| Ok(s.gallery.keys()?)).await?;
    Ok(Json(json!({ "keys": keys })).into_response())
}

/// The OpenAPI 3.1 document of [`ENDPOINTS`].
pub fn openapi() -> Value {
    let error = json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } });
    let mut paths = serde_json::Map::new();
    for e in ENDPOINTS {
        let mut responses = serde_json::Map::new();
        responses.insert("200".into(), json!({ "description": "success" }));
        let mut codes = vec!["400", "413", "503"];
        if e.role.is_some() {
            codes.extend(["401", "403"]);
        }
        if e.path.contains('{') {
            codes.push("404");
        }
        if !e.images.is_empty() {
            codes.extend(["415", "422"]);
        }
        if e.method == "post" && e.path.starts_with("/v1/subjects") {
            codes.push("409");
        }
        for c in codes {
            responses.insert(c.into(), error.clone());
        }
        let mut op = json!({ "summary": e.summary, "responses": responses });
        op["security"] = if e.role.is_some() { json!([{ "apiKey": [] }]) } else { json!([]) };
        if let Some(role) = e.role {
            op["x-maskid-role"] = json!(role.name());
        }
        let parameters: Vec<Value> = e
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|p| {
                let ty = if p == "id" { "integer" } else { "string" };
                json!({ "name": p, "in": "path", "required": true, "schema": { "type": ty } })
            })
            .collect();
        if !parameters.is_empty() {
            op["parameters"] = json!(parameters);
        }
        if !e.images.is_empty() {
            let mut props = serde_json::Map::new();
            let mut b64 = serde_json::Map::new();
            for f in e.images {
                props.insert((*f).into(), json!({ "type": "string", "format": "binary" }));
                b64.insert(format!("{f}_base64"), json!({ "type": "string", "contentEncoding": "base64" }));
            }
            props.insert("metadata".into(), json!({ "type": "string", "description": "JSON object" }));
            b64.insert("metadata".into(), json!({ "type": "object" }));
            op["requestBody"] = json!({ "required": true, "content": {
                "multipart/form-data": { "schema": { "type": "object", "properties": props, "required": e.images } },
                "application/json": { "schema": { "type": "object", "properties": b64 } },
            }});
        } else if e.method == "post" {
            op["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": {
                "type": "object", "required": ["name"],
                "properties": { "name": { "type": "string" }, "metadata": { "type": "object" } } } } } });
        }
        paths.entry(e.path.to_string()).or_insert_with(|| json!({}))[e.method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "maskid", "version": env!("CARGO_PKG_VERSION"),
                  "description": "Masked-face recognition: enrol, identify and verify people." },
        "paths": paths,
        "components": {
            "securitySchemes": { "apiKey": { "type": "http", "scheme": "bearer",
                "description": "A key from `maskid keys create`; also accepted as X-API-Key." } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": {
                "type": "object", "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } } } }
        }
    })
}
