//! YuNet face detection (2023mar): letterbox onto the smallest canvas of multiples of 32 (at
//! most 640x640), decode the three strides, non-maximum suppression, and the policy for photos
//! with several faces.

use std::path::Path;

use image::{imageops, RgbImage};
use maskid_core::{BBox, Detection, Landmarks5};
use ort::value::TensorRef;

use crate::onnx::{Parallelism, SessionPool};
use crate::{Error, Result};
use maskid_onnx::SymbolicDims;

/// Longest side of the input; larger photos shrink to it.
const INPUT_PX: u32 = 640;
/// Longest side of the rescue's enlarged pass.
const ZOOM_PX: u32 = 1280;
const STRIDES: [u32; 3] = [8, 16, 32];
/// The coarsest stride: the canvas is a multiple of it.
const CANVAS_STEP: u32 = STRIDES[STRIDES.len() - 1];

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// Minimum face score, sqrt(class * objectness), in 0..1.
    pub score_threshold: f32,
    /// Boxes overlapping a better one by more than this IoU are dropped.
    pub nms_iou: f32,
    /// Candidates kept before NMS, best first.
    pub top_k: usize,
    /// When no face reaches the threshold, look again: padded, then at
    /// [`RESCUE_SCORE_THRESHOLD`] with plausible landmarks (see [`Detector::detect`]).
    pub rescue: bool,
}

impl Default for DetectorConfig {
    /// 0.6 / 0.3 / 5000: the score threshold of the reference numbers, OpenCV's NMS
    /// defaults; rescue on.
    fn default() -> Self {
        Self { score_threshold: 0.6, nms_iou: 0.3, top_k: 5000, rescue: true }
    }
}

/// The rescue pass's border on each side, as a share of the photo's longer side.
const RESCUE_PAD: f32 = 0.2;
/// The rescue pass's longest side before padding (the padded photo still fits 640 px;
/// smaller photos are enlarged to it).
const RESCUE_PX: u32 = 448;
/// Lowest score a rescued face may have; accepted only with plausible landmarks. On
/// masked-wild and on 1,000 face-less strips of LFW photos (`maskid bench --detect`; see
/// BENCHMARKS.md), 0.6 / 0.5 / 0.4 / 0.3 / 0.1 find 95.7 / 96.5 / 97.1 / 97.5 / 99.1% of the
/// masked faces and a face in 1.1 / 1.5 / 1.9 / 3.5 / 16.9% of the strips (0.8% without
/// rescue): below 0.4, false faces grow faster than real ones.
pub const RESCUE_SCORE_THRESHOLD: f32 = 0.4;
/// A rescued face's smallest width, as a share of the photo's shorter side.
const RESCUE_MIN_FACE: f32 = 0.2;

/// The masked-face pass's geometry: the photo's longest side, on a grey border of a fifth of
/// it each side, on a square canvas of YuNet's stride (160 + 2 x 32 = 224). The tuned
/// detector (`maskid train --stage detector`) learns on this geometry and runs on it.
pub const MASKED_PASS_PHOTO_PX: u32 = 160;
/// The masked-face pass's grey border, each side: the rescue's share of the photo, rounded
/// as [`Detector::detect`]'s bordered passes round it.
pub const MASKED_PASS_BORDER_PX: u32 = (MASKED_PASS_PHOTO_PX as f32 * RESCUE_PAD).round() as u32;
/// The masked-face pass's canvas side: photo and borders, up to YuNet's stride.
pub const MASKED_PASS_CANVAS_PX: u32 =
    (MASKED_PASS_PHOTO_PX + 2 * MASKED_PASS_BORDER_PX).div_ceil(CANVAS_STEP) * CANVAS_STEP;

/// YuNet on ONNX Runtime.
pub struct Detector {
    pool: SessionPool,
    config: DetectorConfig,
    /// YuNet tuned on masked faces, for the rescue's masked-face pass.
    masked: Option<SessionPool>,
}

impl Detector {
    /// Loads the YuNet model file.
    pub fn new(model: &Path, config: DetectorConfig, parallelism: Parallelism) -> Result<Self> {
        Ok(Self { pool: load_yunet(model, parallelism)?, config, masked: None })
    }

