//! The mask classifier: does an aligned face wear a mask, and does the mask cover its nose?
//! Two sigmoid answers from a small convolutional network (four strided 3x3 convolutions
//! down to 7x7, then one linear layer over the whole map, so where on the face a texture
//! lies counts: fabric over the nose tip is what tells `worn` from `below-nose`).
//!
//! Trained on aligned faces of four kinds, each batch mixing them by the config's shares:
//! unmasked photos; photos with maskid's masks drawn on the whole photo, detected and aligned
//! again (so misalignment under a mask is in the data); unmasked crops with a mask drawn on
//! the crop (any style and coverage, drawn anew every step); and real masked photos, whose
//! coverage nobody labelled, so they teach only the first answer. A hand over the mouth is
//! drawn as a `none`: it hides the mouth as a mask does, and is not one.

use std::path::Path;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Bytes, TensorData};
use maskid_core::{AlignedFace, Landmarks5, MaskExample, MaskSource, ALIGNED_SIZE_PX, ALIGNMENT_TEMPLATE};
use maskid_face::{MaskClassifier, Parallelism};
use maskid_mask::{mask_face, Coverage, MaskSpec, MaskStyle, Rng};
use maskid_onnx::{Attribute, GraphWriter};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{over_defaults, read_config, Schedule};
use crate::data::faces_tensor;
use crate::model::conv;
use crate::run::{module_bytes, RunConfig, RunState, StageDir};
use crate::stage::{
    drive, finished_with, step_seed, Progress, StageLoop, StageReport, StepLoss, TrainOptions, Trained,
};
use crate::{Error, Result};

/// The folder of a run that holds the mask classifier: `RUN/mask/`.
pub const STAGE: &str = "mask";

/// How the mask classifier is trained (`configs/mask.toml` keys, over these defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MaskStateConfig {
    /// A name for reports and the default run folder.
    pub name: String,
    /// Steps and optimiser.
    pub schedule: Schedule,
    /// Channels of the first convolution (doubled twice; the last has `2 * width`).
    pub width: usize,
    /// Share of each batch from unmasked faces.
    pub clean: f32,
    /// ... from photos masked on the photo, detected and aligned again.
    pub photo_drawn: f32,
    /// ... from unmasked faces with a mask drawn on the crop (a twentieth of them a hand).
    pub crop_drawn: f32,
    /// ... from real masked photos (the rest of the batch).
    pub real: f32,
    /// Share of faces in a degraded photo condition (`condition::degrade`: resolution, blur,
    /// light, noise), so snapshots are not told from portraits by their quality.
    pub degrade: f32,
    /// Share of faces cut by the edge of their photo ([`photo_edge`]): a tight crop aligned
    /// leaves black beside and below the face, which the classifier must not take for a
    /// dark mask (many real masked photos are tight crops; most unmasked training photos
    /// are not).
    pub photo_edge: f32,
}

impl Default for MaskStateConfig {
    fn default() -> Self {
        Self {
            name: "mask".into(),
            schedule: Schedule {
                steps: 2000,
                batch_size: 64,
                lr: 2e-3,
                decay_from: Some(1000),
                checkpoint_every: 100,
                validate_every: 200,
                ..Schedule::default()
            },
            width: 16,
            clean: 0.45,
            photo_drawn: 0.2,
            crop_drawn: 0.15,
            real: 0.2,
            degrade: 0.4,
            photo_edge: 0.5,
        }
    }
}

impl MaskStateConfig {
    /// Parses TOML over the defaults; the error names the key.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let file: toml::Table = toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        over_defaults(Self::default(), file, origin, Self::validate)
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.schedule.validate("schedule")?;
        if !(2..=256).contains(&self.width) {
            return Err(format!("width = {}: must be between 2 and 256", self.width));
        }
        let shares = [self.clean, self.photo_drawn, self.crop_drawn, self.real, self.degrade, self.photo_edge];
        if shares.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err(
                "clean, photo_drawn, crop_drawn, real, degrade and photo_edge are shares: each between 0 and 1".into(),
            );
        }
        let sum = self.clean + self.photo_drawn + self.crop_drawn + self.real;
        if (sum - 1.0).abs() > 1e-3 {
            return Err(format!("clean + photo_drawn + crop_drawn + real = {sum}: must be 1"));
        }
        Ok(())
    }
}

