//! The mask classifier maskid trains (`maskid train --stage mask`): whether an aligned face
//! wears a mask and whether the mask covers its nose.

use std::path::Path;

use maskid_core::{AlignedFace, FaceMask, ALIGNED_SIZE_PX};
use maskid_onnx::SymbolicDims;
use sha2::{Digest, Sha256};

use crate::embed::{run_faces, EmbedderConfig, MAX_BATCH};
use crate::onnx::{Parallelism, SessionPool};
use crate::{Error, Result};

/// An ONNX mask classifier: `faces [batch, 3, 112, 112]` RGB in [-1, 1] -> `mask [batch, 2]`,
/// the probabilities that the face is masked and that its mask covers the nose.
pub struct MaskClassifier {
    pool: SessionPool,
    sha256: String,
}

impl MaskClassifier {
    /// Loads the model; refuses one of other inputs or outputs.
    pub fn new(model: &Path, parallelism: Parallelism) -> Result<Self> {
        let shown = model.display().to_string();
        let bytes = std::fs::read(model).map_err(|source| Error::Read { path: shown.clone(), source })?;
        let sha256 = hex::encode(Sha256::digest(&bytes));
        let pool = SessionPool::from_bytes(&bytes, &shown, SymbolicDims::BATCH, parallelism)?;
        let side = ALIGNED_SIZE_PX as i64;
        let fits = |dim: i64, want: i64| dim == want || dim < 0;
        match (pool.input_names().len(), pool.io_shapes()) {
            (1, (Some(input), Some(output)))
                if input.len() == 4
                    && fits(input[1], 3)
                    && fits(input[2], side)
                    && fits(input[3], side)
                    && output.len() == 2
                    && fits(output[1], 2) =>
            {
                Ok(Self { pool, sha256 })
            }
            _ => Err(Error::Model {
                path: model.display().to_string(),
                reason: format!(
                    "not a mask classifier: one takes faces [batch, 3, {side}, {side}] and gives mask [batch, 2]"
                ),
            }),
        }
    }

    /// SHA-256 of the model file.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The mask of each face.
    pub fn classify(&self, faces: &[AlignedFace]) -> Result<Vec<FaceMask>> {
        Ok(self.answers(faces)?.into_iter().map(|[masked, nose]| FaceMask::from_answers(masked, nose)).collect())
    }

    /// The model's two answers for each face: masked, nose covered.
    pub fn answers(&self, faces: &[AlignedFace]) -> Result<Vec<[f32; 2]>> {
        let mut out = Vec::with_capacity(faces.len());
        for chunk in faces.chunks(MAX_BATCH) {
            let fits = |shape: &[i64]| shape == [chunk.len() as i64, 2];
            let values = run_faces(&self.pool, EmbedderConfig::g2d(), chunk, "mask", fits)?;
            out.extend(values.chunks_exact(2).map(|v| [v[0], v[1]]));
        }
        Ok(out)
    }
}
