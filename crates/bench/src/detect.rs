//! `maskid bench --detect DIR`: how often a face is found and aligned in every photo under
//! DIR, with YuNet's first pass alone and with the rescue pass (the default), the score
//! distribution, and extra detections per photo (on LFW, where nearly every photo shows one
//! main face, extra detections are the false-positive watch).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use maskid_face::{align_face, Parallelism};
use maskid_pipeline::{Models, Progress};
use rayon::prelude::*;
use serde::Serialize;

use crate::percentile;
use crate::Setup;
use maskid_eval::image_files;

/// Detection over one folder, with and without the rescue pass.
#[derive(Serialize)]
pub struct DetectionRate {
    /// Photos under the folder.
    pub photos: usize,
    /// Photos that could not be decoded.
    pub unreadable: usize,
    /// The detector's score threshold.
    pub score_threshold: f32,
    /// YuNet's first pass alone.
    pub first_pass: PassRate,
    /// With the rescue passes (grey border, enlarged, the tuned masked-face model).
    pub with_rescue: PassRate,
}

/// One way of detecting over all photos.
#[derive(Serialize)]
pub struct PassRate {
    /// Photos with a face found and aligned.
    pub found: usize,
    /// `found` over the readable photos.
    pub found_share: f64,
    /// Mean detections per readable photo, and photos with more than one.
    pub faces_per_photo: f64,
    /// Photos with more than one detection.
    pub photos_with_several: usize,
    /// Scores of the best face per photo where one was found: 5th, 25th, 50th percentile.
    pub score_p5: f32,
    /// 25th percentile.
    pub score_p25: f32,
    /// Median.
    pub score_p50: f32,
    /// Photos without a face.
    pub missed: Vec<String>,
}

/// Detects faces in every photo under `dir`, first pass alone and with rescue.
pub fn detection_rate(setup: &Setup, dir: &Path) -> anyhow::Result<DetectionRate> {
    let photos = image_files(&[dir.to_path_buf()])?;
    anyhow::ensure!(!photos.is_empty(), "{}: no photos", dir.display());
    let mut config = setup.models_config(Parallelism::Throughput);
    let score_threshold = config.detector.score_threshold;
    config.detector.rescue = true;
    let with_rescue = Models::load(&setup.assets, config)?;
    config.detector.rescue = false;
    let first_pass = Models::load(&setup.assets, config)?;
    let report = setup.progress;
    let done = AtomicUsize::new(0);
    // Per photo: None when unreadable, else (first pass, with rescue) as (faces, best score, aligned).
    let results: Vec<Option<[(usize, f32, bool); 2]>> = photos
        .par_iter()
        .map(|(path, _)| {
            let outcome = (|| {
                let image = with_rescue.load_photo(path).ok()?;
                let pass = |models: &Models| {
                    let faces = models.detector.detect(&image).unwrap_or_default();
                    let best = faces.iter().max_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()));
                    let aligned = best.is_some_and(|d| align_face(&image, &d.landmarks).is_ok());
                    (faces.len(), best.map_or(0.0, |d| d.score), aligned)
                };
                Some([pass(&first_pass), pass(&with_rescue)])
            })();
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(50) {
                report(Progress { stage: "detect", done: n, total: photos.len() });
            }
            outcome
        })
        .collect();
    report(Progress { stage: "detect", done: photos.len(), total: photos.len() });
    let readable = results.iter().flatten().count();
    let rate = |k: usize| {
        let mut scores: Vec<f64> = results.iter().flatten().filter(|r| r[k].2).map(|r| f64::from(r[k].1)).collect();
        scores.sort_by(f64::total_cmp);
        let found = scores.len();
        let q = |p| if scores.is_empty() { f32::NAN } else { percentile(&scores, p) as f32 };
        PassRate {
            found,
            found_share: found as f64 / readable.max(1) as f64,
            faces_per_photo: results.iter().flatten().map(|r| r[k].0).sum::<usize>() as f64 / readable.max(1) as f64,
            photos_with_several: results.iter().flatten().filter(|r| r[k].0 > 1).count(),
            score_p5: q(0.05),
            score_p25: q(0.25),
            score_p50: q(0.5),
            missed: photos
                .iter()
                .zip(&results)
                .filter(|(_, r)| r.is_some_and(|r| !r[k].2))
                .map(|((path, _), _)| path.display().to_string())
                .collect(),
        }
    };
    Ok(DetectionRate {
        photos: photos.len(),
        unreadable: photos.len() - readable,
        score_threshold,
        first_pass: rate(0),
        with_rescue: rate(1),
    })
}