    /// Adds the rescue's last pass: `model`, YuNet tuned on masked faces (`maskid train
    /// --stage detector`; maskid ships one), on the photo at 160 px on a grey border.
    pub fn with_masked_model(mut self, model: &Path, parallelism: Parallelism) -> Result<Self> {
        self.masked = Some(load_yunet(model, parallelism)?);
        Ok(self)
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// All faces in `image`, best first, in the image's pixel coordinates.
    ///
    /// With `rescue`, a photo without a face at the score threshold is looked at again, resized
    /// to 448 px and set on a grey border of 20% per side: a face that fills the frame (a
    /// tight crop, most real masked-face photos) is found poorly by YuNet, whose anchors
    /// expect context around a face. On that padded photo, a face scoring at least
    /// [`RESCUE_SCORE_THRESHOLD`] is kept when its five points form a plausible upright face
    /// ([`plausible_face`]); masks lower YuNet's scores more than its landmarks' quality.
    /// If that finds nothing either, the photo is enlarged twice (up to 1280 px), for a small
    /// masked face in a scene, with the same floor and check. Last, with a masked-face model
    /// ([`Detector::with_masked_model`]), that model looks at the photo at 160 px on a grey
    /// border (a fifth of it each side): it finds faces behind masks *and* dark glasses, cut
    /// at the eyebrows, which YuNet's own passes miss. Its faces must reach the score threshold.
    /// A photo with a face at the first pass (every LFW photo) never reaches the rescue.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let faces = self.detect_once(image)?;
        if !faces.is_empty() || !self.config.rescue {
            return Ok(faces);
        }
        let faces = self.bordered_pass(&self.pool, image, RESCUE_PX, RESCUE_SCORE_THRESHOLD)?;
        if !faces.is_empty() {
            return Ok(faces);
        }
        let faces = self.enlarged_pass(image)?;
        if !faces.is_empty() {
            return Ok(faces);
        }
        // At the score threshold itself: the tuned model scores masked faces high, and a lower
        // floor found more false faces than real ones (BENCHMARKS.md).
        self.detect_masked(image)
    }

    /// Faces found by the main pass alone, without the rescue passes (video frames: a face
    /// missed in one frame is found in the next).
    pub fn detect_once(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        self.detect_at(&self.pool, image, self.config.score_threshold, INPUT_PX)
    }

    /// Faces found by the masked-face model alone (the rescue's last pass, at the score
    /// threshold): its landmarks were tuned on masked faces. Empty without that model.
    pub fn detect_masked(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        match &self.masked {
            Some(masked) => self.bordered_pass(masked, image, MASKED_PASS_PHOTO_PX, self.config.score_threshold),
            None => Ok(Vec::new()),
        }
    }

