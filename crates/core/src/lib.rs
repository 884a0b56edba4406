//! Types shared by every maskid crate: face boxes, the five landmarks, aligned faces and
//! embeddings, and [`write_atomic`], the way every crate writes a file. No models live here.
#![deny(missing_docs)]

use std::path::Path;

use serde::{Deserialize, Serialize};

/// An error and its causes on one line, `error: cause: cause's cause`. maskid's errors say
/// their own part and hand their cause over as `source()`, never both, so each part appears
/// once.
pub fn error_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text = format!("{text}: {c}");
        cause = c.source();
    }
    text
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder (created if
/// missing), synced, then renamed over `path`. A reader sees the old file or the new one,
/// never part of one; a failed write leaves no temporary file behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    // Threads of one process writing the same file must not share a temporary file.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp{}.{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
    let written = std::fs::File::create(&tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Side of an aligned face crop, in pixels.
pub const ALIGNED_SIZE_PX: usize = 112;

/// The standard 112x112 five-point template (protocols.md): left eye, right eye, nose tip,
/// left mouth corner, right mouth corner, as seen in the image.
pub const ALIGNMENT_TEMPLATE: [[f32; 2]; 5] =
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]];

/// An axis-aligned box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width.
    pub width: f32,
    /// Height.
    pub height: f32,
}

impl BBox {
    /// Area in square pixels (0 for degenerate boxes).
    pub fn area(&self) -> f32 {
        self.width.max(0.0) * self.height.max(0.0)
    }

    /// Intersection over union with another box.
    pub fn iou(&self, other: &BBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// Centre point.
    pub fn center(&self) -> [f32; 2] {
        [self.x + self.width / 2.0, self.y + self.height / 2.0]
    }
}

/// Five facial landmarks in image pixels, in the order of [`ALIGNMENT_TEMPLATE`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Landmarks5(pub [[f32; 2]; 5]);

/// One face found by the detector.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Face box (`box` in JSON, as the service says; `bbox` is read too, as older caches wrote it).
    #[serde(rename = "box", alias = "bbox")]
    pub bbox: BBox,
    /// The five landmarks.
    pub landmarks: Landmarks5,
    /// Detector confidence in 0..1.
    pub score: f32,
}

/// Whether a face wears a mask, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskState {
    /// No mask over the mouth.
    None,
    /// A mask over the nose and the mouth.
    Worn,
    /// A mask over the mouth, the nose left out.
    BelowNose,
}

impl MaskState {
    /// Every state, in the order the probabilities of [`FaceMask`] are given.
    pub const ALL: [MaskState; 3] = [MaskState::None, MaskState::Worn, MaskState::BelowNose];

    /// Its name in reports and JSON: `none`, `worn`, `below-nose`.
    pub fn name(self) -> &'static str {
        match self {
            MaskState::None => "none",
            MaskState::Worn => "worn",
            MaskState::BelowNose => "below-nose",
        }
    }

    /// Whether a mask covers the mouth.
    pub fn masked(self) -> bool {
        self != MaskState::None
    }
}

impl std::fmt::Display for MaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for MaskState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mask state `{s}` (allowed: none, worn, below-nose)"))
    }
}

/// The probability of a mask from which a face counts as masked. The classifier was trained
/// on more masked faces than unmasked ones, and at 0.5 it called 3.4% of rmfrd-dev's unmasked
/// snapshots masked; 0.8 is where the mean of the two error rates is least on the validation
/// faces (rmfrd-dev and masked-wild's validation tenth; `maskid eval-mask --rmfrd`, models/README.md).
pub const MASKED_AT: f32 = 0.8;

/// What the mask classifier says of one face: its state and the probability of each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FaceMask {
    /// The state: masked when `worn + below_nose >= MASKED_AT`, then worn or below the nose
    /// by which of the two is likelier.
    pub state: MaskState,
    /// Probability of no mask.
    pub none: f32,
    /// Probability of a mask over the nose and the mouth.
    pub worn: f32,
    /// Probability of a mask below the nose.
    pub below_nose: f32,
}

impl FaceMask {
    /// From the classifier's two answers: the probability that the face is masked, and that
    /// a mask, if there is one, covers the nose.
    pub fn from_answers(masked: f32, nose_covered: f32) -> Self {
        let (masked, nose_covered) = (masked.clamp(0.0, 1.0), nose_covered.clamp(0.0, 1.0));
        let state = match (masked >= MASKED_AT, nose_covered >= 0.5) {
            (false, _) => MaskState::None,
            (true, true) => MaskState::Worn,
            (true, false) => MaskState::BelowNose,
        };
        Self { state, none: 1.0 - masked, worn: masked * nose_covered, below_nose: masked * (1.0 - nose_covered) }
    }