impl RunConfig for MaskStateConfig {
    fn to_toml(&self) -> String {
        toml::to_string(self).expect("BUG: the config serialises")
    }

    fn load(path: &Path) -> Result<Self> {
        Self::from_toml(&read_config(path)?, &path.display().to_string())
    }

    fn stage_schedule(&self, _stage: &str) -> &Schedule {
        &self.schedule
    }

    fn schedule_table<'a>(toml: &'a mut toml::Table, _stage: &str) -> Option<&'a mut toml::Table> {
        toml.get_mut("schedule")?.as_table_mut()
    }
}

/// What the classifier trains and validates on.
pub struct MaskData<'a> {
    /// Training faces.
    pub train: &'a [MaskExample],
    /// Validation faces (other people, other photos); crop-drawn masks are drawn on their clean
    /// faces with fixed seeds.
    pub validation: &'a [MaskExample],
}

impl MaskData<'_> {
    fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for example in self.train.iter().chain(self.validation) {
            hash.update(serde_json::to_vec(&example.source).expect("BUG: serialises"));
            hash.update(&example.face.rgb()[AlignedFace::BYTES / 2..][..64]);
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// The network: `[batch, 3, 112, 112]` in [-1, 1] -> two logits (masked, nose covered).
#[derive(Module, Debug)]
pub struct MaskNet {
    convs: Vec<Conv2d>,
    norms: Vec<BatchNorm>,
    head: Linear,
}

/// Side of the last feature map (112 halved four times).
const MAP_PX: usize = ALIGNED_SIZE_PX / 16;

impl MaskNet {
    /// A fresh network of `width` channels at its first layer.
    pub fn new(width: usize, device: &Device) -> Self {
        let channels = [3, width, 2 * width, 4 * width, 2 * width];
        let convs = channels.windows(2).map(|c| conv([c[0], c[1]], 3, 2, 1, 1, device)).collect();
        let norms = channels[1..].iter().map(|&c| BatchNormConfig::new(c).init(device)).collect();
        let head = LinearConfig::new(2 * width * MAP_PX * MAP_PX, 2).init(device);
        Self { convs, norms, head }
    }

    /// # Shapes
    /// `[batch, 3, 112, 112]` -> logits `[batch, 2]`.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<2> {
        let mut x = faces;
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            x = relu(norm.forward(conv.forward(x)));
        }
        self.head.forward(x.flatten(1, 3))
    }
}

/// A face as a batch shows it: its pixels, the two targets and whether each is known.
struct Shown {
    rgb: Vec<u8>,
    masked: f32,
    /// `None`: the nose answer is not trained on this face.
    nose_covered: Option<f32>,
}

/// Which kind of example a batch slot takes.
#[derive(Clone, Copy)]
enum Slot {
    Clean,
    PhotoDrawn,
    CropDrawn,
    Real,
}

/// The example shown in `slot`, drawn from `seed`: `degrade` and `edge` are the shares of
/// [`MaskStateConfig`].
fn show(example: &MaskExample, slot: Slot, seed: u64, degrade: f32, edge: f32) -> Result<Shown> {
    let mut rng = Rng::new(seed);
    let (mut rgb, masked, nose_covered) = match (slot, example.source) {
        (Slot::CropDrawn, _) => {
            // One in twenty a hand, which is not a mask.
            let style = if rng.chance(0.05) { Some(MaskStyle::Hand) } else { Some(MaskStyle::pick_mask(&mut rng)) };
            let spec = MaskSpec::from_seed(rng.next_u64(), style, Coverage::Random);
            let (face, _) = mask_face(&example.face, &Landmarks5(ALIGNMENT_TEMPLATE), &spec)
                .map_err(|e| Error::Data(format!("drawing a mask: {e}")))?;
            let masked = spec.style != MaskStyle::Hand;
            let nose = masked.then_some(f32::from(u8::from(spec.nose_covered)));
            (face.rgb().to_vec(), f32::from(u8::from(masked)), nose)
        }
        (_, MaskSource::Clean) => (example.face.rgb().to_vec(), 0.0, None),
        (_, MaskSource::PhotoDrawn { nose_covered }) => {
            (example.face.rgb().to_vec(), 1.0, Some(f32::from(u8::from(nose_covered))))
        }
        (_, MaskSource::Real) => (example.face.rgb().to_vec(), 1.0, None),
    };
    if edge > 0.0 && rng.chance(edge) {
        photo_edge(&mut rgb, &mut rng);
    }
    if degrade > 0.0 && rng.chance(degrade) {
        crate::condition::degrade(&mut rgb, &mut rng);
    }
    if rng.chance(0.5) {
        maskid_core::mirror_rows(&mut rgb, ALIGNED_SIZE_PX, 3);
    }
    Ok(Shown { rgb, masked, nose_covered })
}

