//! Fine-tuning YuNet to find faces behind masks, sunglasses and tight crops (issue 15), apart
//! from G2D (its own config, run folder `RUN/detector/` and entry point [`tune_detector`]), by
//! distillation from YuNet itself: the teacher sees the clean photo with its surroundings,
//! the student the same pixels masked (maskid's renderer), sometimes behind sunglasses, cut
//! to a tight crop and set on the grey border of the detector's rescue pass. Both views share
//! one geometry, so the teacher's head maps are the student's targets cell by cell: where a
//! face is, its box and five points; where none is, no face. No boxes are labelled by hand.
//!
//! A share of views shows no face (a part of the photo beside the face): the teacher finds
//! none there, and the student must not either.
//!
//! The student starts as the teacher. Views where the teacher disagrees with how the view was
//! cut (no face found in a view of the face, a face found beside it) are drawn again.
//! Validation: held-out people's views; the share of face views where the student's best
//! face scores at least the default threshold and lies where the teacher's does, less the
//! share of face-less views where it finds a face.

use std::path::{Path, PathBuf};

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Bytes, TensorData};
use image::RgbImage;
use maskid_core::Detection;
use maskid_face::{Detector, MASKED_PASS_BORDER_PX, MASKED_PASS_CANVAS_PX, MASKED_PASS_PHOTO_PX};
use maskid_mask::{render_mask, Coverage, MaskSpec, RgbImageMut, Rng};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use crate::config::{over_defaults, read_config, Schedule};
use crate::model::{file_layout, YuNet, HEAD_OUTPUTS};
use crate::run::{module_bytes, RunConfig, RunState, StageDir};
use crate::stage::{
    drive, finished_with, step_seed, Progress, StageLoop, StageReport, StepLoss, TrainOptions, Trained,
};
use crate::{Error, Result};

/// The masked-face pass's geometry (maskid-face), which the tuned detector learns on.
const CANVAS_PX: usize = MASKED_PASS_CANVAS_PX as usize;
const PHOTO_PX: usize = MASKED_PASS_PHOTO_PX as usize;
const BORDER_PX: usize = MASKED_PASS_BORDER_PX as usize;
/// Default score threshold of the detector, which validation counts faces at.
const SCORE: f32 = 0.6;

/// The folder of a run that holds the detector: `RUN/detector/`.
pub const STAGE: &str = "detector";

/// How the detector is tuned: its own config file (`configs/detector.toml`), read over these
/// defaults key by key like G2D's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectorTuningConfig {
    /// A name for reports and the default run folder.
    pub name: String,
    /// Steps and optimiser.
    pub schedule: Schedule,
    /// Share of views with a mask drawn (all styles and coverages of the synthesiser).
    pub masked: f32,
    /// Share of views with sunglasses drawn.
    pub sunglasses: f32,
    /// Share of views without a face: a part of the photo beside, above or below the face,
    /// which the teacher finds no face in either (the student must not learn that every
    /// canvas holds a face).
    pub faceless: f32,
    /// Share of views cut tight (from the eyebrows or the forehead to the chin or the mouth);
    /// the rest are loose crops with the whole head.
    pub tight: f32,
    /// Weight of the box and landmark regression beside the score maps.
    pub regression_weight: f32,
    /// How much more a cell counts in the score loss where the teacher sees a face (1 + this
    /// x the teacher's face score): few cells hold a face.
    pub face_weight: f32,
    /// Convolutions before this one (in the file's order) stay the teacher's: YuNet's first
    /// 11 work at strides 2 and 4, where burn's depthwise backward pass is slowest.
    pub tune_from_conv: usize,
    /// Validation views (held-out people).
    pub validation_views: usize,
}

impl Default for DetectorTuningConfig {
    fn default() -> Self {
        Self {
            name: "detector".into(),
            schedule: Schedule {
                steps: 1500,
                batch_size: 16,
                lr: 2e-4,
                checkpoint_every: 100,
                validate_every: 250,
                ..Schedule::default()
            },
            masked: 0.85,
            sunglasses: 0.35,
            faceless: 0.5,
            tight: 0.6,
            regression_weight: 1.0,
            face_weight: 8.0,
            tune_from_conv: 11,
            validation_views: 384,
        }
    }
}

