//! The chain from photo to decision: models from the pinned assets, detect -> align ->
//! embed -> compare, the `prepare` cache of aligned faces, and protocol evaluation.
#![deny(missing_docs)]

mod embed_cache;
mod evaluate;
mod models;
mod prepare;
mod training;

pub use embed_cache::EmbeddingCache;
pub use evaluate::{
    clean_embeddings, crop_landmarks, evaluate, landmarks_in_crop, masked_face, protocol_face, EvalOptions,
};
pub use models::{FaceResult, Models, ModelsConfig, G2D_THRESHOLD, TEACHER_THRESHOLD};
pub use prepare::{prepare, PrepareSummary, PreparedRecord, PreparedSet};
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
