//! How good a reference a face will make: head pose from the five landmarks, sharpness of the
//! aligned crop, and size in the photo. A face turned far from the camera, blurred or tiny
//! embeds poorly, and a poor reference in a gallery draws false matches (a near-profile
//! enrolment drew strangers in issue 33's trial).
//!
//! The limits sit in the tails of LFW's news photos: 1% of its 13,233 faces are turned further
//! than about 52 degrees or smaller than 30 pixels between the eyes, and 1% of a seeded sample
//! of 800 are blurrier than sharpness 27 (docs/cli.md, Enrolment quality).

use maskid_core::{AlignedFace, Detection, ALIGNED_SIZE_PX};
use serde::Serialize;

/// Nose depth in front of the eyes over half the eye distance, for the yaw estimate (about
/// 20 mm against 31 mm on an adult face).
const NOSE_DEPTH_OVER_HALF_EYES: f32 = 0.7;
/// The same depth over the eyes-to-mouth height, for pitch.
const NOSE_DEPTH_OVER_HEIGHT: f32 = 0.3;
/// Where the nose tip sits between the eye line (0) and the mouth line (1) in a face looking
/// straight ahead: LFW's median.
const FRONTAL_NOSE_HEIGHT: f32 = 0.56;

/// A face's quality as a reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FaceQuality {
    /// Head turn left or right, degrees (0: facing the camera; sign: which way).
    pub yaw_deg: f32,
    /// Head tilt up or down, degrees.
    pub pitch_deg: f32,
    /// Distance between the eyes in the photo, pixels.
    pub eye_distance_px: f32,
    /// Variance of the Laplacian of the aligned crop's grey levels (higher is sharper).
    pub sharpness: f32,
}

/// One way a face falls short, and whether it is enough to refuse it as a reference.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityNote {
    /// What falls short, with its value and the limit.
    pub problem: String,
    /// Past the refusal limit (else past the warning one).
    pub poor: bool,
}

/// (measure, value, warn from, refuse from, above or below): a limit is passed when the value
/// is above it (`true`) or below it.
type Limit = (&'static str, f32, f32, f32, bool);

impl FaceQuality {
    /// Measures a detected face and its aligned crop.
    pub fn measure(detection: &Detection, face: &AlignedFace) -> Self {
        let [right_eye, left_eye, nose, mouth_right, mouth_left] = detection.landmarks.0;
        // Into a frame where the eyes lie level, the right eye at the origin.
        let (dx, dy) = (left_eye[0] - right_eye[0], left_eye[1] - right_eye[1]);
        let eye_distance_px = dx.hypot(dy).max(f32::EPSILON);
        let (cos, sin) = (dx / eye_distance_px, dy / eye_distance_px);
        let level = |p: [f32; 2]| {
            let (x, y) = (p[0] - right_eye[0], p[1] - right_eye[1]);
            (x * cos + y * sin, y * cos - x * sin)
        };
        let (nose_x, nose_y) = level(nose);
        let mouth_y = (level(mouth_right).1 + level(mouth_left).1) / 2.0;
        // The nose tip stands in front of the eyes, so turning the head moves it across them.
        let across = nose_x / eye_distance_px - 0.5;
        let yaw_deg = (2.0 * across / NOSE_DEPTH_OVER_HALF_EYES).atan().to_degrees();
        let down = if mouth_y > f32::EPSILON { nose_y / mouth_y - FRONTAL_NOSE_HEIGHT } else { 0.0 };
        let pitch_deg = (down / NOSE_DEPTH_OVER_HEIGHT).atan().to_degrees();
        Self { yaw_deg, pitch_deg, eye_distance_px, sharpness: sharpness(face) }
    }

    /// The limits this face passes, worst first; empty for a good reference.
    pub fn notes(&self) -> Vec<QualityNote> {
        let limits: [Limit; 4] = [
            ("turned", self.yaw_deg.abs(), 40.0, 55.0, true),
            ("tilted", self.pitch_deg.abs(), 30.0, 45.0, true),
            ("sharpness", self.sharpness, 30.0, 15.0, false),
            ("eyes", self.eye_distance_px, 20.0, 12.0, false),
        ];
        let mut notes: Vec<QualityNote> = limits
            .into_iter()
            .filter_map(|(what, value, warn, refuse, above)| {
                let past = |limit: f32| if above { value >= limit } else { value < limit };
                if !past(warn) {
                    return None;
                }
                let poor = past(refuse);
                let limit = if poor { refuse } else { warn };
                let side = if above { "limit" } else { "at least" };
                Some(QualityNote { problem: format!("{what} {value:.0}{}, {side} {limit:.0}", unit_of(what)), poor })
            })
            .collect();
        notes.sort_by_key(|n| !n.poor);
        notes
    }
}

fn unit_of(what: &str) -> &'static str {
    match what {
        "turned" | "tilted" => " degrees",
        "eyes" => " px apart",
        _ => "",
    }
}

