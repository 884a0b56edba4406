//! The faces the mask classifier learns from and is measured on (models/README.md, "Mask
//! state"): unmasked LFW and UTKFace photos; the same photos with maskid's masks drawn on the
//! whole photo, detected and aligned again; masked-wild's real masks; and for the test,
//! rmfrd-dev's photos with and without real masks.

use std::path::{Path, PathBuf};

use image::RgbImage;
use maskid_core::{AlignedFace, Detection, FaceMask, MaskExample, MaskSource, MaskState, MASKED_AT};
use maskid_face::{align_face, select_faces, FacePolicy, MaskClassifier};
use maskid_mask::{image_seed, render_mask, Coverage, MaskSpec, MaskStyle, RgbImageMut, Rng};
use rayon::prelude::*;
use serde::Serialize;

use crate::{Models, Progress, ProgressFn, Result};

/// Which part of masked-wild a photo is in, by a hash of its file name: a fifth for the test,
/// a tenth for validation, the rest for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskedWildPart {
    /// Trained on.
    Train,
    /// Chooses the classifier's step.
    Validation,
    /// Measured only (BENCHMARKS.md, the model card).
    Test,
}

impl MaskedWildPart {
    /// The part of the photo named `file_name`.
    pub fn of(file_name: &str) -> Self {
        match image_seed(file_name, 0x3a5c_0001) % 10 {
            0 | 1 => Self::Test,
            2 => Self::Validation,
            _ => Self::Train,
        }
    }
}

/// Where the classifier's faces come from.
pub struct MaskSources<'a> {
    /// LFW: DevTrain people train, the held-out DevTrain people validate.
    pub lfw: &'a Path,
    /// The held-out DevTrain people (validation only).
    pub held_out: &'a std::collections::BTreeSet<String>,
    /// The first this many DevTrain people only (short runs).
    pub max_people: Option<usize>,
    /// UTKFace's faces (a tenth validate), at most `utkface_photos` of them: tight crops of
    /// every age and origin, which LFW's news photos lack.
    pub utkface: Option<&'a Path>,
    /// How many UTKFace photos (a seeded choice).
    pub utkface_photos: usize,
    /// masked-wild's photos of real masks, split by [`MaskedWildPart`].
    pub masked_wild: &'a Path,
}

/// One photo to make examples from, and whether they validate.
struct Source {
    path: PathBuf,
    validation: bool,
    real: bool,
}