impl DetectorTuningConfig {
    /// Parses TOML over the defaults; the error names the key. Files of maskid before the
    /// detector had a config of its own (a G2D config with `[detector]` and
    /// `[detector.schedule]`, as runs of that time saved) are read too.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let mut file: toml::Table = toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        if let Some(toml::Value::Table(mut tuning)) = file.remove("detector") {
            if let Some(name) = file.remove("name") {
                tuning.insert("name".into(), name);
            }
            file = tuning;
        }
        over_defaults(Self::default(), file, origin, Self::validate)
    }

    /// Reads and checks a TOML file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::from_toml(&read_config(path)?, &path.display().to_string())
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("BUG: the config serialises")
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.schedule.validate("schedule")?;
        for (key, share) in [
            ("masked", self.masked),
            ("sunglasses", self.sunglasses),
            ("faceless", self.faceless),
            ("tight", self.tight),
        ] {
            if !(0.0..=1.0).contains(&share) {
                return Err(format!("{key} = {share}: must be between 0 and 1"));
            }
        }
        for (key, weight) in [("regression_weight", self.regression_weight), ("face_weight", self.face_weight)] {
            if !(weight >= 0.0 && weight.is_finite()) {
                return Err(format!("{key} = {weight}: must be 0 or more"));
            }
        }
        if self.validation_views == 0 {
            return Err("validation_views = 0: must be at least 1".into());
        }
        Ok(())
    }
}

impl RunConfig for DetectorTuningConfig {
    fn to_toml(&self) -> String {
        DetectorTuningConfig::to_toml(self)
    }

    fn load(path: &Path) -> Result<Self> {
        DetectorTuningConfig::load(path)
    }

    fn stage_schedule(&self, _stage: &str) -> &Schedule {
        &self.schedule
    }

    fn schedule_table<'a>(toml: &'a mut toml::Table, _stage: &str) -> Option<&'a mut toml::Table> {
        toml.get_mut("schedule")?.as_table_mut()
    }
}

/// What the detector is tuned on.
#[derive(Clone, Copy)]
pub struct DetectorData<'a> {
    /// Photos of training people, with the teacher's face on each.
    pub train: &'a [LabelledPhoto],
    /// Photos of held-out people, for validation.
    pub validation: &'a [LabelledPhoto],
    /// YuNet's ONNX file: the student's starting point.
    pub yunet_onnx: &'a Path,
    /// YuNet as shipped, on ONNX Runtime: the teacher.
    pub teacher: &'a Detector,
}