    /// Probability that a mask covers the mouth (worn or below the nose).
    pub fn masked(&self) -> f32 {
        self.worn + self.below_nose
    }

    /// Probability of `state`.
    pub fn probability(&self, state: MaskState) -> f32 {
        match state {
            MaskState::None => self.none,
            MaskState::Worn => self.worn,
            MaskState::BelowNose => self.below_nose,
        }
    }
}

/// `mask worn (0.97)`: the state and the probability of the state's side of the
/// masked-or-not question (the coverage's own for the masked states).
impl std::fmt::Display for FaceMask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "mask {} ({:.2})", self.state, self.probability(self.state))
    }
}

/// Where an example of the mask classifier's data comes from, which says what is known of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaskSource {
    /// An unmasked photo: no mask (and the base of the crop-drawn examples).
    Clean,
    /// A mask drawn on the photo, which was then detected and aligned again.
    PhotoDrawn {
        /// Whether the drawn mask covers the nose.
        nose_covered: bool,
    },
    /// A photo of a real mask: masked, coverage unknown.
    Real,
}

/// One aligned face to learn from or validate on.
#[derive(Debug, Clone)]
pub struct MaskExample {
    /// The aligned face.
    pub face: AlignedFace,
    /// What is known of it.
    pub source: MaskSource,
}

/// An aligned face: 112x112 RGB, row-major, 3 bytes a pixel.
#[derive(Clone, PartialEq, Eq)]
pub struct AlignedFace {
    rgb: Vec<u8>,
}

impl std::fmt::Debug for AlignedFace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedFace({ALIGNED_SIZE_PX}x{ALIGNED_SIZE_PX})")
    }
}

impl AlignedFace {
    /// Number of bytes of one aligned face.
    pub const BYTES: usize = ALIGNED_SIZE_PX * ALIGNED_SIZE_PX * 3;

    /// Wraps 112*112*3 RGB bytes; `None` when the length is wrong.
    pub fn from_rgb(rgb: Vec<u8>) -> Option<Self> {
        (rgb.len() == Self::BYTES).then_some(Self { rgb })
    }

    /// The RGB bytes, row-major.
    pub fn rgb(&self) -> &[u8] {
        &self.rgb
    }

    /// The face mirrored left to right.
    pub fn mirrored(&self) -> Self {
        let mut rgb = self.rgb.clone();
        mirror_rows(&mut rgb, ALIGNED_SIZE_PX, 3);
        Self { rgb }
    }

    /// From a network's output: three 112x112 planes (R, G, B) of values in [-1, 1] (clamped);
    /// `None` when the length is wrong.
    pub fn from_unit_planes(planes: &[f32]) -> Option<Self> {
        let plane = ALIGNED_SIZE_PX * ALIGNED_SIZE_PX;
        if planes.len() != 3 * plane {
            return None;
        }
        let mut rgb = vec![0u8; Self::BYTES];
        for (p, px) in rgb.chunks_exact_mut(3).enumerate() {
            for (c, v) in px.iter_mut().enumerate() {
                *v = ((planes[c * plane + p] + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8;
            }
        }
        Some(Self { rgb })
    }
}

/// Mirrors an image left to right in place: rows of `width` pixels of `channels` values.
pub fn mirror_rows<T>(values: &mut [T], width: usize, channels: usize) {
    for row in values.chunks_exact_mut(width * channels) {
        for x in 0..width / 2 {
            for c in 0..channels {
                row.swap(x * channels + c, (width - 1 - x) * channels + c);
            }
        }
    }
}

/// An L2-normalised face embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Normalises `values` to unit length. A zero vector stays zero (its similarities are 0).
    pub fn normalized(mut values: Vec<f32>) -> Self {
        let norm = values.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            values.iter_mut().for_each(|v| *v /= norm);
        }
        Self(values)
    }

    /// Wraps values that are already unit length (read back from a cache), bit for bit.
    pub fn from_unit(values: Vec<f32>) -> Self {
        Self(values)
    }

    /// The components.
    pub fn values(&self) -> &[f32] {
        &self.0
    }

