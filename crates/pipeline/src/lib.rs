//! The chain from photo to decision: models from the pinned assets, detect -> align ->
//! embed -> compare, the `prepare` cache of aligned faces, and protocol evaluation.
#![deny(missing_docs)]

mod calibrate;
mod embed_cache;
mod evaluate;
mod mask_state;
mod models;
mod prepare;
mod recognizer;
mod training;

pub use calibrate::{calibrate, CalibrationData};
pub use embed_cache::EmbeddingCache;
pub use evaluate::{
    clean_embeddings, crop_landmarks, evaluate, landmarks_in_crop, masked_face, protocol_face, EvalOptions, Evaluation,
    LandmarkSource,
};
pub use mask_state::{
    mask_examples, test_mask_state, MaskSources, MaskTest, MaskTestRow, MaskTestSources, MaskThresholdRow,
    MaskedWildPart,
};
pub use models::{FaceResult, Models, ModelsConfig, AUTO_THRESHOLD, G2D_THRESHOLD, TEACHER_THRESHOLD};
pub use prepare::{prepare, PrepareSummary, PreparedRecord, PreparedSet};
pub use recognizer::{
    Decision, EnrolOptions, Enrolled, Identification, ModelChoice, OpenSetThreshold, Photo, Recognizer, Verification,
    DEFAULT_FPIR,
};
pub use training::{
    dense_validation_pairs, parity_faces, training_set, unlabelled_set, verification_pairs, TeacherTargets, TrainingSet,
};

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
    /// Embeddings of two models of different lengths compared.
    #[error(transparent)]
    LengthMismatch(#[from] maskid_core::LengthMismatch),
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
    /// A model name that is neither a shipped model nor a file.
    #[error(
        "no model '{given}': a model is teacher, g2d, or the path of an embedding model's ONNX file (maskid export)"
    )]
    NoModel {
        /// What was asked for.
        given: String,
    },
    /// An embedding model that cannot be loaded.
    #[error("loading model {model}")]
    LoadModel {
        /// The model as chosen (`g2d`, a file).
        model: String,
        /// Why.
        source: maskid_face::Error,
    },
    /// A decision threshold outside (0, 1].
    #[error("the threshold must lie in (0, 1], got {given}: at 0 or below, unrelated faces (cosine about 0) would be called the same person")]
    Threshold {
        /// The threshold given.
        given: f32,
    },
    /// A model without a built-in threshold, asked for a decision without one.
    #[error("model {model} has no built-in decision threshold (only teacher and g2d have one): give one with --threshold (Python: threshold=, HTTP: ?threshold=)")]
    NoThreshold {
        /// The model as chosen.
        model: String,
    },
    /// A decision by FPIR with a model that has no impostor-score calibration.
    #[error("model {model} has no impostor-score calibration for decisions by FPIR: measure one with `maskid calibrate --model {model}` (it is written beside the model file), or give a threshold with --threshold (Python: threshold=, HTTP: ?threshold=)")]
    NoCalibration {
        /// The model as chosen.
        model: String,
    },
    /// A calibration file that cannot be used.
    #[error("calibration {}: {reason}", path.display())]
    BadCalibration {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A face refused as a reference.
    #[error("a poor reference ({problems}): choose a sharper photo facing the camera, or enrol it anyway with --allow-poor (Python: allow_poor=True, HTTP: ?allow_poor=true)")]
    PoorReference {
        /// What falls short.
        problems: String,
    },
    /// Both a threshold and a target FPIR asked for.
    #[error("give a threshold or a target FPIR, not both")]
    ThresholdAndFpir,
    /// A target FPIR outside (0, 1).
    #[error("the target FPIR must lie in (0, 1), e.g. 0.001, got {given}")]
    Fpir {
        /// What was given.
        given: f64,
    },
    /// Impostor scores too few to calibrate.
    #[error("calibrating: {0}")]
    Calibration(String),
    /// From mask drawing.
    #[error(transparent)]
    Mask(#[from] maskid_mask::Error),
    /// The prepare or embedding cache is damaged or cannot be written.
    #[error("cache {}: {reason}", path.display())]
    Cache {
        /// The cache folder or file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A reference model asked for with another mask setting than mask-probe.
    #[error("a separate reference model needs the mask-probe setting (references clean, probes masked)")]
    ReferenceNeedsMaskProbe,
    /// Evaluation options that do not go together.
    #[error("{0}")]
    EvalOptions(&'static str),
    /// Photos a protocol needs that could not be read or showed no face.
    #[error("photos that are needed could not be read: {}", first.join("; "))]
    Unreadable {
        /// The first few, with their errors.
        first: Vec<String>,
    },
    /// A data set folder without photos.
    #[error("{}: no training photos found", root.display())]
    NoPhotos {
        /// The folder.
        root: std::path::PathBuf,
    },
    /// Pairs asked of a protocol that has none.
    #[error("{protocol} is not a pair protocol: validation needs pairs")]
    NotPairs {
        /// The protocol's name.
        protocol: &'static str,
    },
}

impl Error {
    /// The same error naming the photo `path` (decoding and detection errors carry the photo
    /// they concern; others are left as they are).
    pub(crate) fn about_photo(self, path: &str) -> Self {
        match self {
            Error::Face(f) => Error::Face(f.with_path(path)),
            other => other,
        }
    }

    /// A cache error about `path`.
    fn cache(path: &std::path::Path, reason: impl std::fmt::Display) -> Self {
        Error::Cache { path: path.to_path_buf(), reason: reason.to_string() }
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