impl DetectorData<'_> {
    /// A fingerprint of the photos and the teacher's faces, so a resumed run refuses others.
    fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for photo in self.train.iter().chain(self.validation) {
            hash.update(photo.path.to_string_lossy().as_bytes());
            hash.update(photo.face.score.to_le_bytes());
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// Tunes YuNet into `options.run`'s `detector/` folder (resuming when asked), reporting after
/// every step.
pub fn tune_detector(
    config: &DetectorTuningConfig,
    data: &DetectorData<'_>,
    options: &TrainOptions<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<StageReport> {
    let yunet = std::fs::read(data.yunet_onnx)
        .map_err(|source| Error::Io { path: data.yunet_onnx.display().to_string(), source })?;
    let mut tuning = DetectorTuning::new(&yunet, data.teacher, config, data.train, data.validation, &options.device)?;
    drive(&mut tuning, config, STAGE, &data.fingerprint(), options, progress)
}

/// Whether `run` holds the detector finished with this very config.
pub fn detector_finished_with(run: &Path, config: &DetectorTuningConfig) -> bool {
    finished_with(run, STAGE, config)
}

/// The tuned detector of `run`'s finished detector folder (YuNet's file `yunet_onnx` gives
/// its shape), and the config it was tuned with.
pub fn load_detector(run: &Path, yunet_onnx: &[u8], device: &Device) -> Result<(YuNet, DetectorTuningConfig)> {
    let (dir, state) = StageDir::finished(run, STAGE)?;
    let fresh = YuNet::from_onnx(yunet_onnx, device)?;
    Ok((dir.load_best(&state, fresh)?, dir.config()?))
}

/// A photo and its face as the teacher found it on the whole, clean photo.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabelledPhoto {
    /// The photo.
    pub path: PathBuf,
    /// The teacher's detection of its main face.
    pub face: Detection,
}

/// Score the teacher's face must reach on a clean photo for the photo to be used.
const LABEL_SCORE: f32 = 0.8;

/// The DevTrain photos of LFW at `lfw_root` (the first `max_people` people), each with the
/// teacher's face on the clean photo, split into training photos and those of the held-out
/// people `held_out` (validation). Photos where the teacher finds no clear face are left out.
/// The labels are kept in `run/detector-photos.json` and read from there on resume.
pub fn labelled_photos(
    lfw_root: &Path,
    held_out: &std::collections::BTreeSet<String>,
    max_people: Option<usize>,
    teacher: &Detector,
    max_pixels: u64,
    run: &Path,
) -> Result<(Vec<LabelledPhoto>, Vec<LabelledPhoto>)> {
    let labels = run.join("detector-photos.json");
    let photos: Vec<(bool, LabelledPhoto)> = match std::fs::read(&labels) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Data(format!("{}: unreadable ({e}); delete it to label again", labels.display())))?,
        Err(_) => {
            let lfw = maskid_eval::Lfw::open(lfw_root).map_err(|e| Error::Data(maskid_core::error_message(&e)))?;
            let mut people =
                lfw.people("peopleDevTrain.txt").map_err(|e| Error::Data(maskid_core::error_message(&e)))?;
            people.truncate(max_people.unwrap_or(usize::MAX));
            let refs: Vec<(bool, PathBuf)> = people
                .iter()
                .flat_map(|(name, n)| {
                    (1..=*n).map(move |i| (held_out.contains(name), maskid_eval::Lfw::image(name, i)))
                })
                .map(|(held, r)| (held, lfw.root().join(r.path)))
                .collect();
            let found: Vec<(bool, LabelledPhoto)> = refs
                .par_iter()
                .filter_map(|(held, path)| {
                    let image = maskid_face::load_image(path, max_pixels).ok()?;
                    let faces = teacher.detect(&image).ok()?;
                    let policy = maskid_face::FacePolicy::Largest;
                    let face =
                        *maskid_face::select_faces(faces, policy, image.dimensions(), LABEL_SCORE).ok()?.first()?;
                    (face.score >= LABEL_SCORE).then(|| (*held, LabelledPhoto { path: path.clone(), face }))
                })
                .collect();
            let json = serde_json::to_vec(&found).expect("BUG: labels serialise");
            maskid_core::write_atomic(&labels, &json)
                .map_err(|source| Error::Io { path: labels.display().to_string(), source })?;
            found
        }
    };
    let (validation, train): (Vec<_>, Vec<_>) = photos.into_iter().partition(|(held, _)| *held);
    Ok((train.into_iter().map(|(_, p)| p).collect(), validation.into_iter().map(|(_, p)| p).collect()))
}

/// Student and teacher canvases of one view: BGR planes, `[3, CANVAS_PX, CANVAS_PX]`.
struct View {
    student: Vec<f32>,
    teacher: Vec<f32>,
    /// Whether the view was cut around the face (else beside it).
    face: bool,
}

/// A crop of the photo, and where it lands on the canvas: canvas = (photo - origin) * scale
/// + border.
#[derive(Clone, Copy)]
struct Crop {
    x: f32,
    y: f32,
    width: f32,
    height: f32,
}