/// Blacks out the crop beyond one or two edges of a photo cut close to the face: each a
/// line near a side of the crop (below the chin, beside a cheek, above the brows), tilted up
/// to 40 degrees, as a tight crop of a tilted head leaves after alignment (rmfrd-dev's
/// unmasked crops lose whole corners so). Cuts from below stop at the mouth (row 82 of 112),
/// so most of a mask stays in view.
pub fn photo_edge(rgb: &mut [u8], rng: &mut Rng) {
    let size = ALIGNED_SIZE_PX as f32;
    for _ in 0..1 + usize::from(rng.chance(0.3)) {
        // (normal pointing out of the photo, deepest cut into the crop in pixels)
        let (side, depth) = match rng.below(4) {
            0 => ([0.0f32, 1.0f32], 30.0),
            1 => ([1.0, 0.0], 34.0),
            2 => ([-1.0, 0.0], 34.0),
            _ => ([0.0, -1.0], 24.0),
        };
        let tilt = rng.range(-40.0, 40.0).to_radians();
        let (sin, cos) = tilt.sin_cos();
        let normal = [side[0] * cos - side[1] * sin, side[0] * sin + side[1] * cos];
        // The line's distance from the centre along the normal.
        let offset = size / 2.0 - rng.range(0.0, depth);
        for (i, px) in rgb.chunks_exact_mut(3).enumerate() {
            let (x, y) =
                ((i % ALIGNED_SIZE_PX) as f32 + 0.5 - size / 2.0, (i / ALIGNED_SIZE_PX) as f32 + 0.5 - size / 2.0);
            if x * normal[0] + y * normal[1] > offset {
                px.fill(0);
            }
        }
    }
}

/// Binary cross-entropy of `logits` against `targets`, weighted per element and averaged
/// over the weights (stable for large logits).
fn weighted_bce(logits: Tensor<1>, targets: Tensor<1>, weights: Tensor<1>) -> Tensor<1> {
    let loss = relu(logits.clone()) - logits.clone() * targets + logits.abs().neg().exp().log1p();
    (loss * weights.clone()).sum() / weights.sum().clamp_min(1.0)
}

struct MaskTraining<'a> {
    net: Trained<MaskNet>,
    data: &'a MaskData<'a>,
    config: MaskStateConfig,
    /// Indices of the training examples by source: clean, photo-drawn, real.
    pools: [Vec<usize>; 3],
    base: Device,
    device: Device,
}

impl<'a> MaskTraining<'a> {
    fn new(config: &MaskStateConfig, data: &'a MaskData<'a>, options: &TrainOptions<'_>) -> Result<Self> {
        let mut pools: [Vec<usize>; 3] = Default::default();
        for (i, example) in data.train.iter().enumerate() {
            let pool = match example.source {
                MaskSource::Clean => 0,
                MaskSource::PhotoDrawn { .. } => 1,
                MaskSource::Real => 2,
            };
            pools[pool].push(i);
        }
        for (pool, (name, share)) in
            pools.iter().zip([("clean", config.clean), ("photo-drawn", config.photo_drawn), ("real", config.real)])
        {
            if pool.is_empty() && share > 0.0 {
                return Err(Error::Data(format!("no {name} faces to train on (its share is {share})")));
            }
        }
        let base = options.device.clone();
        let device = base.clone().autodiff();
        device.seed(config.schedule.seed);
        let net = Trained::new(MaskNet::new(config.width, &device), &config.schedule);
        Ok(Self { net, data, config: config.clone(), pools, base, device })
    }

