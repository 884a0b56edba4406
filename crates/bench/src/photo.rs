//! Photo -> mask state and embedding with the teacher: the latency of one 640x480 photo with
//! one face, stage by stage; masks drawn per second; and the throughput of the whole chain over a data set.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::Instant;

use maskid_core::AlignedFace;
use maskid_face::{align_face, decode_image, select_faces, FacePolicy, Parallelism};
use maskid_pipeline::ModelChoice;
use rayon::prelude::*;
use serde::Serialize;

use crate::{median, percentile, Setup};

/// Latency of the photo chain, by stage (milliseconds).
#[derive(Serialize, Default)]
pub struct Latency {
    /// What was timed.
    pub photo: String,
    /// Timed runs (after 5 warm-up runs).
    pub iterations: usize,
    /// Whole chain.
    pub median_total_ms: f64,
    /// Whole chain, 90th percentile.
    pub p90_total_ms: f64,
    /// JPEG decoding.
    pub median_decode_ms: f64,
    /// YuNet.
    pub median_detect_ms: f64,
    /// The similarity transform onto the template.
    pub median_align_ms: f64,
    /// The mask classifier, batch 1 (every face `identify`, `verify` and `enroll` see gets one).
    pub median_mask_ms: f64,
    /// SFace, batch 1.
    pub median_embed_ms: f64,
}

/// Throughput over a data set.
#[derive(Serialize)]
pub struct Throughput {
    /// Photos used.
    pub photos: usize,
    /// Decode, detect, align per second, on all cores.
    pub chain_photos_per_s: f64,
    /// Teacher embeddings per second, batches of 32.
    pub embed_faces_per_s: f64,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The 640x480 test photo: a sample photo cropped to 4:3 and resized, as a JPEG.
pub fn test_photo(setup: &Setup) -> anyhow::Result<Vec<u8>> {
    let path = setup.assets.get(&maskid_assets::SAMPLE_PHOTOS[2])?;
    let image = maskid_face::load_image(&path, maskid_face::DEFAULT_MAX_PIXELS)?;
    let (w, h) = image.dimensions();
    let (cw, ch) = if w * 3 > h * 4 { (h * 4 / 3, h) } else { (w, w * 3 / 4) };
    let cropped = image::imageops::crop_imm(&image, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
    let resized = image::imageops::resize(&cropped, 640, 480, image::imageops::FilterType::Triangle);
    let mut jpeg = Cursor::new(Vec::new());
    resized.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    Ok(jpeg.into_inner())
}

/// The photo chain on `jpeg` (one face), `iterations` timed runs after 5 warm-up runs.
pub fn latency(setup: &Setup, jpeg: &[u8], iterations: usize) -> anyhow::Result<Latency> {
    let models = setup.models(Parallelism::Latency)?;
    let (mut total, mut decode, mut detect, mut align, mut mask, mut embed) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..iterations + 5 {
        let t0 = Instant::now();
        let image = decode_image(jpeg, u64::MAX)?;
        let t1 = Instant::now();
        let found = models.detector.detect(&image)?;
        let threshold = setup.models.detector.score_threshold;
        let face = select_faces(found, FacePolicy::RequireOne, image.dimensions(), threshold)?[0];
        let t2 = Instant::now();
        let crop = align_face(&image, &face.landmarks)?;
        let t3 = Instant::now();
        models.mask.classify(std::slice::from_ref(&crop))?;
        let t4 = Instant::now();
        models.teacher.embed(std::slice::from_ref(&crop))?;
        if i >= 5 {
            // the first runs warm caches and thread pools
            total.push(ms(t0));
            decode.push((t1 - t0).as_secs_f64() * 1e3);
            detect.push((t2 - t1).as_secs_f64() * 1e3);
            align.push((t3 - t2).as_secs_f64() * 1e3);
            mask.push((t4 - t3).as_secs_f64() * 1e3);
            embed.push(ms(t4));
        }
    }
    Ok(Latency {
        photo: "sample person_b_1 cropped to 4:3, resized to 640x480, JPEG".into(),
        iterations,
        median_total_ms: median(&mut total),
        p90_total_ms: percentile(&total, 0.9), // `median` sorted it
        median_decode_ms: median(&mut decode),
        median_detect_ms: median(&mut detect),
        median_align_ms: median(&mut align),
        median_mask_ms: median(&mut mask),
        median_embed_ms: median(&mut embed),
    })
}

/// Random masks (style, colour, coverage from the seed) on 20,000 aligned faces in parallel.
pub fn mask_throughput(jpeg: &[u8]) -> anyhow::Result<f64> {
    let photo = decode_image(jpeg, u64::MAX)?;
    let face = image::imageops::resize(&photo, 112, 112, image::imageops::FilterType::Triangle).into_raw();
    let template = maskid_core::Landmarks5(maskid_core::ALIGNMENT_TEMPLATE);
    let count = 20_000u64;
    let start = Instant::now();
    (0..count).into_par_iter().try_for_each(|seed| -> anyhow::Result<()> {
        let mut rgb = face.clone();
        let spec = maskid_mask::MaskSpec::from_seed(seed, None, maskid_mask::Coverage::Random);
        maskid_mask::render_mask(&mut maskid_mask::RgbImageMut::new(112, 112, &mut rgb)?, &template, &spec)?;
        Ok(())
    })?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// The chain over `photos` photos spread over the data set at `root`, then the teacher's
/// embedding of the crops it found, on all cores.
pub fn throughput(setup: &Setup, root: &Path, photos: usize) -> anyhow::Result<Throughput> {
    let all = maskid_eval::dataset_photos(root)?;
    let step = (all.len() / photos.max(1)).max(1);
    let chosen: Vec<PathBuf> = all.iter().step_by(step).take(photos).map(|p| root.join(p)).collect();
    let recognizer = setup.recognizer(&ModelChoice::Teacher, Parallelism::Throughput)?;
    let start = Instant::now();
    let crops: Vec<AlignedFace> = chosen
        .par_iter()
        .filter_map(|p| recognizer.open_photo(p).and_then(|photo| recognizer.face(&photo, FacePolicy::Center)).ok())
        .map(|found| found.face)
        .collect();
    let chain_photos_per_s = chosen.len() as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    crops.par_chunks(32).try_for_each(|c| recognizer.embed(c).map(drop))?;
    let embed_faces_per_s = crops.len() as f64 / start.elapsed().as_secs_f64();
    Ok(Throughput { photos: chosen.len(), chain_photos_per_s, embed_faces_per_s })
}