/// A crop around the face, inside the photo: `tight`, as most real masked-face photos are cut
/// (from the eyebrows or forehead to the mouth or below the chin), or loose, the whole head
/// with some surroundings.
fn crop_for(face: &Detection, tight: bool, rng: &mut Rng, photo: (u32, u32)) -> Crop {
    let [re, le, _, rm, lm] = face.landmarks.0;
    let eye_d = ((le[0] - re[0]).powi(2) + (le[1] - re[1]).powi(2)).sqrt().max(4.0);
    let crop = if tight {
        // Cut at the eyebrows or the forehead, from the mouth to below the chin.
        let top = (re[1] + le[1]) / 2.0 - eye_d * rng.range(0.15, 0.9);
        let bottom = (rm[1] + lm[1]) / 2.0 + eye_d * rng.range(0.3, 1.2);
        let left = re[0].min(rm[0]) - eye_d * rng.range(0.3, 0.8);
        let right = le[0].max(lm[0]) + eye_d * rng.range(0.3, 0.8);
        Crop { x: left, y: top, width: right - left, height: bottom - top }
    } else {
        let b = face.bbox;
        let side = b.width.max(b.height) * rng.range(1.1, 2.0);
        let aspect = rng.range(0.75, 1.25);
        let (w, h) = (side * aspect.sqrt(), side / aspect.sqrt());
        let cx = b.x + b.width / 2.0 + b.width * rng.range(-0.1, 0.1);
        let cy = b.y + b.height / 2.0 + b.height * rng.range(-0.1, 0.1);
        Crop { x: cx - w / 2.0, y: cy - h / 2.0, width: w, height: h }
    };
    // Inside the photo.
    let (pw, ph) = (photo.0 as f32, photo.1 as f32);
    let x = crop.x.clamp(0.0, pw - 8.0);
    let y = crop.y.clamp(0.0, ph - 8.0);
    Crop { x, y, width: (crop.x + crop.width).min(pw) - x, height: (crop.y + crop.height).min(ph) - y }
}

/// Two dark lenses over the eyes and a bridge between them.
fn draw_sunglasses(image: &mut RgbImage, face: &Detection, rng: &mut Rng) {
    let [re, le, ..] = face.landmarks.0;
    let d = ((le[0] - re[0]).powi(2) + (le[1] - re[1]).powi(2)).sqrt();
    let (rx, ry) = (d * rng.range(0.28, 0.38), d * rng.range(0.2, 0.28));
    let shade = rng.range(10.0, 60.0);
    let tint = [rng.range(0.8, 1.2), rng.range(0.8, 1.2), rng.range(0.8, 1.2)];
    let colour = tint.map(|t| (shade * t).clamp(0.0, 255.0) as u8);
    let (w, h) = image.dimensions();
    let x0 = (re[0] - rx * 1.2).max(0.0) as u32;
    let x1 = ((le[0] + rx * 1.2) as u32).min(w.saturating_sub(1));
    let y0 = (re[1].min(le[1]) - ry * 1.2).max(0.0) as u32;
    let y1 = ((re[1].max(le[1]) + ry * 1.2) as u32).min(h.saturating_sub(1));
    for y in y0..=y1 {
        for x in x0..=x1 {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            let lens = [re, le].iter().any(|c| ((fx - c[0]) / rx).powi(2) + ((fy - c[1]) / ry).powi(2) <= 1.0);
            // The bridge: a band between the lenses' inner edges, at eye height.
            let t = ((fx - re[0]) / (le[0] - re[0]).max(1.0)).clamp(0.0, 1.0);
            let eye_y = re[1] + t * (le[1] - re[1]);
            let bridge = fx > re[0] && fx < le[0] && (fy - eye_y + ry * 0.5).abs() < d * 0.04;
            if lens || bridge {
                image.put_pixel(x, y, image::Rgb(colour));
            }
        }
    }
}

