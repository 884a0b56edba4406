//! People and their faces: list, create, show, remove, enrol a photo, remove a face.

use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use maskid_face::FacePolicy;
use maskid_pipeline::EnrolOptions;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{blocking, body, face_policy, model_work, path, query, ApiResult, Shared};
use crate::error::ApiError;
use crate::input::{content_type, read_upload, unsupported_media_type};

// Answers are typed structs, not `json!` values (see `super`).

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
    /// The face's quality as a reference.
    quality: maskid_face::FaceQuality,
    /// Whether the face wears a mask (a masked reference gets a note).
    mask: maskid_core::FaceMask,
    /// Its shortfalls (warnings; with allow_poor, the refusing ones too).
    notes: Vec<String>,
}

/// Subjects a listing gives unless `limit` says; and the most it gives.
const PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

#[derive(Serialize)]
struct SubjectPage {
    subjects: Vec<maskid_gallery::Subject>,
    /// Pass as `after` for the next page; `None`: this was the last.
    next: Option<String>,
}

pub(super) async fn list_subjects(
    State(state): State<Shared>,
    params: Result<Query<PageQuery>, QueryRejection>,
) -> ApiResult {
    let PageQuery { limit, after } = query(params)?;
    let limit = limit.unwrap_or(PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit {limit}: give 1 to {MAX_PAGE}")));
    }
    // One more than asked says whether there is a next page.
    let mut subjects = blocking(&state, move |s| Ok(s.gallery.subjects_after(after.as_deref(), limit + 1)?)).await?;
    let next = (subjects.len() > limit).then(|| {
        subjects.truncate(limit);
        subjects[limit - 1].name.clone()
    });
    Ok(Json(SubjectPage { subjects, next }).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewSubject {
    name: String,
    #[serde(default)]
    metadata: Option<Value>,
}

pub(super) async fn create_subject(
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

pub(super) async fn get_subject(State(state): State<Shared>, name: Result<Path<String>, PathRejection>) -> ApiResult {
    let name = path(name)?;
    let (subject, faces) = blocking(&state, move |s| Ok((s.gallery.subject(&name)?, s.gallery.faces(&name)?))).await?;
    Ok(Json(SubjectAnswer { subject, faces }).into_response())
}

pub(super) async fn delete_subject(
    State(state): State<Shared>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let name = path(name)?;
    blocking(&state, move |s| Ok(s.gallery.remove_subject(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FaceQuery {
    face: Option<String>,
    allow_poor: Option<bool>,
}

pub(super) async fn enroll(
    State(state): State<Shared>,
    headers: HeaderMap,
    name: Result<Path<String>, PathRejection>,
    params: Result<Query<FaceQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let name = path(name)?;
    maskid_gallery::subject_name(&name)?;
    // One photo enrols one face: several faces of one photo are not one person.
    let params = query(params)?;
    let policy = face_policy(params.face.as_deref(), FacePolicy::RequireOne)?;
    let allow_poor = params.allow_poor.unwrap_or(false);
    let upload = read_upload(&headers, body(raw)?, &["image"]).await?;
    let image = upload.image("image")?;
    let metadata = upload.metadata.unwrap_or_else(|| json!({}));
    let enrolled = model_work(&state, vec![("image", image)], move |s, images| {
        let photo = s.recognizer.decode_photo(&images[0])?;
        let options = EnrolOptions { keep_crop: s.options.keep_crops, allow_poor };
        Ok(s.recognizer.enroll(&s.gallery, &name, &metadata, &photo, policy, options)?)
    })
    .await?;
    let e = enrolled.enrolment;
    let body = EnrolAnswer {
        face_id: e.face_id,
        subject: e.subject.name,
        subject_created: e.subject_created,
        detection_score: enrolled.face.detection.score,
        quality: enrolled.quality,
        mask: enrolled.face.mask,
        notes: enrolled.notes.into_iter().map(|n| n.problem).collect(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

pub(super) async fn delete_face(State(state): State<Shared>, id: Result<Path<i64>, PathRejection>) -> ApiResult {
    let id = path(id)?;
    blocking(&state, move |s| Ok(s.gallery.remove_face(id)?)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