/// Training and validation faces for `maskid train --stage mask`: each unmasked photo gives
/// its face and the face with a mask drawn on the photo (nose covered or not, by the photo's
/// seed), found again by the detector; each real masked photo its largest face. Photos
/// without a face are passed over.
pub fn mask_examples(
    models: &Models,
    sources: &MaskSources<'_>,
    progress: ProgressFn<'_>,
) -> Result<(Vec<MaskExample>, Vec<MaskExample>)> {
    let lfw = maskid_eval::Lfw::open(sources.lfw)?;
    let mut photos = Vec::new();
    let mut people = lfw.people("peopleDevTrain.txt")?;
    people.truncate(sources.max_people.unwrap_or(usize::MAX));
    for (name, count) in people {
        let validation = sources.held_out.contains(&name);
        for n in 1..=count {
            let path = lfw.root().join(maskid_eval::Lfw::image(&name, n).path);
            photos.push(Source { path, validation, real: false });
        }
    }
    if let Some(utkface) = sources.utkface {
        let mut files: Vec<PathBuf> =
            maskid_eval::dataset_photos(utkface)?.into_iter().map(|p| utkface.join(p)).collect();
        files.sort_by_key(|p| image_seed(&p.to_string_lossy(), 7));
        files.truncate(sources.utkface_photos);
        photos.extend(files.into_iter().map(|path| {
            let validation = image_seed(&path.to_string_lossy(), 8).is_multiple_of(10);
            Source { path, validation, real: false }
        }));
    }
    for (path, _) in maskid_eval::image_files(&[sources.masked_wild.to_path_buf()])? {
        let part = MaskedWildPart::of(&file_name(&path));
        if part != MaskedWildPart::Test {
            photos.push(Source { path, validation: part == MaskedWildPart::Validation, real: true });
        }
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let made: Vec<(bool, Vec<MaskExample>)> = photos
        .par_iter()
        .map(|source| {
            let examples = match source.real {
                true => real_example(models, &source.path).into_iter().collect(),
                false => drawn_examples(models, &source.path),
            };
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(Progress { stage: "mask faces", done: d, total: photos.len() });
            (source.validation, examples)
        })
        .collect();
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (is_validation, examples) in made {
        if is_validation { &mut validation } else { &mut train }.extend(examples);
    }
    Ok((train, validation))
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// The largest face of a real masked photo.
fn real_example(models: &Models, path: &Path) -> Option<MaskExample> {
    let crop = models.largest_aligned_face(path)?;
    Some(MaskExample { face: AlignedFace::from_rgb(crop)?, source: MaskSource::Real })
}

/// The face of an unmasked photo, and the face with a mask drawn on the photo (the nose
/// covered or not by the photo's seed), detected again.
fn drawn_examples(models: &Models, path: &Path) -> Vec<MaskExample> {
    let Ok(image) = models.load_photo(path) else { return Vec::new() };
    let Some(face) = main_face(models, &image) else { return Vec::new() };
    let Ok(clean) = align_face(&image, &face.landmarks) else { return Vec::new() };
    let mut examples = vec![MaskExample { face: clean, source: MaskSource::Clean }];
    let seed = image_seed(&path.to_string_lossy(), 0x3a5c);
    let coverage = if Rng::new(seed).chance(0.5) { Coverage::Nose } else { Coverage::BelowNose };
    if let Some((masked, nose_covered)) = masked_on_photo(models, &image, &face, seed, coverage) {
        examples.push(MaskExample { face: masked, source: MaskSource::PhotoDrawn { nose_covered } });
    }
    examples
}

/// The face a photo of one person shows: the one nearest the centre.
fn main_face(models: &Models, image: &RgbImage) -> Option<Detection> {
    let found = models.detector.detect(image).ok()?;
    let threshold = models.detector.config().score_threshold;
    select_faces(found, FacePolicy::Center, image.dimensions(), threshold).ok()?.into_iter().next()
}

/// `image` with a mask (any style but the hand) drawn at `face`'s landmarks, detected and
/// aligned again; and whether the mask covers the nose. `None` when the detector loses the
/// face under the mask.
fn masked_on_photo(
    models: &Models,
    image: &RgbImage,
    face: &Detection,
    seed: u64,
    coverage: Coverage,
) -> Option<(AlignedFace, bool)> {
    let spec = MaskSpec::from_seed(seed, Some(MaskStyle::pick_mask(&mut Rng::new(seed ^ 1))), coverage);
    let mut photo = image.clone();
    let (w, h) = (photo.width() as usize, photo.height() as usize);
    render_mask(&mut RgbImageMut::new(w, h, photo.as_mut()).ok()?, &face.landmarks, &spec).ok()?;
    let found = main_face(models, &photo)?;
    Some((align_face(&photo, &found.landmarks).ok()?, spec.nose_covered))
}

/// One line of the classifier's test: a kind of face, the answer it should get, and how
/// often it does.
#[derive(Debug, Clone, Serialize)]
pub struct MaskTestRow {
    /// The faces.
    pub faces: String,
    /// The right answer.
    pub expected: &'static str,
    /// Faces answered right.
    pub right: usize,
    /// Faces.
    pub of: usize,
    /// Share right, percent.
    pub percent: f64,
    /// Wilson 95% interval of the share, percent.
    pub interval: (f64, f64),
}

impl MaskTestRow {
    fn new(faces: impl Into<String>, expected: &'static str, right: usize, of: usize) -> Self {
        let percent = 100.0 * right as f64 / of.max(1) as f64;
        let (lo, hi) = wilson(right, of);
        Self { faces: faces.into(), expected, right, of, percent, interval: (100.0 * lo, 100.0 * hi) }
    }
}

/// Wilson score interval (95%) of `right` successes in `of` trials.
fn wilson(right: usize, of: usize) -> (f64, f64) {
    if of == 0 {
        return (0.0, 1.0);
    }
    let (n, p, z) = (of as f64, right as f64 / of as f64, 1.96f64);
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Where the classifier's test faces come from: none of them trained on or chose it.
pub struct MaskTestSources<'a> {
    /// LFW: the photos of `pairsDevTest.txt`, unmasked and with masks drawn on the photo.
    pub lfw: &'a Path,
    /// masked-wild: its test part.
    pub masked_wild: &'a Path,
    /// rmfrd-dev: its unmasked (0001-) and masked (9001-) photos.
    pub rmfrd: Option<&'a Path>,
}

/// What `maskid eval-mask` measures.
#[derive(Debug, Clone, Serialize)]
pub struct MaskTest {
    /// Share right of each kind of face, at `masked_at`.
    pub rows: Vec<MaskTestRow>,
    /// The probability of a mask from which a face counts as masked ([`MASKED_AT`]).
    pub masked_at: f32,
    /// Candidate thresholds on the validation faces (with rmfrd-dev only).
    pub thresholds: Vec<MaskThresholdRow>,
}

/// How one threshold on the probability of a mask does on the validation faces.
#[derive(Debug, Clone, Serialize)]
pub struct MaskThresholdRow {
    /// Masked from this probability on.
    pub masked_at: f32,
    /// Unmasked faces called masked, percent.
    pub unmasked_wrong: f64,
    /// Masked faces called unmasked, percent.
    pub masked_wrong: f64,
    /// The mean of the two: what chooses, whatever the two kinds' numbers of faces.
    pub balanced_wrong: f64,
}

impl MaskThresholdRow {
    /// Thresholds 0.50, 0.55, ... 0.95 on the answers for unmasked and masked faces.
    fn sweep(unmasked: &[[f32; 2]], masked: &[[f32; 2]]) -> Vec<Self> {
        let wrong = |answers: &[[f32; 2]], at: f32, want_masked: bool| {
            let wrong = answers.iter().filter(|a| (a[0] >= at) != want_masked).count();
            100.0 * wrong as f64 / answers.len().max(1) as f64
        };
        (10..20)
            .map(|step| {
                let at = step as f32 * 0.05;
                let (unmasked_wrong, masked_wrong) = (wrong(unmasked, at, false), wrong(masked, at, true));
                Self {
                    masked_at: at,
                    unmasked_wrong,
                    masked_wrong,
                    balanced_wrong: (unmasked_wrong + masked_wrong) / 2.0,
                }
            })
            .collect()
    }
}

/// The classifier's accuracy on real photos both ways and on the coverage of drawn masks, and
/// with rmfrd-dev, how each threshold does on the validation faces.
pub fn test_mask_state(
    models: &Models,
    classifier: &MaskClassifier,
    sources: &MaskTestSources<'_>,
    progress: ProgressFn<'_>,
) -> Result<MaskTest> {
    let lfw = maskid_eval::Lfw::open(sources.lfw)?;
    let mut devtest: Vec<PathBuf> =
        lfw.devtest_pairs()?.into_iter().flat_map(|p| [p.a.path, p.b.path]).map(|p| lfw.root().join(p)).collect();
    devtest.sort();
    devtest.dedup();
    let answer = |faces: &[AlignedFace]| -> Result<Vec<[f32; 2]>> { Ok(classifier.answers(faces)?) };
    // Each face's state as maskid reports it (FaceMask's rule), so this measures the product.
    let state = |a: &[f32; 2]| FaceMask::from_answers(a[0], a[1]).state;
    let masked = |answers: &[[f32; 2]]| answers.iter().filter(|a| state(a) != MaskState::None).count();
    let mut rows = Vec::new();
    let mut thresholds = Vec::new();

    let total = devtest.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    // Each DevTest photo unmasked, and masked on the photo with the nose covered and not (a
    // respirator covers it whatever it is asked: its drawn coverage is the truth).
    let lfw_faces: Vec<[Option<(AlignedFace, bool)>; 3]> = devtest
        .par_iter()
        .map(|path| {
            let d = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            progress(Progress { stage: "LFW DevTest", done: d, total });
            let Ok(image) = models.load_photo(path) else { return [None, None, None] };
            let Some(face) = main_face(models, &image) else { return [None, None, None] };
            let seed = image_seed(&path.to_string_lossy(), 0x7e57);
            let drawn = |coverage| masked_on_photo(models, &image, &face, seed, coverage);
            let clean = align_face(&image, &face.landmarks).ok().map(|f| (f, false));
            [clean, drawn(Coverage::Nose), drawn(Coverage::BelowNose)]
        })
        .collect();
    let column = |i: usize| -> Vec<(AlignedFace, bool)> { lfw_faces.iter().filter_map(|f| f[i].clone()).collect() };
    let faces_of =
        |column: &[(AlignedFace, bool)]| -> Vec<AlignedFace> { column.iter().map(|(f, _)| f.clone()).collect() };
    let clean = answer(&faces_of(&column(0)))?;
    rows.push(MaskTestRow::new("LFW DevTest photos, unmasked", "none", clean.len() - masked(&clean), clean.len()));

    let mut wild_photos: Vec<PathBuf> =
        maskid_eval::image_files(&[sources.masked_wild.to_path_buf()])?.into_iter().map(|(p, _)| p).collect();
    wild_photos.sort();
    let wild = |part: MaskedWildPart| -> (usize, Vec<AlignedFace>) {
        let photos: Vec<&PathBuf> = wild_photos.iter().filter(|p| MaskedWildPart::of(&file_name(p)) == part).collect();
        (photos.len(), photos.par_iter().filter_map(|p| real_example(models, p)).map(|e| e.face).collect())
    };
    let (photos, real_faces) = wild(MaskedWildPart::Test);
    let found = real_faces.len();
    let real_answers = answer(&real_faces)?;
    rows.push(MaskTestRow::new(
        format!("masked-wild test part, real masks ({found} faces in {photos} photos)"),
        "masked",
        masked(&real_answers),
        found,
    ));
    if let Some(rmfrd) = sources.rmfrd {
        let photos: Vec<PathBuf> = maskid_eval::dataset_photos(rmfrd)?.into_iter().map(|p| rmfrd.join(p)).collect();
        let (with_mask, without): (Vec<&PathBuf>, Vec<&PathBuf>) =
            photos.iter().partition(|p| file_name(p).rsplit('_').next().is_some_and(|n| n.starts_with('9')));
        let mut validation = Vec::new();
        for (paths, label, expected, want_masked) in [
            (without, "rmfrd-dev photos, unmasked", "none", false),
            (with_mask, "rmfrd-dev photos, real masks", "masked", true),
        ] {
            let faces: Vec<AlignedFace> = paths
                .par_iter()
                .filter_map(|p| models.largest_aligned_face(p))
                .filter_map(AlignedFace::from_rgb)
                .collect();
            let answers = answer(&faces)?;
            let right = if want_masked { masked(&answers) } else { faces.len() - masked(&answers) };
            rows.push(MaskTestRow::new(format!("{label} ({} faces)", faces.len()), expected, right, faces.len()));
            validation.push(answers);
        }
        // The threshold is chosen on validation faces only: rmfrd-dev's and masked-wild's
        // validation tenth (masked), never on the test rows above.
        let (_, wild_validation) = wild(MaskedWildPart::Validation);
        validation[1].extend(answer(&wild_validation)?);
        thresholds = MaskThresholdRow::sweep(&validation[0], &validation[1]);
    }
    let (mut mask_right, mut mask_of) = (0, 0);
    for row in &rows {
        mask_right += row.right;
        mask_of += row.of;
    }
    rows.push(MaskTestRow::new("all real photos above, masked or not", "either", mask_right, mask_of));

    // Every drawn mask, by the coverage it was drawn with.
    let drawn: Vec<(AlignedFace, bool)> = column(1).into_iter().chain(column(2)).collect();
    let answers = answer(&faces_of(&drawn))?;
    rows.push(MaskTestRow::new(
        "LFW DevTest, maskid's masks drawn on the photo, detected and aligned again",
        "masked",
        masked(&answers),
        answers.len(),
    ));
    for (nose_covered, coverage, expected) in
        [(true, "nose covered", MaskState::Worn), (false, "nose free", MaskState::BelowNose)]
    {
        let of: Vec<&[f32; 2]> =
            drawn.iter().zip(&answers).filter(|((_, covered), _)| *covered == nose_covered).map(|(_, a)| a).collect();
        let right = of.iter().filter(|a| state(a) == expected).count();
        rows.push(MaskTestRow::new(
            format!("the same, {coverage}: coverage (masked and called {expected})"),
            expected.name(),
            right,
            of.len(),
        ));
    }
    Ok(MaskTest { rows, masked_at: MASKED_AT, thresholds })
}