    /// The faces of batch `step` and their targets.
    fn batch(&self, step: usize) -> Result<Vec<Shown>> {
        let seed = step_seed(self.config.schedule.seed, step);
        let c = &self.config;
        let bounds = [c.clean, c.clean + c.photo_drawn, c.clean + c.photo_drawn + c.crop_drawn];
        (0..c.schedule.batch_size)
            .into_par_iter()
            .map(|slot| {
                let mut rng = Rng::new(seed ^ (slot as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let u = rng.unit();
                let (kind, pool) = match bounds.iter().position(|&b| u < b) {
                    Some(0) => (Slot::Clean, &self.pools[0]),
                    Some(1) => (Slot::PhotoDrawn, &self.pools[1]),
                    Some(_) => (Slot::CropDrawn, &self.pools[0]),
                    None => (Slot::Real, &self.pools[2]),
                };
                // An empty pool has a zero share, so `u` only lands there by rounding.
                let pool = if pool.is_empty() { &self.pools[0] } else { pool };
                show(&self.data.train[pool[rng.below(pool.len())]], kind, rng.next_u64(), c.degrade, c.photo_edge)
            })
            .collect()
    }
}

/// `[n, 3, 112, 112]` of the faces and their targets and weights, `[n]` each, on `device`.
fn targets(shown: &[Shown], device: &Device) -> (Tensor<4>, [Tensor<1>; 4]) {
    let rgb: Vec<&[u8]> = shown.iter().map(|s| s.rgb.as_slice()).collect();
    let n = shown.len();
    let column = |values: Vec<f32>| Tensor::<1>::from_data(TensorData::new(values, [n]), device);
    let masked = column(shown.iter().map(|s| s.masked).collect());
    let nose = column(shown.iter().map(|s| s.nose_covered.unwrap_or(0.0)).collect());
    let nose_known = column(shown.iter().map(|s| f32::from(u8::from(s.nose_covered.is_some()))).collect());
    (faces_tensor(&rgb, device), [masked, column(vec![1.0; n]), nose, nose_known])
}

impl StageLoop for MaskTraining<'_> {
    fn metric(&self) -> &'static str {
        "balanced_accuracy"
    }

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        self.net.parts()
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.net.restore(dir, state)
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let shown = self.batch(step)?;
        let (faces, [masked, all, nose, nose_known]) = targets(&shown, &self.device);
        let logits = self.net.model.forward(faces);
        let n = shown.len();
        let masked_loss = weighted_bce(logits.clone().slice([0..n, 0..1]).reshape([n]), masked, all);
        let nose_loss = weighted_bce(logits.slice([0..n, 1..2]).reshape([n]), nose, nose_known);
        let total = masked_loss.clone() + nose_loss.clone();
        let grads = GradientsParams::from_grads(total.backward(), &self.net.model);
        self.net.step(self.config.schedule.lr_at(step), grads);
        Ok(StepLoss::read(total, vec![("masked_bce", masked_loss), ("nose_bce", nose_loss)]))
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        let net = self.net.model.valid();
        let report =
            validate(&self.data.validation.iter().collect::<Vec<_>>(), |faces| answers(&net, faces, &self.base))?;
        Ok((report.balanced(), serde_json::to_value(&report).expect("BUG: serialises")))
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.net.model)
    }
}

/// The two answers (probabilities) of `net` for each face.
fn answers(net: &MaskNet, faces: &[AlignedFace], device: &Device) -> Result<Vec<[f32; 2]>> {
    let mut out = Vec::with_capacity(faces.len());
    for chunk in faces.chunks(64) {
        let rgb: Vec<&[u8]> = chunk.iter().map(|f| f.rgb()).collect();
        let values = sigmoid(net.forward(faces_tensor(&rgb, device)))
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Data(format!("reading the classifier's answers: {e:?}")))?;
        out.extend(values.chunks_exact(2).map(|v| [v[0], v[1]]));
    }
    Ok(out)
}

