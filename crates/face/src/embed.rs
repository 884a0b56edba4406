//! Embedding aligned faces with an ONNX model: the SFace teacher or an exported backbone.

use std::path::Path;

use std::sync::Arc;

use maskid_core::{AlignedFace, Embedding, FaceMask, ALIGNED_SIZE_PX};
use sha2::{Digest, Sha256};

use crate::mask_state::MaskClassifier;
use maskid_onnx::ModelInfo;
use ort::value::TensorRef;

use crate::onnx::{Parallelism, SessionPool};
use crate::{Error, Result};
use maskid_onnx::SymbolicDims;

/// Channel order a model expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV's native order).
    Bgr,
}

/// How pixels become the model's input: `(value - mean) / std` per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmbedderConfig {
    /// Channel order.
    pub channel_order: ChannelOrder,
    /// Subtracted from 0..255 values.
    pub mean: f32,
    /// Divides after the mean is subtracted.
    pub std: f32,
}

impl EmbedderConfig {
    /// SFace: RGB, raw 0..255. OpenCV's FaceRecognizerSF feeds RGB (`swapRB=true`), and RGB
    /// separates genuine from impostor pairs better: lfw-view2 clean, RGB 99.37% accuracy,
    /// EER 0.70%, TAR@FAR=1e-3 98.93%; BGR 99.17%, 0.83%, 98.17% (`maskid eval
    /// --protocol lfw-view2 [--teacher-bgr]`).
    pub fn sface() -> Self {
        Self { channel_order: ChannelOrder::Rgb, mean: 0.0, std: 1.0 }
    }

    /// A G2D backbone exported by maskid: RGB scaled to [-1, 1].
    pub fn g2d() -> Self {
        Self { channel_order: ChannelOrder::Rgb, mean: 127.5, std: 127.5 }
    }

    /// The model input of `faces`: `[n, 3, 112, 112]` planes, flattened.
    pub(crate) fn input(&self, faces: &[AlignedFace]) -> Vec<f32> {
        let plane = ALIGNED_SIZE_PX * ALIGNED_SIZE_PX;
        let mut input = vec![0f32; faces.len() * 3 * plane];
        let order = match self.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        let (mean, inv_std) = (self.mean, 1.0 / self.std);
        for (f, face) in faces.iter().enumerate() {
            let base = f * 3 * plane;
            for (i, px) in face.rgb().chunks_exact(3).enumerate() {
                for (c, &src) in order.iter().enumerate() {
                    input[base + c * plane + i] = (f32::from(px[src]) - mean) * inv_std;
                }
            }
        }
        input
    }
}

/// `[1, 3, 112, 112]`, symbolic dimensions as `?`.
fn shape_text(shape: Option<&[i64]>) -> String {
    match shape {
        Some(dims) => {
            let dims: Vec<String> = dims.iter().map(|&d| if d < 0 { "?".into() } else { d.to_string() }).collect();
            format!("[{}]", dims.join(", "))
        }
        None => "no tensor".into(),
    }
}

/// Most faces sent to the model in one call.
pub(crate) const MAX_BATCH: usize = 32;

/// An ONNX face embedder with a dynamic batch dimension; or two of one embedding space, the
/// faces a mask classifier calls masked sent to the second ([`FaceEmbedder::routed_by_mask`]).
pub struct FaceEmbedder {
    pool: SessionPool,
    config: EmbedderConfig,
    info: ModelInfo,
    masked: Option<(Box<FaceEmbedder>, Arc<MaskClassifier>)>,
}

impl FaceEmbedder {
    /// Loads a model taking `[batch, 3, 112, 112]` and giving `[batch, D]`.
    pub fn new(model: &Path, config: EmbedderConfig, parallelism: Parallelism) -> Result<Self> {
        let shown = model.display().to_string();
        let bytes = std::fs::read(model).map_err(|source| Error::Read { path: shown.clone(), source })?;
        let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let info = ModelInfo::from_bytes(&stem, &bytes)
            .map_err(|e| Error::Model { path: shown.clone(), reason: e.to_string() })?;
        let pool = SessionPool::from_bytes(&bytes, &shown, SymbolicDims::BATCH, parallelism)?;
        if pool.input_names().len() != 1 {
            return Err(Error::Model { path: shown, reason: "expected exactly one data input".into() });
        }
        // A detector or an inpainter loads as well as an embedding model would; refuse it here
        // rather than fail on every face.
        let side = ALIGNED_SIZE_PX as i64;
        let fits = |dim: i64, want: i64| dim == want || dim < 0;
        match pool.io_shapes() {
            (Some(input), Some(output))
                if input.len() == 4
                    && fits(input[1], 3)
                    && fits(input[2], side)
                    && fits(input[3], side)
                    && output.len() == 2 => {}
            (input, output) => {
                return Err(Error::Model {
                    path: shown,
                    reason: format!(
                        "not a face embedding model: it takes {} and gives {}, where an embedding model takes \
                         faces [batch, 3, {side}, {side}] and gives embeddings [batch, D]",
                        shape_text(input.as_deref()),
                        shape_text(output.as_deref())
                    ),
                })
            }
        }
        Ok(Self { pool, config, info, masked: None })
    }

