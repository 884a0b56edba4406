//! Measures a model's impostor scores for open-set decisions by FPIR
//! ([`maskid_eval::Calibration`]), on data no test pair comes from: the DevTrain people held out
//! of training, every pair of photos of two of them. A spread of UTKFace photos (another
//! photo domain) is measured beside them as a check, not fitted: UTKFace has no identities,
//! and the pairs of one person's photos it holds, a few in ten thousand, outnumber the true
//! impostors far out in the tail (the teacher's score at a share 1e-5 of its pairs: 0.70,
//! against 0.46 on LFW's labelled people) and would fit a tail that never ends.

use std::path::{Path, PathBuf};

use maskid_core::Embedding;
use maskid_eval::{
    dataset_photos, Calibration, CalibrationSource, ConditionCalibration, ImpostorTail, Lfw, MaskStage, ProbeCondition,
};
use maskid_face::FaceEmbedder;
use rayon::prelude::*;

use crate::evaluate::clean_and_masked_embeddings;
use crate::{EvalOptions, Models, ProgressFn, Result};

/// Where a calibration's photos come from.
#[derive(Debug, Clone)]
pub struct CalibrationData {
    /// LFW root: its held-out DevTrain people.
    pub lfw: PathBuf,
    /// UTKFace root.
    pub utkface: PathBuf,
    /// UTKFace photos to take, evenly spread over the sorted list.
    pub utkface_photos: usize,
    /// Take every DevTrain person, not only those held out of G2D's training: for a model
    /// that never saw LFW (the teacher), 80 times the pairs.
    pub all_devtrain: bool,
}

/// How the masked condition's probes are masked.
const MASKS: &str = "maskid's masks (random style and coverage, seed 0) drawn on the full photo at its landmarks, \
                     which is then detected and aligned again, as a real masked probe is";

/// The photos of one source and who is in each (an index per person).
struct Source {
    name: String,
    root: PathBuf,
    photos: Vec<(PathBuf, usize)>,
    /// Whether its pairs are fitted (people known) or only compared (a check).
    fitted: bool,
}

/// Measures `embedder`'s impostor scores for unmasked and for masked probes against unmasked
/// references.
pub fn calibrate(
    home: &Path,
    models: &Models,
    embedder: &FaceEmbedder,
    data: &CalibrationData,
    progress: ProgressFn<'_>,
) -> Result<Calibration> {
    let lfw = Lfw::open(&data.lfw)?;
    let (people, who) = match data.all_devtrain {
        true => (lfw.people("peopleDevTrain.txt")?, "DevTrain people"),
        false => (lfw.devtrain_holdout_people(0)?, "DevTrain people held out of training"),
    };
    let lfw_photos = people
        .iter()
        .enumerate()
        .flat_map(|(who, (name, count))| (1..=*count).map(move |n| (Lfw::image(name, n).path, who)))
        .collect();
    let utk = dataset_photos(&data.utkface)?;
    let step = (utk.len() / data.utkface_photos.max(1)).max(1);
    let sources = [
        Source {
            name: format!("LFW, the {} {who}", people.len()),
            root: data.lfw.clone(),
            photos: lfw_photos,
            fitted: true,
        },
        Source {
            name: format!("UTKFace, every {step}th photo"),
            root: data.utkface.clone(),
            photos: utk.into_iter().step_by(step).take(data.utkface_photos).enumerate().map(|(i, p)| (p, i)).collect(),
            fitted: false,
        },
    ];
    // Each condition's fitted scores and what each source gave.
    let mut pooled: [Vec<f32>; 2] = Default::default();
    let mut described: [Vec<CalibrationSource>; 2] = Default::default();
    for source in &sources {
        // Masked probes as `mask-probe` draws them, but on the photo.
        let options =
            EvalOptions { mask_stage: MaskStage::Photo, ..EvalOptions::devtest_mask_probe(source.root.clone()) };
        let paths: Vec<PathBuf> = source.photos.iter().map(|(p, _)| p.clone()).collect();
        let embedded = clean_and_masked_embeddings(home, models, embedder, &options, &paths, progress)?;
        let who_of: std::collections::HashMap<&PathBuf, usize> = source.photos.iter().map(|(p, w)| (p, *w)).collect();
        let who: Vec<usize> = embedded.iter().map(|(p, _, _)| who_of[p]).collect();
        let clean: Vec<&Embedding> = embedded.iter().map(|(_, c, _)| c).collect();
        let masked: Vec<&Embedding> = embedded.iter().map(|(_, _, m)| m).collect();
        for (slot, probes) in [(0, &clean), (1, &masked)] {
            // Unmasked probes: each unordered pair once; masked ones: every ordered pair.
            let mut scores = impostor_scores(probes, &clean, &who, slot == 0);
            described[slot].push(CalibrationSource {
                name: source.name.clone(),
                photos: embedded.len(),
                pairs: scores.len() as u64,
                fitted: source.fitted,
                measured: measured_tail(&mut scores),
            });
            if source.fitted {
                pooled[slot].append(&mut scores);
            }
        }
    }
    let conditions = ProbeCondition::ALL
        .into_iter()
        .zip(pooled.iter_mut().zip(described))
        .map(|(condition, (scores, sources))| {
            let impostors = ImpostorTail::fit(scores).map_err(|e| crate::Error::Calibration(e.to_string()))?;
            Ok(ConditionCalibration { condition, sources, impostors })
        })
        .collect::<Result<_>>()?;
    Ok(Calibration {
        model: embedder.info().id.clone(),
        model_sha256: embedder.info().sha256.clone(),
        masks: MASKS.into(),
        maskid_version: env!("CARGO_PKG_VERSION").into(),
        conditions,
    })
}

/// Cosines of probe i and reference j of two different people (`who`); with `symmetric`
/// (probes are the references), each pair once.
fn impostor_scores(probes: &[&Embedding], references: &[&Embedding], who: &[usize], symmetric: bool) -> Vec<f32> {
    probes
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, probe)| {
            let from = if symmetric { i + 1 } else { 0 };
            (from..references.len()).filter(move |&j| who[j] != who[i]).map(move |j| dot(probe, references[j]))
        })
        .collect()
}

/// The cosine of two unit vectors.
fn dot(a: &Embedding, b: &Embedding) -> f32 {
    a.values().iter().zip(b.values()).map(|(x, y)| x * y).sum()
}

/// The scores that shares 1e-3, 1e-4, ... of `scores` reach, while ten or more lie above
/// (reorders them).
fn measured_tail(scores: &mut [f32]) -> Vec<(f64, f32)> {
    let n = scores.len() as f64;
    (3..)
        .map(|decade| 10f64.powi(-decade))
        .take_while(|rate| rate * n >= 10.0)
        .map(|rate| {
            let k = (rate * n) as usize;
            (rate, *scores.select_nth_unstable_by(k, |a, b| b.total_cmp(a)).1)
        })
        .collect()
}