    /// Cosine similarity; both sides are unit vectors, so this is the dot product, kept
    /// within -1..1 (rounding can take a face compared with itself to 1.0000001). Embeddings
    /// of different lengths come from different models and have no similarity.
    pub fn cosine(&self, other: &Embedding) -> Result<f32, LengthMismatch> {
        if self.0.len() != other.0.len() {
            return Err(LengthMismatch { left: self.0.len(), right: other.0.len() });
        }
        Ok(self.0.iter().zip(&other.0).map(|(a, b)| a * b).sum::<f32>().clamp(-1.0, 1.0))
    }
}

/// Two embeddings of different lengths compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("embeddings of {left} and {right} values cannot be compared: they come from different models")]
pub struct LengthMismatch {
    /// Values of the first.
    pub left: usize,
    /// Values of the second.
    pub right: usize,
}

/// A 2x3 affine map: `[x', y'] = [[a, b, c], [d, e, f]] * [x, y, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// Applies the map to a point.
    pub fn apply(&self, [x, y]: [f64; 2]) -> [f64; 2] {
        let m = &self.0;
        [m[0][0] * x + m[0][1] * y + m[0][2], m[1][0] * x + m[1][1] * y + m[1][2]]
    }

    /// The inverse map, `None` when singular.
    pub fn inverse(&self) -> Option<Affine> {
        let [[a, b, c], [d, e, f]] = self.0;
        let det = a * e - b * d;
        if det.abs() < 1e-12 {
            return None;
        }
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Some(Affine([[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]]))
    }
}

/// Least-squares similarity transform (rotation, uniform scale, translation) taking `src`
/// onto `dst`: Umeyama's solution without reflection, in its closed 2-D form. Defined for
/// collinear points; `None` when the two sets differ in length, a point is not finite or all
/// of `src` coincide. Alignment (five points, or a subset such as the eyes) and mask
/// placement both use it.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Affine> {
    if src.len() != dst.len() || src.iter().chain(dst).flatten().any(|v| !v.is_finite()) {
        return None;
    }
    let n = src.len() as f64;
    let mean = |p: &[[f32; 2]]| {
        let s = p.iter().fold([0.0f64; 2], |acc, q| [acc[0] + f64::from(q[0]), acc[1] + f64::from(q[1])]);
        [s[0] / n, s[1] / n]
    };
    let (ms, md) = (mean(src), mean(dst));
    let (mut dot, mut cross, mut var) = (0.0, 0.0, 0.0);
    for (s, d) in src.iter().zip(dst) {
        let (sx, sy) = (f64::from(s[0]) - ms[0], f64::from(s[1]) - ms[1]);
        let (dx, dy) = (f64::from(d[0]) - md[0], f64::from(d[1]) - md[1]);
        dot += sx * dx + sy * dy;
        cross += sx * dy - sy * dx;
        var += sx * sx + sy * sy;
    }
    if var < 1e-6 {
        return None;
    }
    let (a, b) = (dot / var, cross / var);
    let tx = md[0] - (a * ms[0] - b * ms[1]);
    let ty = md[1] - (b * ms[0] + a * ms[1]);
    Some(Affine([[a, -b, tx], [b, a, ty]]))
}

/// What a synthetic occluder covers: one value in 0..1 per pixel, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionMap {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Covered fraction of each pixel.
    pub coverage: Vec<f32>,
}

impl OcclusionMap {
    /// A map covering nothing.
    pub fn empty(width: usize, height: usize) -> Self {
        Self { width, height, coverage: vec![0.0; width * height] }
    }

    /// Share of the image covered (mean coverage).
    pub fn covered_fraction(&self) -> f32 {
        self.coverage.iter().sum::<f32>() / self.coverage.len().max(1) as f32
    }

    /// The map as 8-bit grey (0 = visible, 255 = covered).
    pub fn to_grey(&self) -> Vec<u8> {
        self.coverage.iter().map(|c| (c.clamp(0.0, 1.0) * 255.0).round() as u8).collect()
    }
}

/// A face for training: the aligned crop, its landmarks in crop coordinates (where masks go),
/// the identity's index and the teacher's embedding of the clean crop.
#[derive(Debug, Clone)]
pub struct TrainingFace {
    /// The aligned crop.
    pub face: AlignedFace,
    /// The five landmarks inside the crop.
    pub landmarks: Landmarks5,
    /// Identity index, 0..number of identities.
    pub identity: u32,
    /// The teacher's embedding of the unmasked crop.
    pub teacher: Embedding,
}

