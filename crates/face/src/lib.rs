//! Faces in photos: decoding with limits, YuNet detection, five-point alignment and ONNX
//! embedding (the SFace teacher, and later maskid's own exported backbone).
#![deny(missing_docs)]

mod align;
mod detect;
mod embed;
mod image_io;
mod mask_state;
mod onnx;
mod quality;
mod restore;

pub use align::{align_face, align_face_by, central_crop, similarity_transform, Alignment};
pub use detect::{
    decode_heads, plausible_face, select_faces, yunet_input, Detector, DetectorConfig, FacePolicy,
    MASKED_PASS_BORDER_PX, MASKED_PASS_CANVAS_PX, MASKED_PASS_PHOTO_PX, RESCUE_SCORE_THRESHOLD,
};
pub use embed::{ChannelOrder, EmbedderConfig, FaceEmbedder};
pub use image_io::{
    decode_image, decode_memory, load_image, png_bomb, png_claiming, png_profile_bomb, progressive_jpeg,
    DEFAULT_MAX_PIXELS,
};
pub use mask_state::MaskClassifier;
pub use maskid_core::Affine;
pub use onnx::{init_runtime, Parallelism};
pub use quality::{FaceQuality, QualityNote};
pub use restore::FaceRestorer;

/// Errors of the face crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("{path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not an image maskid can decode.
    #[error("{}not a readable image ({reason})", at(path))]
    BadImage {
        /// The file (`None`: bytes in memory, e.g. a request body).
        path: Option<String>,
        /// What the decoder said.
        reason: String,
    },
    /// The image has more pixels than allowed.
    #[error("{}image is {width}x{height} ({megapixels:.1} MP), above the limit of {limit_mp:.1} MP", at(path))]
    TooLarge {
        /// The file (`None`: bytes in memory).
        path: Option<String>,
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// Its size in megapixels.
        megapixels: f64,
        /// The limit in megapixels.
        limit_mp: f64,
    },
    /// No face was found.
    #[error("{}no face found (score threshold {threshold})", at(path))]
    NoFace {
        /// The file (`None`: an image in memory).
        path: Option<String>,
        /// The detector's score threshold.
        threshold: f32,
    },
    /// Several faces where exactly one was required.
    #[error("{}{count} faces found where exactly one is needed", at(path))]
    SeveralFaces {
        /// The file (`None`: an image in memory).
        path: Option<String>,
        /// How many faces.
        count: usize,
    },
    /// The landmarks cannot define an alignment.
    #[error("degenerate landmarks: {0}")]
    Landmarks(&'static str),
    /// A model file is not usable.
    #[error("model {path}: {reason}")]
    Model {
        /// The model file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// ONNX Runtime failed.
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}

impl Error {
    /// The same error, naming the file `path` where it named none.
    pub fn with_path(self, path: &str) -> Self {
        let path = Some(path.to_string());
        match self {
            Error::BadImage { reason, .. } => Error::BadImage { path, reason },
            Error::TooLarge { width, height, megapixels, limit_mp, .. } => {
                Error::TooLarge { path, width, height, megapixels, limit_mp }
            }
            Error::NoFace { threshold, .. } => Error::NoFace { path, threshold },
            Error::SeveralFaces { count, .. } => Error::SeveralFaces { path, count },
            other => other,
        }
    }
}

/// "PATH: " before a message about a file; nothing for an image in memory.
fn at(path: &Option<String>) -> String {
    path.as_ref().map_or_else(String::new, |p| format!("{p}: "))
}

impl From<ort::Error> for Error {
    fn from(e: ort::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;
