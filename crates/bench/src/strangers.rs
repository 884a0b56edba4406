//! `maskid bench --strangers`: the 1:N trial of open-set decisions. The people of LFW's
//! `peopleDevTest.txt` with two photos or more are enrolled from their first photo each (496
//! people); then searched for are photos of people not enrolled (the DevTest people with one
//! photo, and real masked photos of masked-wild) and the second photo of each enrolled person,
//! as it is and with a mask drawn on the photo. Each search goes through
//! [`Recognizer::identify`] with a target FPIR; the report sets the share of strangers taken
//! for someone beside the target, and the share of enrolled people found.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use maskid_core::FaceMask;
use maskid_eval::{image_files, Lfw};
use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::Gallery;
use maskid_mask::{image_seed, render_mask, Coverage, MaskSpec, RgbImageMut};
use maskid_pipeline::{Decision, ModelChoice, OpenSetThreshold, Photo, Progress, Recognizer};
use rayon::prelude::*;
use serde::Serialize;

use crate::Setup;

/// Where the trial's photos come from.
pub struct StrangerData {
    /// LFW root.
    pub lfw: PathBuf,
    /// masked-wild root (real masked photos of people in no other set).
    pub masked_wild: PathBuf,
    /// Masked-wild photos to search, evenly spread (all when larger than the set).
    pub masked_photos: usize,
}

/// One kind of search and how it came out at each target.
#[derive(Debug, Clone, Serialize)]
pub struct SearchKind {
    /// What was searched for.
    pub kind: &'static str,
    /// Whether the people searched for are enrolled.
    pub enrolled: bool,
    /// Searches made (photos with a face).
    pub searches: usize,
    /// Photos without a usable face, not searched.
    pub unusable: usize,
    /// Per target FPIR: strangers taken for someone, or enrolled people found (their own name
    /// at rank 1, passing the threshold).
    pub outcomes: Vec<Outcome>,
}

/// One kind of search at one target.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The target FPIR.
    pub fpir: f64,
    /// The threshold it gave for this gallery and an unmasked face.
    pub threshold: f32,
    /// ... and for a face the mask classifier calls masked.
    pub masked_threshold: f32,
    /// Searches whose face the mask classifier called masked.
    pub called_masked: usize,
    /// Strangers accepted, or enrolled people found.
    pub count: usize,
    /// `count` over the searches.
    pub share: f64,
}

/// The trial's report.
#[derive(Debug, Clone, Serialize)]
pub struct StrangerTrial {
    /// The model's id.
    pub model: String,
    /// People enrolled (one face each).
    pub enrolled: usize,
    /// Each kind of search.
    pub kinds: Vec<SearchKind>,
}

/// A photo to search for, and whose it is when the person is enrolled.
struct Search {
    path: PathBuf,
    person: Option<String>,
    masked: bool,
}

/// Runs the trial with `model` at each target FPIR in `fpirs`.
pub fn stranger_trial(
    setup: &Setup,
    model: &ModelChoice,
    data: &StrangerData,
    fpirs: &[f64],
) -> anyhow::Result<StrangerTrial> {
    anyhow::ensure!(!fpirs.is_empty(), "give at least one target FPIR");
    let recognizer = setup.recognizer(model, Parallelism::Throughput)?;
    let dir = tempfile::tempdir()?;
    let DevTestGallery { gallery, enrolled, strangers } = devtest_gallery(&recognizer, &data.lfw, dir.path())?;
    let photo = |name: &str, n: usize| data.lfw.join(Lfw::image(name, n).path);

    let masked_wild = image_files(std::slice::from_ref(&data.masked_wild))?;
    anyhow::ensure!(!masked_wild.is_empty(), "{}: no photos", data.masked_wild.display());
    let step = (masked_wild.len() / data.masked_photos.max(1)).max(1);
    let mut searches: Vec<(&'static str, Vec<Search>)> = vec![
        ("enrolled, another photo", vec![]),
        ("enrolled, another photo with a drawn mask", vec![]),
        ("strangers, LFW", vec![]),
        ("strangers, masked-wild (real masks)", vec![]),
    ];
    for name in &enrolled {
        let person = Some(name.to_string());
        searches[0].1.push(Search { path: photo(name, 2), person: person.clone(), masked: false });
        searches[1].1.push(Search { path: photo(name, 2), person, masked: true });
    }
    for name in &strangers {
        searches[2].1.push(Search { path: photo(name, 1), person: None, masked: false });
    }
    for (path, _) in masked_wild.into_iter().step_by(step).take(data.masked_photos) {
        searches[3].1.push(Search { path, person: None, masked: false });
    }

    let decisions: Vec<_> = fpirs
        .iter()
        .map(|&fpir| recognizer.open_set_threshold(&gallery, Decision::Fpir(fpir)))
        .collect::<Result<_, _>>()?;
    let total: usize = searches.iter().map(|(_, s)| s.len()).sum();
    let done = AtomicUsize::new(0);
    let mut kinds = Vec::new();
    for (kind, list) in &searches {
        // The best candidate of each usable search and the face's mask, searched at the first
        // target's threshold (each target's is applied below, by the face's condition).
        let best: Vec<Option<(String, f32, FaceMask)>> = list
            .par_iter()
            .map(|search| {
                let found = searched(&recognizer, &gallery, search, decisions[0]);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                (setup.progress)(Progress { stage: "search", done: n, total });
                found
            })
            .collect();
        let usable = best.iter().flatten().count();
        let called_masked = best.iter().flatten().filter(|(_, _, mask)| mask.state.masked()).count();
        let calibration = recognizer.calibration();
        let outcomes = decisions
            .iter()
            .map(|decided| {
                let passes = |(name, similarity, mask): &(String, f32, FaceMask), s: &Search| {
                    let threshold = decided.for_face(mask, calibration).threshold;
                    *similarity >= threshold && s.person.as_ref().is_none_or(|p| p == name)
                };
                let count = list.iter().zip(&best).filter(|(s, b)| b.as_ref().is_some_and(|b| passes(b, s))).count();
                let masked = FaceMask::from_answers(1.0, 1.0);
                Outcome {
                    fpir: decided.fpir.expect("BUG: decided by FPIR"),
                    threshold: decided.for_face(&FaceMask::from_answers(0.0, 0.0), calibration).threshold,
                    masked_threshold: decided.for_face(&masked, calibration).threshold,
                    called_masked,
                    count,
                    share: count as f64 / usable.max(1) as f64,
                }
            })
            .collect();
        let enrolled = list.first().is_some_and(|s| s.person.is_some());
        kinds.push(SearchKind { kind, enrolled, searches: usable, unusable: list.len() - usable, outcomes });
    }
    Ok(StrangerTrial { model: recognizer.model().id, enrolled: enrolled.len(), kinds })
}