    /// This embedder for unmasked faces and `masked` for the faces `classifier` calls masked
    /// (`maskid --model auto`). Both must embed into one space; the pair is a model of its
    /// own (its SHA-256 is of the three files' hashes), so caches and galleries tell it apart.
    pub fn routed_by_mask(self, masked: FaceEmbedder, classifier: Arc<MaskClassifier>, id: &str) -> Result<Self> {
        let (space, other) = (&self.info.embedding_space, &masked.info.embedding_space);
        if space.is_none() || space != other {
            return Err(Error::Model {
                path: masked.info.id.clone(),
                reason: format!(
                    "embeds into space {other:?}, not {space:?}: the two models of --model auto must share one"
                ),
            });
        }
        let mut hash = Sha256::new();
        for part in [&self.info.sha256, &masked.info.sha256, classifier.sha256()] {
            hash.update(part.as_bytes());
        }
        let info = ModelInfo {
            id: id.to_string(),
            sha256: hex::encode(hash.finalize()),
            metadata: Vec::new(),
            embedding_space: space.clone(),
        };
        Ok(Self { info, masked: Some((Box::new(masked), classifier)), ..self })
    }

    /// The mask classifier that routes faces, when this embedder routes them.
    pub fn mask_classifier(&self) -> Option<&MaskClassifier> {
        self.masked.as_ref().map(|(_, c)| c.as_ref())
    }

    /// Names the embedding space of a model whose file names none (SFace's predates maskid).
    pub fn in_space(mut self, space: &str) -> Self {
        self.info.embedding_space.get_or_insert_with(|| space.to_owned());
        self
    }

    /// What the model file says about itself: name, SHA-256, metadata, embedding space.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Embeds faces in batches of up to 32; one L2-normalised embedding per face.
    pub fn embed(&self, faces: &[AlignedFace]) -> Result<Vec<Embedding>> {
        match &self.masked {
            Some((_, classifier)) => self.embed_known(faces, &classifier.classify(faces)?),
            None => self.embed_plain(faces),
        }
    }

    /// [`FaceEmbedder::embed`] with the faces' masks already classified (a routed embedder
    /// sends the masked ones to its second model; others ignore `masks`).
    pub fn embed_known(&self, faces: &[AlignedFace], masks: &[FaceMask]) -> Result<Vec<Embedding>> {
        let Some((masked_embedder, _)) = &self.masked else { return self.embed_plain(faces) };
        assert_eq!(faces.len(), masks.len(), "BUG: one mask per face");
        let (masked, clean): (Vec<usize>, Vec<usize>) = (0..faces.len()).partition(|&i| masks[i].state.masked());
        let pick = |idx: &[usize]| idx.iter().map(|&i| faces[i].clone()).collect::<Vec<_>>();
        let mut out: Vec<Option<Embedding>> = vec![None; faces.len()];
        for (idx, embedder) in [(masked, masked_embedder.as_ref()), (clean, self)] {
            for (i, e) in idx.iter().zip(embedder.embed_plain(&pick(&idx))?) {
                out[*i] = Some(e);
            }
        }
        Ok(out.into_iter().map(|e| e.expect("BUG: every face embedded")).collect())
    }

    fn embed_plain(&self, faces: &[AlignedFace]) -> Result<Vec<Embedding>> {
        let mut out = Vec::with_capacity(faces.len());
        for chunk in faces.chunks(MAX_BATCH) {
            out.extend(self.embed_batch(chunk)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, faces: &[AlignedFace]) -> Result<Vec<Embedding>> {
        let values = run_faces(&self.pool, self.config, faces, "embedding", |shape| {
            shape.len() == 2 && shape[0] as usize == faces.len() && shape[1] >= 1
        })?;
        let dim = values.len() / faces.len().max(1);
        Ok(values.chunks_exact(dim.max(1)).map(|v| Embedding::normalized(v.to_vec())).collect())
    }
}

/// The output of a one-input model on `faces` (at most [`MAX_BATCH`]), flattened, after
/// `fits` accepts its shape; `what` names the output in the error.
pub(crate) fn run_faces(
    pool: &SessionPool,
    config: EmbedderConfig,
    faces: &[AlignedFace],
    what: &str,
    fits: impl Fn(&[i64]) -> bool,
) -> Result<Vec<f32>> {
    let input = config.input(faces);
    let shape = [faces.len(), 3, ALIGNED_SIZE_PX, ALIGNED_SIZE_PX];
    pool.with(|session| -> Result<Vec<f32>> {
        let tensor = TensorRef::from_array_view((shape, &input[..]))?;
        let outputs = session.run(ort::inputs![tensor])?;
        let (out_shape, data) = outputs[0].try_extract_tensor::<f32>()?;
        if !fits(out_shape) {
            return Err(Error::Runtime(format!("{what} output has shape {out_shape:?} for {} faces", faces.len())));
        }
        Ok(data.to_vec())
    })
}