/// Variance of the 4-neighbour Laplacian of the crop's grey levels, inside a one-pixel border.
fn sharpness(face: &AlignedFace) -> f32 {
    let n = ALIGNED_SIZE_PX;
    let grey: Vec<f32> = face
        .rgb()
        .chunks_exact(3)
        .map(|p| 0.299 * f32::from(p[0]) + 0.587 * f32::from(p[1]) + 0.114 * f32::from(p[2]))
        .collect();
    let laplacian: Vec<f32> = (1..n - 1)
        .flat_map(|y| (1..n - 1).map(move |x| y * n + x))
        .map(|i| grey[i - 1] + grey[i + 1] + grey[i - n] + grey[i + n] - 4.0 * grey[i])
        .collect();
    let mean = laplacian.iter().sum::<f32>() / laplacian.len() as f32;
    laplacian.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / laplacian.len() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskid_core::{BBox, Landmarks5, ALIGNMENT_TEMPLATE};

    fn detection(landmarks: [[f32; 2]; 5]) -> Detection {
        let bbox = BBox { x: 0.0, y: 0.0, width: 112.0, height: 112.0 };
        Detection { bbox, landmarks: Landmarks5(landmarks), score: 0.9 }
    }

    fn checkerboard(cell: usize) -> AlignedFace {
        let n = ALIGNED_SIZE_PX;
        let rgb = (0..n * n)
            .flat_map(|i| [if (i / n / cell + i % n / cell).is_multiple_of(2) { 40 } else { 210 }; 3])
            .collect();
        AlignedFace::from_rgb(rgb).unwrap()
    }

    #[test]
    fn a_frontal_sharp_face_of_fair_size_passes() {
        let mut template = ALIGNMENT_TEMPLATE;
        template[2][1] = template[0][1] + FRONTAL_NOSE_HEIGHT * (template[3][1] - template[0][1]);
        let q = FaceQuality::measure(&detection(template), &checkerboard(4));
        assert!(q.yaw_deg.abs() < 2.0 && q.pitch_deg.abs() < 1.0, "{q:?}");
        assert!((q.eye_distance_px - 35.24).abs() < 0.01, "{q:?}");
        assert!(q.notes().is_empty(), "{:?}", q.notes());
    }

    #[test]
    fn a_turned_face_and_a_flat_crop_are_refused_with_reasons() {
        // The nose tip past the left eye: turned about 61 degrees.
        let mut turned = ALIGNMENT_TEMPLATE;
        turned[2][0] = turned[1][0] + 5.0;
        let flat = AlignedFace::from_rgb(vec![128; ALIGNED_SIZE_PX * ALIGNED_SIZE_PX * 3]).unwrap();
        let q = FaceQuality::measure(&detection(turned), &flat);
        assert!(q.yaw_deg > 50.0, "{q:?}");
        assert_eq!(q.sharpness, 0.0);
        let notes = q.notes();
        assert!(notes.iter().all(|n| n.poor), "{notes:?}");
        assert!(
            notes[0].problem.starts_with("turned 61 degrees") && notes[0].problem.ends_with(", limit 55"),
            "{notes:?}"
        );
        assert_eq!(notes[1].problem, "sharpness 0, at least 15");
        // Sharpness falls with blur: larger checker cells have fewer edges.
        assert!(sharpness(&checkerboard(2)) > sharpness(&checkerboard(8)));
    }
}
