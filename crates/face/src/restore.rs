//! Restoring covered faces with an inpainter exported by maskid (`maskid export`): what the
//! G2D encoder "sees" behind a mask, for previews.

use std::path::Path;

use maskid_core::{AlignedFace, ALIGNED_SIZE_PX};

use crate::embed::{run_faces, EmbedderConfig, MAX_BATCH};
use crate::onnx::{Parallelism, SessionPool};
use crate::{Error, Result};
use maskid_onnx::SymbolicDims;

/// An ONNX inpainter: `faces [batch, 3, 112, 112]` -> `restored`, same shape, RGB in [-1, 1].
pub struct FaceRestorer {
    pool: SessionPool,
}

impl FaceRestorer {
    /// Loads the model.
    pub fn new(model: &Path, parallelism: Parallelism) -> Result<Self> {
        let pool = SessionPool::load(model, SymbolicDims::BATCH, parallelism)?;
        if pool.input_names().len() != 1 {
            let reason = "expected exactly one data input".into();
            return Err(Error::Model { path: model.display().to_string(), reason });
        }
        Ok(Self { pool })
    }

    /// The restored faces.
    pub fn restore(&self, faces: &[AlignedFace]) -> Result<Vec<AlignedFace>> {
        let values = self.restore_values(faces)?;
        Ok(values
            .chunks_exact(AlignedFace::BYTES)
            .map(|planes| AlignedFace::from_unit_planes(planes).expect("BUG: one face's planes"))
            .collect())
    }

    /// The model's raw output, `[n, 3, 112, 112]` flattened, in [-1, 1].
    pub fn restore_values(&self, faces: &[AlignedFace]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(faces.len() * 3 * ALIGNED_SIZE_PX * ALIGNED_SIZE_PX);
        for chunk in faces.chunks(MAX_BATCH) {
            let shape = [chunk.len(), 3, ALIGNED_SIZE_PX, ALIGNED_SIZE_PX];
            let fits = |out: &[i64]| out.iter().map(|&d| d as usize).eq(shape);
            out.extend(run_faces(&self.pool, EmbedderConfig::g2d(), chunk, "restored", fits)?);
        }
        Ok(out)
    }
}