/// The trial's gallery: LFW DevTest's people with two photos or more, enrolled from their
/// first photo each, and the people with one photo, never enrolled.
pub(crate) struct DevTestGallery {
    pub gallery: Gallery,
    pub enrolled: Vec<String>,
    pub strangers: Vec<String>,
}

/// Enrols the trial's gallery into `dir` (faces embedded in parallel).
pub(crate) fn devtest_gallery(recognizer: &Recognizer, lfw_root: &Path, dir: &Path) -> anyhow::Result<DevTestGallery> {
    let people = Lfw::open(lfw_root)?.people("peopleDevTest.txt")?;
    let with = |photos: fn(usize) -> bool| -> Vec<String> {
        people.iter().filter(|(_, count)| photos(*count)).map(|(name, _)| name.clone()).collect()
    };
    let (enrolled, strangers) = (with(|n| n >= 2), with(|n| n == 1));
    let gallery = Gallery::open(dir.join("trial.db"))?;
    let faces: Vec<_> = enrolled
        .par_iter()
        .map(|name| {
            let photo = recognizer.open_photo(&lfw_root.join(Lfw::image(name, 1).path))?;
            Ok(recognizer.new_face(&photo, FacePolicy::Largest, false)?.1)
        })
        .collect::<anyhow::Result<_>>()?;
    for (name, face) in enrolled.iter().zip(&faces) {
        gallery.enroll(name, &serde_json::json!({}), face)?;
    }
    Ok(DevTestGallery { gallery, enrolled, strangers })
}

/// The best candidate (name, similarity) for the face of a search's photo, masked on the
/// photo first when asked, and the face's mask; `None` for a photo without a usable face.
fn searched(
    recognizer: &Recognizer,
    gallery: &Gallery,
    search: &Search,
    decided_by: OpenSetThreshold,
) -> Option<(String, f32, FaceMask)> {
    let mut photo = recognizer.open_photo(&search.path).ok()?;
    if search.masked {
        photo = masked(recognizer, &photo, &search.path)?;
    }
    let answer = recognizer.identify_at(gallery, &photo, FacePolicy::Largest, 1, decided_by).ok()?;
    let face = answer.into_iter().next()?;
    let best = face.candidates.into_iter().next()?;
    Some((best.name, best.similarity, face.face.mask))
}

/// The photo with a mask drawn on its largest face (style and coverage from its path).
pub(crate) fn masked(recognizer: &Recognizer, photo: &Photo, path: &Path) -> Option<Photo> {
    let face = recognizer.face(photo, FacePolicy::Largest).ok()?;
    let mut image = photo.image().clone();
    let (w, h) = (image.width() as usize, image.height() as usize);
    // Seeded by the file's name (unique in LFW), so every machine draws the same masks.
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let spec = MaskSpec::from_seed(image_seed(&name, 0), None, Coverage::Random);
    render_mask(&mut RgbImageMut::new(w, h, image.as_mut()).ok()?, &face.detection.landmarks, &spec).ok()?;
    Some(Photo::from_rgb(image))
}
