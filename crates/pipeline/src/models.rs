//! The detector and the teacher, loaded from the pinned assets, and the photo -> embedding
//! chain built on them.

use std::path::Path;

use image::RgbImage;
use std::sync::Arc;

use maskid_assets::{Assets, MASKED_DETECTOR, MASK_CLASSIFIER, ONNXRUNTIME_LIB, SFACE, SFACE_EMBEDDING_SPACE, YUNET};
use maskid_core::{AlignedFace, Detection, Embedding, FaceMask};
use maskid_face::{
    align_face, init_runtime, load_image, select_faces, Detector, DetectorConfig, EmbedderConfig, FaceEmbedder,
    FacePolicy, MaskClassifier, Parallelism,
};

use crate::Result;

/// How to load and run the models.
#[derive(Debug, Clone, Copy)]
pub struct ModelsConfig {
    /// Detector settings.
    pub detector: DetectorConfig,
    /// Cores spread for latency (one photo) or throughput (data sets).
    pub parallelism: Parallelism,
    /// Largest photo decoded, in pixels.
    pub max_pixels: u64,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        Self {
            detector: DetectorConfig::default(),
            parallelism: Parallelism::Latency,
            max_pixels: maskid_face::DEFAULT_MAX_PIXELS,
        }
    }
}

/// One face of a photo, embedded.
#[derive(Debug, Clone)]
pub struct FaceResult {
    /// Where the detector found it.
    pub detection: Detection,
    /// The aligned crop.
    pub face: AlignedFace,
    /// Whether it wears a mask, and how.
    pub mask: FaceMask,
    /// Its embedding.
    pub embedding: Embedding,
}

/// YuNet and the SFace teacher on ONNX Runtime.
pub struct Models {
    /// The face detector.
    pub detector: Detector,
    /// The teacher recogniser.
    pub teacher: FaceEmbedder,
    /// The mask classifier maskid trained (`none`, `worn`, `below-nose`).
    pub mask: Arc<MaskClassifier>,
    /// Settings used.
    pub config: ModelsConfig,
}

impl Models {
    /// Loads ONNX Runtime and both models, fetching them on first use.
    pub fn load(assets: &Assets, config: ModelsConfig) -> Result<Self> {
        init_runtime(&assets.get(&ONNXRUNTIME_LIB)?)?;
        let mut detector = Detector::new(&assets.get(&YUNET)?, config.detector, config.parallelism)?;
        if config.detector.rescue {
            let masked = MASKED_DETECTOR.file(assets.home())?;
            detector = detector.with_masked_model(&masked, config.parallelism)?;
        }
        let teacher = FaceEmbedder::new(&assets.get(&SFACE)?, EmbedderConfig::sface(), config.parallelism)?
            .in_space(SFACE_EMBEDDING_SPACE);
        let mask = Arc::new(MaskClassifier::new(&MASK_CLASSIFIER.file(assets.home())?, config.parallelism)?);
        Ok(Self { detector, teacher, mask, config })
    }

    /// Decodes a photo with the configured pixel limit.
    pub fn load_photo(&self, path: &Path) -> Result<RgbImage> {
        Ok(load_image(path, self.config.max_pixels)?)
    }

    /// Detects and aligns the faces of a photo chosen by `policy`.
    pub fn aligned_faces(&self, image: &RgbImage, policy: FacePolicy) -> Result<Vec<(Detection, AlignedFace)>> {
        let found = self.detector.detect(image)?;
        let chosen = select_faces(found, policy, image.dimensions(), self.detector.config().score_threshold)?;
        chosen.into_iter().map(|d| Ok((d, align_face(image, &d.landmarks)?))).collect()
    }

    /// Photo file -> the photo and its detected, aligned faces chosen by `policy`. Errors
    /// name the file.
    pub fn photo_faces(&self, path: &Path, policy: FacePolicy) -> Result<(RgbImage, Vec<(Detection, AlignedFace)>)> {
        let image = self.load_photo(path)?;
        let faces = self.aligned_faces(&image, policy).map_err(|e| e.about_photo(&path.display().to_string()))?;
        Ok((image, faces))
    }

    /// The largest face of a photo aligned to a 112x112 RGB crop; `None` when the photo cannot
    /// be read or shows no face (collections of real photos pass those over).
    pub fn largest_aligned_face(&self, photo: &Path) -> Option<Vec<u8>> {
        let (_, faces) = self.photo_faces(photo, FacePolicy::Largest).ok()?;
        let (_, face) = faces.into_iter().next()?;
        Some(face.rgb().to_vec())
    }
}

/// Cosine threshold for teacher decisions: the accuracy-maximising threshold over all pairs
/// of `lfw-devtest clean` (`maskid eval --protocol lfw-devtest`, report field `threshold`:
/// 0.3357, FMR 0 of 500 impostor pairs, FNMR 1.4%).
pub const TEACHER_THRESHOLD: f32 = 0.336;

/// Cosine threshold for `--model auto` decisions (the teacher for unmasked faces, G2D for
/// masked ones): the accuracy-maximising threshold over all pairs of the validation protocol
/// (`maskid eval --protocol lfw-devtrain-holdout --mask mask-probe --model auto`, report
/// field `threshold`: 0.3351, FMR 0 of 216, FNMR 2.8% on its 432 pairs).
pub const AUTO_THRESHOLD: f32 = 0.335;

/// Cosine threshold for decisions of the shipped G2D model (`--model g2d`): the
/// accuracy-maximising threshold over all pairs of the validation protocol, chosen on data
/// held out of training, not on a test set (`maskid eval --protocol lfw-devtrain-holdout
/// --mask mask-probe --model g2d`, report field `threshold`: 0.3132, FMR 1 of 216, FNMR
/// 0.9% on its 432 pairs).
pub const G2D_THRESHOLD: f32 = 0.313;