/// Right answers out of all, for one kind of face.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Tally {
    /// Right answers.
    pub right: usize,
    /// Faces.
    pub of: usize,
}

impl Tally {
    fn add(&mut self, right: bool) {
        self.right += usize::from(right);
        self.of += 1;
    }

    /// The share right (NaN when empty).
    pub fn share(&self) -> f64 {
        self.right as f64 / self.of as f64
    }
}

/// Validation: the mask answer on unmasked, drawn-masked (photo and crop) and real masked
/// faces, and the nose answer on drawn masks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaskValidation {
    /// Unmasked faces called unmasked.
    pub clean: Tally,
    /// The same faces cut by a photo edge ([`photo_edge`]) called unmasked.
    pub clean_edge: Tally,
    /// Faces masked on the photo called masked.
    pub photo_drawn: Tally,
    /// Faces masked on the crop called masked.
    pub crop_drawn: Tally,
    /// Real masked faces called masked.
    pub real: Tally,
    /// Drawn masks (photo and crop) whose nose coverage is called right.
    pub coverage: Tally,
}

impl MaskValidation {
    /// The mean share right over the six kinds that have faces.
    pub fn balanced(&self) -> f64 {
        let shares: Vec<f64> =
            [self.clean, self.clean_edge, self.photo_drawn, self.crop_drawn, self.real, self.coverage]
                .iter()
                .filter(|t| t.of > 0)
                .map(Tally::share)
                .collect();
        shares.iter().sum::<f64>() / shares.len().max(1) as f64
    }
}

/// Seed of the crop-drawn validation masks (fixed: every validation sees the same faces).
const VALIDATION_SEED: u64 = 0x3a5c;

/// Validates `classify` (the two answers of a batch) on `examples`: each clean face also
/// shown with a mask drawn on its crop, and cut by a photo edge.
pub fn validate(
    examples: &[&MaskExample],
    classify: impl Fn(&[AlignedFace]) -> Result<Vec<[f32; 2]>>,
) -> Result<MaskValidation> {
    let mut report = MaskValidation::default();
    for (i, chunk) in examples.chunks(64).enumerate() {
        let plain: Vec<AlignedFace> = chunk.iter().map(|e| e.face.clone()).collect();
        let drawn: Vec<(usize, Shown)> = chunk
            .iter()
            .enumerate()
            .filter(|(_, e)| e.source == MaskSource::Clean)
            .map(|(j, e)| Ok((j, show(e, Slot::CropDrawn, VALIDATION_SEED ^ (i * 64 + j) as u64, 0.0, 0.0)?)))
            .collect::<Result<_>>()?;
        let drawn_faces: Vec<AlignedFace> =
            drawn.iter().map(|(_, s)| AlignedFace::from_rgb(s.rgb.clone()).expect("BUG: a crop")).collect();
        let edged: Vec<AlignedFace> = chunk
            .iter()
            .enumerate()
            .filter(|(_, e)| e.source == MaskSource::Clean)
            .map(|(j, e)| {
                let shown = show(e, Slot::Clean, VALIDATION_SEED ^ !((i * 64 + j) as u64), 0.0, 1.0)?;
                Ok(AlignedFace::from_rgb(shown.rgb).expect("BUG: a crop"))
            })
            .collect::<Result<_>>()?;
        for [masked, _] in classify(&edged)? {
            report.clean_edge.add(masked < 0.5);
        }
        for (example, [masked, nose]) in chunk.iter().zip(classify(&plain)?) {
            match example.source {
                MaskSource::Clean => report.clean.add(masked < 0.5),
                MaskSource::PhotoDrawn { nose_covered } => {
                    report.photo_drawn.add(masked >= 0.5);
                    report.coverage.add((nose >= 0.5) == nose_covered);
                }
                MaskSource::Real => report.real.add(masked >= 0.5),
            }
        }
        for ((_, shown), [masked, nose]) in drawn.iter().zip(classify(&drawn_faces)?) {
            match shown.nose_covered {
                // A hand: not a mask.
                None => report.clean.add(masked < 0.5),
                Some(covered) => {
                    report.crop_drawn.add(masked >= 0.5);
                    report.coverage.add((nose >= 0.5) == (covered > 0.5));
                }
            }
        }
    }
    Ok(report)
}