/// Bilinear sample of `image` at `(x, y)` (pixel centres at .5), `None` outside.
fn sample(image: &RgbImage, x: f32, y: f32) -> Option<[f32; 3]> {
    let (w, h) = image.dimensions();
    let (fx, fy) = (x - 0.5, y - 0.5);
    if fx < -0.5 || fy < -0.5 || fx > w as f32 - 0.5 || fy > h as f32 - 0.5 {
        return None;
    }
    let (x0, y0) = (fx.floor().max(0.0) as u32, fy.floor().max(0.0) as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (ax, ay) = ((fx - x0 as f32).clamp(0.0, 1.0), (fy - y0 as f32).clamp(0.0, 1.0));
    let p = |x, y| image.get_pixel(x, y).0.map(f32::from);
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    Some(std::array::from_fn(|i| (a[i] * (1.0 - ax) + b[i] * ax) * (1.0 - ay) + (c[i] * (1.0 - ax) + d[i] * ax) * ay))
}

/// The canvas of `image` for `crop`: inside the crop, the photo; the border grey (student,
/// as the rescue pass pads) or the photo's surroundings (teacher); zeros beyond, as YuNet's
/// input is padded.
fn canvas(image: &RgbImage, crop: Crop, surroundings: bool, flip: bool) -> Vec<f32> {
    let plane = CANVAS_PX * CANVAS_PX;
    let mut out = vec![0f32; 3 * plane];
    let scale = PHOTO_PX as f32 / crop.width.max(crop.height);
    let border = BORDER_PX as f32;
    let (cw, ch) = (crop.width * scale, crop.height * scale);
    let (extent_w, extent_h) = ((cw + 2.0 * border).round() as usize, (ch + 2.0 * border).round() as usize);
    for v in 0..extent_h.min(CANVAS_PX) {
        for u in 0..extent_w.min(CANVAS_PX) {
            // A flipped view mirrors the canvas's content within its extent.
            let su = if flip { extent_w as f32 - u as f32 - 0.5 } else { u as f32 + 0.5 };
            let sv = v as f32 + 0.5;
            let inside = su >= border && su < border + cw && sv >= border && sv < border + ch;
            let rgb = if inside || surroundings {
                sample(image, crop.x + (su - border) / scale, crop.y + (sv - border) / scale)
            } else {
                None
            }
            .unwrap_or([128.0; 3]);
            let i = v * CANVAS_PX + u;
            out[i] = rgb[2];
            out[plane + i] = rgb[1];
            out[2 * plane + i] = rgb[0];
        }
    }
    out
}

/// One view of `photo` drawn from `seed`.
fn draw_view(photo: &LabelledPhoto, config: &DetectorTuningConfig, seed: u64) -> Result<View> {
    // maskid's own decoder: its limits hold for training photos too.
    let clean = maskid_face::load_image(&photo.path, maskid_face::DEFAULT_MAX_PIXELS)
        .map_err(|e| Error::Data(maskid_core::error_message(&e)))?;
    let mut rng = Rng::new(seed);
    let mut covered = clean.clone();
    if rng.chance(config.masked) {
        let (w, h) = covered.dimensions();
        let mut target = RgbImageMut::new(w as usize, h as usize, &mut covered)
            .map_err(|e| Error::Data(format!("{}: {e}", photo.path.display())))?;
        let spec = MaskSpec::from_seed(rng.next_u64(), None, Coverage::Random);
        render_mask(&mut target, &photo.face.landmarks, &spec)
            .map_err(|e| Error::Data(format!("{}: {e}", photo.path.display())))?;
    }
    if rng.chance(config.sunglasses) {
        draw_sunglasses(&mut covered, &photo.face, &mut rng);
    }
    let flip = rng.chance(0.5);
    if rng.chance(config.faceless) {
        if let Some(crop) = crop_beside(&photo.face, &mut rng, clean.dimensions()) {
            // The teacher sees the same grey border: its surroundings would hold the face.
            let student = canvas(&covered, crop, false, flip);
            return Ok(View { teacher: canvas(&clean, crop, false, flip), student, face: false });
        }
    }
    let crop = crop_for(&photo.face, rng.chance(config.tight), &mut rng, clean.dimensions());
    Ok(View { student: canvas(&covered, crop, false, flip), teacher: canvas(&clean, crop, true, flip), face: true })
}

/// A part of the photo clear of the face's box (grown by a tenth): below it, above it, left
/// or right of it, at least 24 px each way; `None` when the face leaves no such part.
fn crop_beside(face: &Detection, rng: &mut Rng, (w, h): (u32, u32)) -> Option<Crop> {
    let b = face.bbox;
    let (x0, y0) = (b.x - 0.1 * b.width, b.y - 0.1 * b.height);
    let (x1, y1) = (b.x + 1.1 * b.width, b.y + 1.1 * b.height);
    let (w, h) = (w as f32, h as f32);
    // Free bands: (x, y, width, height).
    let bands: Vec<[f32; 4]> = [[0.0, y1, w, h - y1], [0.0, 0.0, w, y0], [0.0, 0.0, x0, h], [x1, 0.0, w - x1, h]]
        .into_iter()
        .filter(|band| band[2] >= 24.0 && band[3] >= 24.0)
        .collect();
    if bands.is_empty() {
        return None;
    }
    let [bx, by, bw, bh] = bands[rng.below(bands.len())];
    let width = rng.range(24.0, bw);
    let height = rng.range(24.0, bh);
    Some(Crop { x: bx + rng.range(0.0, bw - width), y: by + rng.range(0.0, bh - height), width, height })
}

/// `views`' canvases as one `[n, 3, CANVAS_PX, CANVAS_PX]` tensor.
fn canvases(views: &[&Vec<f32>], device: &Device) -> Tensor<4> {
    let values: Vec<f32> = views.iter().flat_map(|v| v.iter().copied()).collect();
    Tensor::from_data(TensorData::new(values, [views.len(), 3, CANVAS_PX, CANVAS_PX]), device)
}

/// The best face in maps of the file's layout, if it scores at least `threshold`.
fn best_face(raw: &[Vec<f32>], threshold: f32) -> Option<Detection> {
    maskid_face::decode_heads(raw, CANVAS_PX as u32, threshold).into_iter().max_by(|a, b| a.score.total_cmp(&b.score))
}

/// Binary cross-entropy of logits `x` against probabilities `z`, per element.
fn bce_with_logits(x: Tensor<4>, z: Tensor<4>) -> Tensor<4> {
    x.clone().clamp_min(0.0) - x.clone() * z + (x.abs().neg().exp() + 1.0).log()
}

/// The distillation loss of the student's maps (as the network gives them: score logits, raw
/// regressions) against the teacher's (scores as probabilities). Scores: cross-entropy to the
/// teacher's probabilities at every cell, weighted up where the teacher sees a face (few cells
/// do). Boxes and points: L1 to the teacher's, weighted by the teacher's face score.
pub fn detector_distillation_loss(
    student: &[Tensor<4>],
    teacher: &[Tensor<4>],
    face_weight: f32,
    regression_weight: f32,
) -> (Tensor<1>, Vec<(&'static str, Tensor<1>)>) {
    let mut score = None;
    let mut regression = None;
    let add = |acc: Option<Tensor<1>>, t: Tensor<1>| Some(acc.map_or(t.clone(), |a| a + t));
    for level in 0..3 {
        let (tc, to) = (teacher[level].clone(), teacher[3 + level].clone());
        let face = tc.clone() * to.clone(); // [b, 1, h, w]
        let weight = face.clone() * face_weight + 1.0;
        let s =
            (bce_with_logits(student[level].clone(), tc) + bce_with_logits(student[3 + level].clone(), to)) * weight;
        score = add(score, s.mean().reshape([1]));
        let mass = face.clone().sum().reshape([1]) + 1.0;
        for (offset, channels) in [(6, 4), (9, 10)] {
            let diff = (student[offset + level].clone() - teacher[offset + level].clone()).abs();
            let weighted = (diff * face.clone()).sum().reshape([1]) / (mass.clone() * channels as f32);
            regression = add(regression, weighted);
        }
    }
    let (score, regression) = (score.expect("three levels"), regression.expect("three levels"));
    let total = score.clone() + regression.clone() * regression_weight;
    (total, vec![("score", score), ("regression", regression)])
}

/// The teacher's outputs for a batch, from maps in the file's layout (one `Vec` per output
/// per view) to `[batch, channels, H / s, W / s]` tensors.
fn teacher_maps(views: &[Vec<Vec<f32>>], device: &Device) -> Vec<Tensor<4>> {
    let channels = [1, 1, 1, 1, 1, 1, 4, 4, 4, 10, 10, 10];
    (0..HEAD_OUTPUTS.len())
        .map(|o| {
            let side = CANVAS_PX / [8, 16, 32][o % 3];
            let values: Vec<f32> = views.iter().flat_map(|v| v[o].iter().copied()).collect();
            let data = TensorData::new(values, [views.len(), side, side, channels[o]]);
            Tensor::<4>::from_data(data, device).permute([0, 3, 1, 2])
        })
        .collect()
}

/// The teacher's head maps of a view, in the file's layout.
type TeacherMaps = Vec<Vec<f32>>;

/// A student canvas and the teacher's maps of its view.
type TrainingView = (Vec<f32>, TeacherMaps);

/// The tuning loop (driven by the stage loop of stage/mod.rs).
pub(crate) struct DetectorTuning<'a> {
    /// YuNet as shipped, on ONNX Runtime.
    teacher: &'a Detector,
    student: Trained<YuNet>,
    config: DetectorTuningConfig,
    train: &'a [LabelledPhoto],
    /// Validation views (student canvas) with the teacher's face on the clean view, or none
    /// for face-less views.
    validation: Vec<(Vec<f32>, Option<Detection>)>,
    base: Device,
    device: Device,
}

impl<'a> DetectorTuning<'a> {
    pub(crate) fn new(
        yunet_onnx: &[u8],
        teacher: &'a Detector,
        config: &DetectorTuningConfig,
        train: &'a [LabelledPhoto],
        validation: &[LabelledPhoto],
        base: &Device,
    ) -> Result<Self> {
        if train.is_empty() {
            return Err(Error::Data("no training photos with a face".into()));
        }
        let device = base.clone().autodiff();
        let mut student = YuNet::from_onnx(yunet_onnx, &device)?;
        student.freeze_before(config.tune_from_conv);
        let mut tuning = Self {
            teacher,
            student: Trained::new(student, &config.schedule),
            config: config.clone(),
            train,
            validation: Vec::new(),
            base: base.clone(),
            device,
        };
        // Fixed validation views: the first draws the teacher finds a face in.
        let seed = config.schedule.seed ^ 0x05ee_d0f7_a11d;
        let wanted = config.validation_views.min(validation.len());
        let mut i = 0;
        while tuning.validation.len() < wanted && i < 4 * validation.len() {
            let photo = &validation[i % validation.len()];
            let view = draw_view(photo, config, step_seed(seed, i))?;
            if let Some((_, face)) = tuning.teacher_label(&view)? {
                tuning.validation.push((view.student, face));
            }
            i += 1;
        }
        Ok(tuning)
    }

    /// What the teacher says of a view, when it agrees with how the view was cut: its maps
    /// and `Some(face)` for a view of the face where it finds one at the default threshold,
    /// its maps and `None` for a face-less view where it finds nothing even at half of it;
    /// `None` (draw again) otherwise.
    fn teacher_label(&self, view: &View) -> Result<Option<(TeacherMaps, Option<Detection>)>> {
        let side = CANVAS_PX as u32;
        let maps = self
            .teacher
            .head_outputs(&view.teacher, side, side)
            .map_err(|e| Error::Data(format!("the teacher: {e}")))?;
        let label = if view.face {
            best_face(&maps, SCORE).map(Some)
        } else {
            best_face(&maps, SCORE / 2.0).is_none().then_some(None)
        };
        Ok(label.map(|face| (maps, face)))
    }

    /// Batch `step`: views the teacher finds a face in (others are drawn again), and the
    /// teacher's maps.
    fn batch(&self, step: usize) -> Result<(Tensor<4>, Vec<Tensor<4>>)> {
        let size = self.config.schedule.batch_size;
        let mut rng = Rng::new(step_seed(self.config.schedule.seed, step));
        let mut kept: Vec<TrainingView> = Vec::with_capacity(size);
        let mut draws = 0;
        while kept.len() < size {
            let want = size - kept.len();
            let picks: Vec<(usize, u64)> = (0..want).map(|_| (rng.below(self.train.len()), rng.next_u64())).collect();
            let drawn: Vec<Option<TrainingView>> = picks
                .par_iter()
                .map(|&(i, seed)| {
                    let view = draw_view(&self.train[i], &self.config, seed)?;
                    Ok(self.teacher_label(&view)?.map(|(maps, _)| (view.student, maps)))
                })
                .collect::<Result<_>>()?;
            kept.extend(drawn.into_iter().flatten());
            draws += want;
            if draws > 8 * size {
                return Err(Error::Data("the teacher finds no face in most training views".into()));
            }
        }
        let images = canvases(&kept.iter().map(|(v, _)| v).collect::<Vec<_>>(), &self.device);
        let maps: Vec<Vec<Vec<f32>>> = kept.into_iter().map(|(_, m)| m).collect();
        Ok((images, teacher_maps(&maps, &self.device)))
    }
}

impl StageLoop for DetectorTuning<'_> {
    fn metric(&self) -> &'static str {
        "found_less_false"
    }

    const VALIDATE_AT_START: bool = true;

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        self.student.parts()
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.student.restore(dir, state)
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let (images, teacher) = self.batch(step)?;
        let student = self.student.model.forward(images);
        let (total, terms) =
            detector_distillation_loss(&student, &teacher, self.config.face_weight, self.config.regression_weight);
        let grads = GradientsParams::from_grads(total.backward(), &self.student.model);
        self.student.step(self.config.schedule.lr_at(step), grads);
        Ok(StepLoss::read(total, terms))
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        let student = self.student.model.valid();
        let (mut faces, mut placed, mut faceless, mut false_faces) = (0usize, 0usize, 0usize, 0usize);
        for chunk in self.validation.chunks(32) {
            let maps = student.forward(canvases(&chunk.iter().map(|(v, _)| v).collect::<Vec<_>>(), &self.base));
            for (i, (_, label)) in chunk.iter().enumerate() {
                let found = best_face(&file_layout(&maps, i)?, SCORE);
                match (label, found) {
                    (Some(teacher_face), found) => {
                        faces += 1;
                        let centre = |d: &Detection| [d.bbox.x + d.bbox.width / 2.0, d.bbox.y + d.bbox.height / 2.0];
                        let b = centre(teacher_face);
                        let near = |face: &Detection| {
                            let a = centre(face);
                            ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt() <= 0.25 * teacher_face.bbox.width
                        };
                        placed += usize::from(found.as_ref().is_some_and(near));
                    }
                    (None, found) => {
                        faceless += 1;
                        false_faces += usize::from(found.is_some());
                    }
                }
            }
        }
        let share = |a: usize, n: usize| a as f64 / n.max(1) as f64;
        // Faces found where they are, less face-less views with a "face".
        let value = share(placed, faces) - share(false_faces, faceless);
        let extra = serde_json::json!({
            "faces_found": share(placed, faces),
            "faceless_with_a_face": share(false_faces, faceless),
            "views": self.validation.len(),
        });
        Ok((value, extra))
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.student.model.valid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detector_config_is_its_own_and_reads_the_files_of_either_shape() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/detector.toml");
        let config = DetectorTuningConfig::load(&file).unwrap();
        assert_eq!(config.name, "detector-v4");
        assert_eq!(DetectorTuningConfig::from_toml(&config.to_toml(), "again").unwrap(), config);
        // A partial schedule keeps the detector's own batch and rate.
        let partial = DetectorTuningConfig::from_toml("[schedule]\nsteps = 7\n", "x").unwrap();
        let want = Schedule { steps: 7, ..DetectorTuningConfig::default().schedule };
        assert_eq!(partial.schedule, want);
        assert_eq!((want.batch_size, want.lr), (16, 2e-4));
        // As runs saved it before the detector had a config of its own: inside a G2D config.
        let old = "name = \"old\"\nseed = 7\n[detector]\nfaceless = 0.25\n[detector.schedule]\nsteps = 9\n";
        let old = DetectorTuningConfig::from_toml(old, "old run").unwrap();
        assert_eq!((old.name.as_str(), old.faceless, old.schedule.steps), ("old", 0.25, 9));
    }

    #[test]
    fn every_key_of_the_detector_config_is_range_checked() {
        for (text, key) in [
            ("[schedule]\ncheckpoint_every = 0\n", "schedule.checkpoint_every"),
            ("[schedule]\nsteps = 10\ndecay_from = 10\n", "schedule.decay_from"),
            ("[schedule]\nlr = -1.0\n", "schedule.lr"),
            ("faceless = 1.5\n", "faceless"),
            ("face_weight = -1.0\n", "face_weight"),
            ("validation_views = 0\n", "validation_views"),
            ("steps = 5\n", "unknown field `steps`"),
        ] {
            let err = DetectorTuningConfig::from_toml(text, "x").unwrap_err().to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }
}
