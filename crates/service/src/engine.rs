//! Image bytes -> faces -> embeddings, with the model the service was started with.

use maskid_core::AlignedFace;
use maskid_face::{decode_image, FaceEmbedder, FacePolicy};
use maskid_gallery::{IndexKind, ModelRef};
use maskid_pipeline::{FaceResult, Models};

use crate::error::ApiError;

/// The detector, the aligner and the embedding model of the service.
pub struct Engine {
    models: Models,
    /// `None`: the teacher inside `models`.
    embedder: Option<FaceEmbedder>,
    /// Cosine similarity needed for a match.
    pub threshold: f32,
    /// Keep enrolled faces' aligned crops in the gallery (for `gallery reembed`).
    pub keep_crops: bool,
    /// How identify searches the gallery.
    pub index: IndexKind,
}

impl Engine {
    /// `embedder`: a G2D backbone, or `None` for the teacher.
    pub fn new(models: Models, embedder: Option<FaceEmbedder>, threshold: f32) -> Self {
        Self { models, embedder, threshold, keep_crops: false, index: IndexKind::Auto }
    }

    fn embedder(&self) -> &FaceEmbedder {
        self.embedder.as_ref().unwrap_or(&self.models.teacher)
    }

    /// The model that makes the embeddings.
    pub fn model(&self) -> ModelRef {
        let e = self.embedder();
        ModelRef { id: e.model_id().to_string(), sha256: e.model_sha256().to_string() }
    }

    /// Bytes decoding `image` takes at its peak, from its header. Blocking (it may scan the
    /// bytes): call from a worker thread.
    pub fn decode_memory(&self, image: &[u8]) -> Result<u64, ApiError> {
        Ok(maskid_face::decode_memory(image, self.models.config.max_pixels)?)
    }

    /// The faces of a photo chosen by `policy`, embedded. Blocking: call from a worker thread.
    pub fn embed(&self, image: &[u8], policy: FacePolicy) -> Result<Vec<FaceResult>, ApiError> {
        let photo = decode_image(image, self.models.config.max_pixels)?;
        let faces = self.models.aligned_faces(&photo, policy)?;
        let crops: Vec<AlignedFace> = faces.iter().map(|(_, f)| f.clone()).collect();
        let embeddings = self.embedder().embed(&crops).map_err(ApiError::internal)?;
        Ok(faces
            .into_iter()
            .zip(embeddings)
            .map(|((detection, face), embedding)| FaceResult { detection, face, embedding })
            .collect())
    }
}