/// Verification pairs ready to score: reference and probe crops as the protocol shows them
/// (a masked probe under `mask-probe`), the probe's clean crop and the covered region, the
/// labels and the folds.
#[derive(Debug, Clone, Default)]
pub struct VerificationPairs {
    /// Reference crops.
    pub references: Vec<AlignedFace>,
    /// Probe crops as compared.
    pub probes: Vec<AlignedFace>,
    /// Probe crops without the mask.
    pub clean_probes: Vec<AlignedFace>,
    /// Covered region of each probe.
    pub probe_holes: Vec<OcclusionMap>,
    /// Same person?
    pub genuine: Vec<bool>,
    /// Fold of each pair.
    pub folds: Vec<usize>,
}

/// Dense verification pairs ready to score: every photo once clean and once masked, and the
/// pairs as indices into them, so that 100,000 pairs need no copy of a face. Under
/// `mask-probe` a pair compares `clean[a]` with `masked[b]`; under `mask-both`, `masked[a]`
/// with `masked[b]`.
#[derive(Debug, Clone, Default)]
pub struct DensePairs {
    /// Clean crops.
    pub clean: Vec<AlignedFace>,
    /// The same crops masked, as the protocol masks them.
    pub masked: Vec<AlignedFace>,
    /// (reference, probe) indices into the crops.
    pub pairs: Vec<(u32, u32)>,
    /// Same person?
    pub genuine: Vec<bool>,
    /// Fold of each pair.
    pub folds: Vec<usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_is_read_from_the_two_answers() {
        let worn = FaceMask::from_answers(0.9, 0.8);
        assert_eq!(worn.state, MaskState::Worn);
        assert!((worn.none + worn.worn + worn.below_nose - 1.0).abs() < 1e-6);
        assert!((worn.masked() - 0.9).abs() < 1e-6);
        assert_eq!(FaceMask::from_answers(0.9, 0.2).state, MaskState::BelowNose);
        // Unmasked whatever the nose answer says; out-of-range answers are clamped.
        assert_eq!(FaceMask::from_answers(0.4, 0.99).state, MaskState::None);
        assert_eq!(FaceMask::from_answers(MASKED_AT - 0.01, 0.99).state, MaskState::None);
        assert_eq!(FaceMask::from_answers(MASKED_AT, 0.99).state, MaskState::Worn);
        assert_eq!(FaceMask::from_answers(-1.0, 2.0).none, 1.0);
        for state in MaskState::ALL {
            assert_eq!(state.name().parse::<MaskState>().unwrap(), state);
        }
        assert!("masked".parse::<MaskState>().is_err());
        assert_eq!(worn.to_string(), "mask worn (0.72)");
    }

    #[test]
    fn an_error_message_names_each_cause_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("reading {path}")]
        struct Read {
            path: String,
            source: std::io::Error,
        }
        let e = Read { path: "a.jpg".into(), source: std::io::Error::other("disk on fire") };
        assert_eq!(error_message(&e), "reading a.jpg: disk on fire");
    }

    #[test]
    fn an_atomic_write_replaces_the_file_whole_and_a_failed_one_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        write_atomic(&path, b"old").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // A folder where the file should go: the rename fails, the temporary file goes.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir_all(blocked.join("inside")).unwrap();
        assert!(write_atomic(&blocked, b"x").is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "only sub/ and blocked/: {left:?}");
    }

    #[test]
    fn iou_of_half_overlapping_boxes() {
        let a = BBox { x: 0.0, y: 0.0, width: 2.0, height: 2.0 };
        let b = BBox { x: 1.0, y: 0.0, width: 2.0, height: 2.0 };
        // intersection 2, union 6
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&BBox { x: 5.0, ..b }), 0.0);
    }

    #[test]
    fn embeddings_are_unit_length_and_cosine_is_symmetric() {
        let a = Embedding::normalized(vec![3.0, 4.0]);
        let b = Embedding::normalized(vec![4.0, 3.0]);
        assert!((a.cosine(&a).unwrap() - 1.0).abs() < 1e-6);
        assert!((a.cosine(&b).unwrap() - 24.0 / 25.0).abs() < 1e-6);
        assert_eq!(a.cosine(&b), b.cosine(&a));
        let longer = Embedding::normalized(vec![1.0, 0.0, 0.0]);
        assert_eq!(a.cosine(&longer), Err(LengthMismatch { left: 2, right: 3 }));
        assert_eq!(Embedding::normalized(vec![0.0, 0.0]).values(), &[0.0, 0.0]);
    }

    #[test]
    fn aligned_face_checks_its_length() {
        assert!(AlignedFace::from_rgb(vec![0; AlignedFace::BYTES]).is_some());
        assert!(AlignedFace::from_rgb(vec![0; 10]).is_none());
    }
}