/// Trains the mask classifier into `options.run`'s `mask/` folder (resuming when asked),
/// reporting after every step.
pub fn train_mask_state(
    config: &MaskStateConfig,
    data: &MaskData<'_>,
    options: &TrainOptions<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<StageReport> {
    let mut training = MaskTraining::new(config, data, options)?;
    drive(&mut training, config, STAGE, &data.fingerprint(), options, progress)
}

/// Whether `run` holds the mask classifier finished with this very config.
pub fn mask_state_finished_with(run: &Path, config: &MaskStateConfig) -> bool {
    finished_with(run, STAGE, config)
}

/// The best classifier of `run`'s finished `mask/` folder, and its config.
pub fn load_mask_state(run: &Path, device: &Device) -> Result<(MaskNet, MaskStateConfig)> {
    let (dir, state) = StageDir::finished(run, STAGE)?;
    let config: MaskStateConfig = dir.config()?;
    let fresh = MaskNet::new(config.width, device);
    Ok((dir.load_best(&state, fresh)?, config))
}

/// Writes `net` to `path` as ONNX (atomically): `faces [batch, 3, 112, 112]` in [-1, 1] ->
/// `mask [batch, 2]`, the two answers as probabilities; then checks that ONNX Runtime gives
/// what burn gives on `faces` (largest difference under 1e-4).
pub fn export_mask_state_onnx(
    net: &MaskNet,
    path: &Path,
    metadata: &[(&str, String)],
    faces: &[AlignedFace],
    device: &Device,
) -> Result<f32> {
    let mut graph = crate::export::Graph::default();
    let mut x = "faces".to_string();
    for (conv, norm) in net.convs.iter().zip(&net.norms) {
        x = graph.conv(&x, conv)?;
        x = graph.batch_norm(&x, norm)?;
        x = graph.op("Relu", &[&x], vec![]);
    }
    x = graph.op("Flatten", &[&x], vec![Attribute::int("axis", 1)]);
    x = graph.gemm(&x, &net.head)?;
    GraphWriter::node(&mut graph, "Sigmoid", &[&x], "mask", vec![]);
    let bytes = graph.model("maskid_mask_state", ("mask", &[None, Some(2)]), metadata);
    crate::export::write(path, &bytes)?;
    let burn_out = answers(net, faces, device)?;
    let classifier = MaskClassifier::new(path, Parallelism::Latency)
        .map_err(|e| Error::Export(format!("ONNX Runtime cannot load {}: {e}", path.display())))?;
    let ort_out =
        classifier.answers(faces).map_err(|e| Error::Export(format!("ONNX Runtime on {}: {e}", path.display())))?;
    let diff = burn_out.iter().flatten().zip(ort_out.iter().flatten()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    if diff > 1e-4 {
        return Err(Error::Export(format!("ONNX Runtime's answers differ from burn's by up to {diff}")));
    }
    Ok(diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_config_is_the_default_and_reads_back_as_itself() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mask.toml");
        let config = MaskStateConfig::load(&path).unwrap();
        assert_eq!(config, MaskStateConfig::default(), "configs/mask.toml is the built-in recipe");
        assert_eq!(MaskStateConfig::from_toml(&config.to_toml(), "again").unwrap(), config);
        let bad = MaskStateConfig::from_toml("clean = 0.9\n", "x").unwrap_err().to_string();
        assert!(bad.contains("must be 1"), "{bad}");
        let unknown = MaskStateConfig::from_toml("cleen = 0.4\n", "x").unwrap_err().to_string();
        assert!(unknown.contains("cleen"), "{unknown}");
    }
}
