//! Identify a photo's face against the gallery; verify two photos.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::Json;
use bytes::Bytes;
use maskid_face::FacePolicy;
use maskid_gallery::ModelRef;
use maskid_pipeline::{Decision, FaceResult, Identification};
use serde::{Deserialize, Serialize};

use super::{body, face_policy, model_work, query, ApiResult, Shared};
use crate::error::ApiError;
use crate::input::read_upload;
use crate::AppState;

#[derive(Serialize, Clone, Copy)]
struct FaceFound {
    #[serde(rename = "box")]
    bbox: maskid_core::BBox,
    score: f32,
    landmarks: maskid_core::Landmarks5,
    mask: maskid_core::FaceMask,
}

/// One face's answer.
#[derive(Serialize, Clone)]
struct FaceAnswer {
    #[serde(rename = "match")]
    decision: Option<String>,
    candidates: Vec<maskid_gallery::Candidate>,
    face: FaceFound,
    /// This face's threshold: by FPIR, its condition's (clean or masked).
    threshold: f32,
}

impl From<Identification> for FaceAnswer {
    fn from(found: Identification) -> Self {
        let decision = found.matched().map(|c| c.name.clone());
        let detection = found.face.detection;
        let face = FaceFound {
            bbox: detection.bbox,
            score: detection.score,
            landmarks: detection.landmarks,
            mask: found.face.mask,
        };
        Self { decision, candidates: found.candidates, face, threshold: found.decided_by.threshold }
    }
}

/// The chosen face's answer at the top level (its `threshold` too); with `face=all`, every
/// face's in `faces` (the top level is then the best detection's).
#[derive(Serialize)]
struct IdentifyAnswer {
    #[serde(flatten)]
    first: FaceAnswer,
    faces: Vec<FaceAnswer>,
    /// The share of strangers the threshold lets through for this gallery, when known.
    fpir: Option<f64>,
    gallery_faces: usize,
    model: ModelRef,
}

#[derive(Serialize)]
struct VerifyAnswer {
    same_person: bool,
    similarity: f32,
    threshold: f32,
    model: ModelRef,
    /// Whether each face wears a mask: a's, b's.
    masks: [maskid_core::FaceMask; 2],
}

/// The request's threshold, else the service's, checked by the recogniser.
fn threshold(state: &AppState, given: Option<f32>) -> Result<f32, ApiError> {
    Ok(state.recognizer.threshold(Some(given.unwrap_or(state.options.threshold)))?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MatchQuery {
    top: Option<usize>,
    threshold: Option<f32>,
    fpir: Option<f64>,
    face: Option<String>,
}

pub(super) async fn identify(
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
    let decision = Decision::chosen(params.threshold, params.fpir, state.options.identify)?;
    let policy = match params.face.as_deref() {
        Some("all") => FacePolicy::All,
        other => face_policy(other, FacePolicy::Largest)?,
    };
    let image = read_upload(&headers, body(raw)?, &["image"]).await?.image("image")?;
    let found = model_work(&state, vec![("image", image)], move |s, images| {
        let photo = s.recognizer.decode_photo(&images[0])?;
        Ok(s.recognizer.identify(&s.gallery, &photo, policy, top, decision)?)
    })
    .await?;
    let decided_by = found.first().expect("BUG: identify answers at least one face or fails").decided_by;
    let faces: Vec<FaceAnswer> = found.into_iter().map(FaceAnswer::from).collect();
    let first = faces[0].clone();
    let body = IdentifyAnswer {
        first,
        faces,
        fpir: decided_by.fpir,
        gallery_faces: decided_by.gallery_faces,
        model: state.recognizer.model(),
    };
    Ok(Json(body).into_response())
}

pub(super) async fn verify(
    State(state): State<Shared>,
    headers: HeaderMap,
    params: Result<Query<MatchQuery>, QueryRejection>,
    raw: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let params = query(params)?;
    if params.top.is_some() || params.fpir.is_some() {
        return Err(ApiError::bad_request("top and fpir are parameters of identify, not verify"));
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
        Ok((s.recognizer.compare(&a.embedding, &b.embedding, Some(threshold))?, [a.mask, b.mask]))
    })
    .await?;
    let (decision, masks) = decision;
    let (similarity, same_person, model) = (decision.similarity, decision.same_person, state.recognizer.model());
    Ok(Json(VerifyAnswer { same_person, similarity, threshold, model, masks }).into_response())
}