    /// The photo's longest side at `photo_px` on a grey border of a fifth of it each side
    /// (YuNet finds faces that fill the frame poorly), faces of at least a fifth of the photo.
    fn bordered_pass(&self, pool: &SessionPool, image: &RgbImage, photo_px: u32, floor: f32) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        let scale = photo_px as f32 / width.max(height) as f32;
        let (small_w, small_h) =
            (((width as f32 * scale).round() as u32).max(1), ((height as f32 * scale).round() as u32).max(1));
        let small = if scale < 1.0 {
            imageops::thumbnail(image, small_w, small_h)
        } else {
            imageops::resize(image, small_w, small_h, imageops::FilterType::Triangle)
        };
        let pad = (small_w.max(small_h) as f32 * RESCUE_PAD).round() as u32;
        let mut padded = RgbImage::from_pixel(small_w + 2 * pad, small_h + 2 * pad, image::Rgb([128, 128, 128]));
        imageops::replace(&mut padded, &small, i64::from(pad), i64::from(pad));
        let mut faces: Vec<Detection> = self
            .rescue_at(pool, &padded, INPUT_PX, floor)?
            .into_iter()
            // The pass is for faces that fill the frame, not for small ones in a scene.
            .filter(|d| d.bbox.width >= RESCUE_MIN_FACE * small_w.min(small_h) as f32)
            .collect();
        // Back to the photo's pixels.
        for face in &mut faces {
            map_detection(face, |[x, y]| [(x - pad as f32) / scale, (y - pad as f32) / scale]);
        }
        Ok(faces)
    }

    /// A small face in a scene: the photo enlarged (twice, up to 1280 px).
    fn enlarged_pass(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        let zoom = (2.0 * width.max(height) as f32).min(ZOOM_PX as f32) / width.max(height) as f32;
        if zoom <= 1.2 {
            return Ok(Vec::new());
        }
        let (big_w, big_h) = ((width as f32 * zoom).round() as u32, (height as f32 * zoom).round() as u32);
        let big = imageops::resize(image, big_w, big_h, imageops::FilterType::Triangle);
        let mut faces = self.rescue_at(&self.pool, &big, ZOOM_PX, RESCUE_SCORE_THRESHOLD)?;
        for face in &mut faces {
            map_detection(face, |[x, y]| [x / zoom, y / zoom]);
        }
        Ok(faces)
    }

    /// One rescue pass: faces from the rescue's score floor, those under the score threshold
    /// only with plausible landmarks.
    fn rescue_at(&self, pool: &SessionPool, image: &RgbImage, max_px: u32, floor: f32) -> Result<Vec<Detection>> {
        let floor = floor.min(self.config.score_threshold);
        let faces = self.detect_at(pool, image, floor, max_px)?;
        Ok(faces.into_iter().filter(|d| d.score >= self.config.score_threshold || plausible_face(d)).collect())
    }

    /// Faces scoring at least `threshold` in one pass.
    fn detect_at(&self, pool: &SessionPool, image: &RgbImage, threshold: f32, max_px: u32) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        // The photo goes at the top left of the input, zero padding right and bottom up to the
        // next multiple of 32, as OpenCV's FaceDetectorYN pads (a 250 px LFW photo runs at
        // 256x256, 6 times fewer pixels than 640x640, same faces found). Photos that fit go in
        // unscaled, as OpenCV runs YuNet at the photo's own size: on
        // lfw-devtest, upscaling 250 px LFW photos to 640 costs the teacher 0.4 points of
        // accuracy. Larger photos shrink to fit; tiny ones (< 128 px) grow to 256 px so that
        // their faces reach the sizes YuNet was trained on.
        let longest = width.max(height) as f32;
        let scale: f32 = if longest > max_px as f32 {
            max_px as f32 / longest
        } else if longest < 128.0 {
            256.0 / longest
        } else {
            1.0
        };
        let new_w = ((width as f32 * scale).round() as u32).clamp(1, max_px);
        let new_h = ((height as f32 * scale).round() as u32).clamp(1, max_px);
        let resized = if scale == 1.0 {
            std::borrow::Cow::Borrowed(image)
        } else if scale < 1.0 {
            std::borrow::Cow::Owned(imageops::thumbnail(image, new_w, new_h)) // area average: no aliasing
        } else {
            std::borrow::Cow::Owned(imageops::resize(image, new_w, new_h, imageops::FilterType::Triangle))
        };
        let (input, canvas_w, canvas_h) = yunet_input(&resized);
        let raw = run_heads(pool, &input, canvas_w, canvas_h)?;
        let mut candidates = decode_heads(&raw, canvas_w, threshold);
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        candidates.truncate(self.config.top_k);
        let mut faces = nms(candidates, self.config.nms_iou);
        // Back to the photo's pixels.
        for face in &mut faces {
            map_detection(face, |[x, y]| [x / scale, y / scale]);
        }
        Ok(faces)
    }

    /// YuNet's twelve outputs for one input of [`yunet_input`] (`canvas_w` x `canvas_h`), in
    /// the order cls, obj, bbox, kps x strides 8, 16, 32; scores after the sigmoid.
    pub fn head_outputs(&self, input: &[f32], canvas_w: u32, canvas_h: u32) -> Result<Vec<Vec<f32>>> {
        run_heads(&self.pool, input, canvas_w, canvas_h)
    }
}

fn load_yunet(model: &Path, parallelism: Parallelism) -> Result<SessionPool> {
    let pool = SessionPool::load(model, SymbolicDims::IMAGE_SIZE, parallelism)?;
    if pool.input_names() != ["input"] {
        return Err(Error::Model {
            path: model.display().to_string(),
            reason: "not a YuNet 2023mar detector (expected one input named `input`)".into(),
        });
    }
    Ok(pool)
}

fn run_heads(pool: &SessionPool, input: &[f32], canvas_w: u32, canvas_h: u32) -> Result<Vec<Vec<f32>>> {
    pool.with(|session| -> Result<Vec<Vec<f32>>> {
        let tensor = TensorRef::from_array_view(([1usize, 3, canvas_h as usize, canvas_w as usize], input))?;
        let outputs = session.run(ort::inputs![tensor])?;
        let mut raw = Vec::new();
        for kind in ["cls", "obj", "bbox", "kps"] {
            for stride in STRIDES {
                let (_, data) = outputs[format!("{kind}_{stride}").as_str()].try_extract_tensor::<f32>()?;
                raw.push(data.to_vec());
            }
        }
        Ok(raw)
    })
}

