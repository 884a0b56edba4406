//! YuNet face detection (2023mar): letterbox onto the smallest canvas of multiples of 32 (at
//! most 640x640), decode the three strides, non-maximum suppression, and the policy for photos
//! with several faces.

use std::path::Path;

use image::{imageops, RgbImage};
use maskid_core::{BBox, Detection, Landmarks5};
use ort::value::TensorRef;

use crate::onnx::{Parallelism, SessionPool};
use crate::onnx_graph::SymbolicDims;
use crate::{Error, Result};

/// Longest side of the input; larger photos shrink to it.
const INPUT_PX: u32 = 640;
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
}

impl Default for DetectorConfig {
    /// 0.6 / 0.3 / 5000: the score threshold of the reference numbers, OpenCV's NMS defaults.
    fn default() -> Self {
        Self { score_threshold: 0.6, nms_iou: 0.3, top_k: 5000 }
    }
}

/// YuNet on ONNX Runtime.
pub struct Detector {
    pool: SessionPool,
    config: DetectorConfig,
}

impl Detector {
    /// Loads the YuNet model file.
    pub fn new(model: &Path, config: DetectorConfig, parallelism: Parallelism) -> Result<Self> {
        let pool = SessionPool::load(model, SymbolicDims::IMAGE_SIZE, parallelism)?;
        if pool.input_names() != ["input"] {
            return Err(Error::Model {
                path: model.display().to_string(),
                reason: "not a YuNet 2023mar detector (expected one input named `input`)".into(),
            });
        }
        Ok(Self { pool, config })
    }

    /// The settings in use.
    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// All faces in `image`, best first, in the image's pixel coordinates.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        let (width, height) = image.dimensions();
        // The photo goes at the top left of the input, zero padding right and bottom up to the
        // next multiple of 32, as OpenCV's FaceDetectorYN pads (a 250 px LFW photo runs at
        // 256x256, 6 times fewer pixels than 640x640, same faces found). Photos that fit go in
        // unscaled, as OpenCV runs YuNet at the photo's own size: on
        // lfw-devtest, upscaling 250 px LFW photos to 640 costs the teacher 0.4 points of
        // accuracy. Larger photos shrink to fit; tiny ones (< 128 px) grow to 256 px so that
        // their faces reach the sizes YuNet was trained on.
        let longest = width.max(height) as f32;
        let scale = if longest > INPUT_PX as f32 {
            INPUT_PX as f32 / longest
        } else if longest < 128.0 {
            256.0 / longest
        } else {
            1.0
        };
        let new_w = ((width as f32 * scale).round() as u32).clamp(1, INPUT_PX);
        let new_h = ((height as f32 * scale).round() as u32).clamp(1, INPUT_PX);
        let resized = if scale == 1.0 {
            std::borrow::Cow::Borrowed(image)
        } else if scale < 1.0 {
            std::borrow::Cow::Owned(imageops::thumbnail(image, new_w, new_h)) // area average: no aliasing
        } else {
            std::borrow::Cow::Owned(imageops::resize(image, new_w, new_h, imageops::FilterType::Triangle))
        };
        let canvas_w = new_w.div_ceil(CANVAS_STEP) * CANVAS_STEP;
        let canvas_h = new_h.div_ceil(CANVAS_STEP) * CANVAS_STEP;
        let plane = (canvas_w * canvas_h) as usize;
        let mut input = vec![0f32; 3 * plane];
        // YuNet was trained on OpenCV's BGR images, 0..255, no normalisation.
        for (x, y, p) in resized.enumerate_pixels() {
            let i = (y * canvas_w + x) as usize;
            input[i] = f32::from(p[2]);
            input[plane + i] = f32::from(p[1]);
            input[2 * plane + i] = f32::from(p[0]);
        }
        let raw = self.pool.with(|session| -> Result<Vec<Vec<f32>>> {
            let tensor = TensorRef::from_array_view(([1usize, 3, canvas_h as usize, canvas_w as usize], &input[..]))?;
            let outputs = session.run(ort::inputs![tensor])?;
            let mut raw = Vec::new();
            for kind in ["cls", "obj", "bbox", "kps"] {
                for stride in STRIDES {
                    let (_, data) = outputs[format!("{kind}_{stride}").as_str()].try_extract_tensor::<f32>()?;
                    raw.push(data.to_vec());
                }
            }
            Ok(raw)
        })?;
        let mut candidates = decode(&raw, canvas_w, self.config.score_threshold);
        candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
        candidates.truncate(self.config.top_k);
        let mut faces = nms(candidates, self.config.nms_iou);
        // Back to the photo's pixels.
        let back = 1.0 / scale;
        for face in &mut faces {
            face.bbox = BBox {
                x: face.bbox.x * back,
                y: face.bbox.y * back,
                width: face.bbox.width * back,
                height: face.bbox.height * back,
            };
            for point in &mut face.landmarks.0 {
                point[0] *= back;
                point[1] *= back;
            }
        }
        Ok(faces)
    }
}

/// Decodes YuNet's outputs, ordered cls, obj, bbox, kps x strides 8, 16, 32, for an input
/// `canvas_w` pixels wide.
fn decode(raw: &[Vec<f32>], canvas_w: u32, score_threshold: f32) -> Vec<Detection> {
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

/// Applies `policy` to the faces of a `width` x `height` image. No face is an error.
pub fn select_faces(
    faces: Vec<Detection>,
    policy: FacePolicy,
    (width, height): (u32, u32),
    threshold: f32,
) -> Result<Vec<Detection>> {
    if faces.is_empty() {
        return Err(Error::NoFace { path: "<memory>".into(), threshold });
    }
    let centre = [width as f32 / 2.0, height as f32 / 2.0];
    let distance = |d: &Detection| {
        let c = d.bbox.center();
        (c[0] - centre[0]).powi(2) + (c[1] - centre[1]).powi(2)
    };
    Ok(match policy {
        FacePolicy::All => faces,
        FacePolicy::RequireOne if faces.len() > 1 => {
            return Err(Error::SeveralFaces { path: "<memory>".into(), count: faces.len() })
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
        let faces = decode(&raw, canvas_w, 0.5);
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
