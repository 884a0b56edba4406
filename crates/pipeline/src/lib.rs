//! The chain from photo to decision: models from the pinned assets, detect -> align ->
//! embed -> compare, the `prepare` cache of aligned faces, and protocol evaluation.
#![deny(missing_docs)]

mod embed_cache;
mod evaluate;
mod models;
mod prepare;
mod recognizer;
mod training;

pub use embed_cache::EmbeddingCache;
pub use evaluate::{
    clean_embeddings, crop_landmarks, evaluate, landmarks_in_crop, masked_face, protocol_face, EvalOptions,
};
pub use models::{FaceResult, Models, ModelsConfig, G2D_THRESHOLD, TEACHER_THRESHOLD};
pub use prepare::{prepare, PrepareSummary, PreparedRecord, PreparedSet};
pub use recognizer::{Identification, ModelChoice, Photo, Recognizer, Verification};
pub use training::{training_set, unlabelled_set, verification_pairs, TrainingSet};

/// Progress of long work: `done` of `total` items of `stage`.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// What is being done.
    pub stage: &'a str,
    /// Items done.
    pub done: usize,
    /// Items in all.
    pub total: usize,
}

/// A progress callback (the CLI draws bars; tests pass a no-op).
pub type ProgressFn<'a> = &'a (dyn Fn(Progress<'_>) + Sync);

/// Errors of the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// From the assets.
    #[error(transparent)]
    Assets(#[from] maskid_assets::Error),
    /// From the face crate.
    #[error(transparent)]
    Face(#[from] maskid_face::Error),
    /// From the data sets and protocols.
    #[error(transparent)]
    Eval(#[from] maskid_eval::Error),
    /// From the gallery.
    #[error(transparent)]
    Gallery(#[from] maskid_gallery::Error),
    /// An embedding model that cannot be loaded.
    #[error("loading model {model}: {source}")]
    LoadModel {
        /// The model as chosen (`g2d`, a file).
        model: String,
        /// Why.
        source: maskid_face::Error,
    },
    /// A decision threshold outside the cosine range.
    #[error("the threshold must lie in -1..1, got {given}")]
    Threshold {
        /// The threshold given.
        given: f32,
    },
    /// A model without a built-in threshold, asked for a decision without one.
    #[error("model {model} has no built-in decision threshold (only teacher and g2d have one): give one")]
    NoThreshold {
        /// The model as chosen.
        model: String,
    },
    /// A gallery enrolled with a model whose embeddings this one's cannot be compared with.
    #[error("the gallery holds embeddings of {} ({}), not of model {} ({}) nor of its embedding space; use the gallery's model", gallery.id, gallery.sha256, model.id, model.sha256)]
    OtherSpace {
        /// The gallery's model.
        gallery: maskid_gallery::ModelRef,
        /// The recognizer's model.
        model: maskid_gallery::ModelRef,
    },
    /// From mask drawing.
    #[error(transparent)]
    Mask(#[from] maskid_mask::Error),
    /// The prepare cache is damaged or cannot be written.
    #[error("prepare cache {path}: {reason}")]
    Cache {
        /// The cache folder or file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The request cannot be served yet or is inconsistent.
    #[error("{0}")]
    Unsupported(String),
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