/// YuNet's input for `image`: BGR planes of 0..255 values (YuNet was trained on OpenCV's
/// images, no normalisation), the photo at the top left and zeros right and below up to the
/// next multiple of 32, as OpenCV's FaceDetectorYN pads. Returns the planes and the canvas's
/// width and height.
pub fn yunet_input(image: &RgbImage) -> (Vec<f32>, u32, u32) {
    let (width, height) = image.dimensions();
    let canvas_w = width.div_ceil(CANVAS_STEP) * CANVAS_STEP;
    let canvas_h = height.div_ceil(CANVAS_STEP) * CANVAS_STEP;
    let plane = (canvas_w * canvas_h) as usize;
    let mut input = vec![0f32; 3 * plane];
    for (x, y, p) in image.enumerate_pixels() {
        let i = (y * canvas_w + x) as usize;
        input[i] = f32::from(p[2]);
        input[plane + i] = f32::from(p[1]);
        input[2 * plane + i] = f32::from(p[0]);
    }
    (input, canvas_w, canvas_h)
}

/// Moves a detection's box and points by `to`, an axis-aligned scale and shift.
fn map_detection(face: &mut Detection, to: impl Fn([f32; 2]) -> [f32; 2]) {
    let [x0, y0] = to([face.bbox.x, face.bbox.y]);
    let [x1, y1] = to([face.bbox.x + face.bbox.width, face.bbox.y + face.bbox.height]);
    face.bbox = BBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
    for point in &mut face.landmarks.0 {
        *point = to(*point);
    }
}

/// Whether YuNet's five points (the person's right eye, left eye, nose tip, right and left
/// mouth corners; the right ones on the image's left) look like an upright face in their
/// box: both eyes above the nose, the nose above both mouth corners, each pair in order from
/// the image's left, the eyes 25-65% of the box's width apart, every point inside the box.
pub fn plausible_face(d: &Detection) -> bool {
    let [re, le, nose, rm, lm] = d.landmarks.0;
    let b = d.bbox;
    let inside =
        d.landmarks.0.iter().all(|p| p[0] >= b.x && p[0] <= b.x + b.width && p[1] >= b.y && p[1] <= b.y + b.height);
    let eyes = (le[0] - re[0]) / b.width.max(1e-3);
    inside
        && re[1].max(le[1]) < nose[1]
        && nose[1] < rm[1].min(lm[1])
        && re[0] < le[0]
        && rm[0] < lm[0]
        && (0.25..=0.65).contains(&eyes)
}

/// Decodes YuNet's outputs, ordered cls, obj, bbox, kps x strides 8, 16, 32, for an input
/// `canvas_w` pixels wide: every cell scoring at least `score_threshold`, unsorted, before
/// non-maximum suppression.
pub fn decode_heads(raw: &[Vec<f32>], canvas_w: u32, score_threshold: f32) -> Vec<Detection> {
    let mut out = Vec::new();
    for (s, stride) in STRIDES.iter().enumerate() {
        let (cls, obj, bbox, kps) = (&raw[s], &raw[3 + s], &raw[6 + s], &raw[9 + s]);
        let cols = canvas_w / stride;
        let stride = *stride as f32;
        for (idx, (c, o)) in cls.iter().zip(obj).enumerate() {
            let score = (c.clamp(0.0, 1.0) * o.clamp(0.0, 1.0)).sqrt();
            if score < score_threshold {
                continue;
            }
            let col = (idx as u32 % cols) as f32;
            let row = (idx as u32 / cols) as f32;
            let b = &bbox[idx * 4..idx * 4 + 4];
            let cx = (col + b[0]) * stride;
            let cy = (row + b[1]) * stride;
            let w = b[2].exp() * stride;
            let h = b[3].exp() * stride;
            let k = &kps[idx * 10..idx * 10 + 10];
            let landmarks = std::array::from_fn(|n| [(k[2 * n] + col) * stride, (k[2 * n + 1] + row) * stride]);
            out.push(Detection {
                bbox: BBox { x: cx - w / 2.0, y: cy - h / 2.0, width: w, height: h },
                landmarks: Landmarks5(landmarks),
                score,
            });
        }
    }
    out
}

/// Greedy NMS over detections sorted best first.
fn nms(sorted: Vec<Detection>, iou: f32) -> Vec<Detection> {
    let mut kept: Vec<Detection> = Vec::new();
    for d in sorted {
        if kept.iter().all(|k| k.bbox.iou(&d.bbox) <= iou) {
            kept.push(d);
        }
    }
    kept
}

/// Which faces of a photo to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FacePolicy {
    /// The face with the largest box.
    Largest,
    /// The face nearest the image centre (the protocols' choice).
    #[default]
    Center,
    /// Every face.
    All,
    /// Exactly one face, else an error.
    RequireOne,
}

impl std::str::FromStr for FacePolicy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "largest" => Ok(Self::Largest),
            "center" => Ok(Self::Center),
            "all" => Ok(Self::All),
            "require-one" => Ok(Self::RequireOne),
            _ => Err(format!("unknown face policy `{s}` (allowed: largest, center, all, require-one)")),
        }
    }
}

impl FacePolicy {
    /// A policy that yields one face per photo (every one but `all`), for uses that take one
    /// face of a photo: enrolment, identification, verification.
    pub fn parse_one(s: &str) -> std::result::Result<Self, String> {
        match s.parse()? {
            Self::All => Err("one face per photo here: choose largest, center or require-one".into()),
            policy => Ok(policy),
        }
    }
}

/// Applies `policy` to the faces of a `width` x `height` image. No face is an error.
pub fn select_faces(
    faces: Vec<Detection>,
    policy: FacePolicy,
    (width, height): (u32, u32),
    threshold: f32,
) -> Result<Vec<Detection>> {
    if faces.is_empty() {
        return Err(Error::NoFace { path: None, threshold });
    }
    let centre = [width as f32 / 2.0, height as f32 / 2.0];
    let distance = |d: &Detection| {
        let c = d.bbox.center();
        (c[0] - centre[0]).powi(2) + (c[1] - centre[1]).powi(2)
    };
    Ok(match policy {
        FacePolicy::All => faces,
        FacePolicy::RequireOne if faces.len() > 1 => {
            return Err(Error::SeveralFaces { path: None, count: faces.len() })
        }
        FacePolicy::RequireOne => faces,
        FacePolicy::Largest => {
            vec![*faces.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area())).expect("BUG: not empty")]
        }
        FacePolicy::Center => {
            vec![*faces.iter().min_by(|a, b| distance(a).total_cmp(&distance(b))).expect("BUG: not empty")]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face(x: f32, y: f32, side: f32, score: f32) -> Detection {
        Detection { bbox: BBox { x, y, width: side, height: side }, landmarks: Landmarks5([[0.0; 2]; 5]), score }
    }

    #[test]
    fn nms_keeps_the_better_of_overlapping_boxes() {
        let kept = nms(vec![face(0.0, 0.0, 10.0, 0.9), face(1.0, 1.0, 10.0, 0.8), face(50.0, 50.0, 10.0, 0.7)], 0.3);
        assert_eq!(kept.iter().map(|d| d.score).collect::<Vec<_>>(), vec![0.9, 0.7]);
    }

    #[test]
    fn decode_places_a_cell_at_its_stride() {
        // A 256x128 canvas; one confident cell at stride 32, row 2, col 3, offsets 0.5, size
        // exp(0)=1 stride.
        let (canvas_w, canvas_h) = (256, 128);
        let mut raw: Vec<Vec<f32>> = Vec::new();
        for kind in [1usize, 1, 4, 10] {
            for stride in STRIDES {
                let cells = ((canvas_w / stride) * (canvas_h / stride)) as usize;
                raw.push(vec![0.0; cells * kind]);
            }
        }
        let idx = 2 * 8 + 3;
        raw[2][idx] = 1.0; // cls_32
        raw[5][idx] = 0.81; // obj_32
        raw[8][idx * 4..idx * 4 + 2].copy_from_slice(&[0.5, 0.5]);
        raw[11][idx * 10] = 1.0;
        let faces = decode_heads(&raw, canvas_w, 0.5);
        assert_eq!(faces.len(), 1);
        let f = faces[0];
        assert!((f.score - 0.9).abs() < 1e-6);
        assert_eq!(f.bbox, BBox { x: 3.5 * 32.0 - 16.0, y: 2.5 * 32.0 - 16.0, width: 32.0, height: 32.0 });
        assert_eq!(f.landmarks.0[0], [4.0 * 32.0, 2.0 * 32.0]);
    }

    #[test]
    fn policies_pick_the_right_face() {
        let faces = vec![face(0.0, 0.0, 30.0, 0.9), face(45.0, 45.0, 10.0, 0.8)];
        let size = (100, 100);
        let pick = |p| select_faces(faces.clone(), p, size, 0.6);
        assert_eq!(pick(FacePolicy::Largest).unwrap()[0].score, 0.9);
        assert_eq!(pick(FacePolicy::Center).unwrap()[0].score, 0.8);
        assert_eq!(pick(FacePolicy::All).unwrap().len(), 2);
        assert!(matches!(pick(FacePolicy::RequireOne), Err(Error::SeveralFaces { count: 2, .. })));
        assert!(matches!(select_faces(vec![], FacePolicy::All, size, 0.6), Err(Error::NoFace { .. })));
        assert!("sideways".parse::<FacePolicy>().unwrap_err().contains("require-one"));
    }
}
