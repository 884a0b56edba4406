//! Runs a protocol of protocols.md end to end: list the photos, prepare them, embed, score,
//! compute the metrics and fill a report.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use maskid_core::{AlignedFace, Embedding};
use maskid_eval::{
    identification_metrics, verification_metrics, IdentSet, ImageRef, Lfw, MaskSetting, Protocol, Report, ReportMetrics,
};
use maskid_face::FaceEmbedder;
use rayon::prelude::*;

use crate::models::Models;
use crate::prepare::{prepare, PrepareSummary, PreparedSet};
use crate::{Error, Progress, ProgressFn, Result};

/// What to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// The protocol.
    pub protocol: Protocol,
    /// The mask setting.
    pub mask: MaskSetting,
    /// Mask seed (protocols.md: default 0).
    pub seed: u64,
    /// LFW root.
    pub data: PathBuf,
}

/// Evaluates `embedder` on a protocol; also returns what `prepare` did.
pub fn evaluate(
    home: &Path,
    models: &Models,
    embedder: &FaceEmbedder,
    options: &EvalOptions,
    progress: ProgressFn<'_>,
) -> Result<(Report, PrepareSummary)> {
    if options.mask != MaskSetting::Clean {
        return Err(Error::Unsupported(format!(
            "--mask {} needs the mask synthesiser, which maskid does not have yet; only --mask clean works",
            options.mask.name()
        )));
    }
    let lfw = Lfw::open(&options.data)?;
    let pairs = options.protocol.pairs(&lfw)?;
    let ident = match options.protocol {
        Protocol::LfwDevtestIdent => Some(IdentSet::lfw_devtest(&lfw)?),
        _ => None,
    };
    let mut photos: BTreeSet<PathBuf> = BTreeSet::new();
    if let Some(pairs) = &pairs {
        photos.extend(pairs.iter().flat_map(|p| [p.a.path.clone(), p.b.path.clone()]));
    }
    if let Some(set) = &ident {
        photos.extend(set.gallery.iter().chain(&set.probes).chain(&set.non_enrolled).map(|i| i.path.clone()));
    }
    let photos: Vec<PathBuf> = photos.into_iter().collect();
    let (prepared, summary) = prepare(home, &options.data, &photos, models, progress)?;
    let embeddings = embed_prepared(&prepared, &photos, embedder, progress)?;
    let get = |image: &ImageRef| &embeddings[&image.path];

    let metrics = if let Some(pairs) = pairs {
        let scores: Vec<f32> = pairs.iter().map(|p| get(&p.a).cosine(get(&p.b))).collect();
        let genuine: Vec<bool> = pairs.iter().map(|p| p.genuine).collect();
        let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
        ReportMetrics::Verification(verification_metrics(&scores, &genuine, &folds))
    } else {
        let set = ident.expect("BUG: identification protocol has an ident set");
        let rows = |probes: &[ImageRef]| -> Vec<Vec<f32>> {
            probes.iter().map(|p| set.gallery.iter().map(|g| get(p).cosine(get(g))).collect()).collect()
        };
        ReportMetrics::Identification(identification_metrics(&rows(&set.probes), &set.truth, &rows(&set.non_enrolled)))
    };
    let report = Report {
        protocol: options.protocol.name().into(),
        model: embedder.model_id().into(),
        model_sha256: embedder.model_sha256().into(),
        mask: options.mask.name().into(),
        seed: options.seed,
        data: options.data.display().to_string(),
        images: photos.len(),
        fallback_crops: summary.fallbacks,
        maskid_version: env!("CARGO_PKG_VERSION").into(),
        metrics,
    };
    Ok((report, summary))
}

/// Embeds the prepared crops of `photos`, 32 at a time across the embedder's sessions.
fn embed_prepared(
    prepared: &PreparedSet,
    photos: &[PathBuf],
    embedder: &FaceEmbedder,
    progress: ProgressFn<'_>,
) -> Result<HashMap<PathBuf, Embedding>> {
    let unusable: Vec<String> = photos
        .iter()
        .filter_map(|p| prepared.record(&p.to_string_lossy()).and_then(|r| r.error.clone()))
        .take(3)
        .collect();
    if !unusable.is_empty() {
        return Err(Error::Unsupported(format!(
            "photos the protocol needs could not be read: {}",
            unusable.join("; ")
        )));
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let chunks: Vec<Vec<(PathBuf, Embedding)>> = photos
        .par_chunks(32)
        .map(|chunk| -> Result<Vec<(PathBuf, Embedding)>> {
            let faces: Vec<AlignedFace> =
                chunk.iter().map(|p| prepared.face(&p.to_string_lossy())).collect::<Result<_>>()?;
            let embeddings = embedder.embed(&faces)?;
            let n = done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len();
            progress(Progress { stage: "embed", done: n, total: photos.len() });
            Ok(chunk.iter().cloned().zip(embeddings).collect())
        })
        .collect::<Result<_>>()?;
    Ok(chunks.into_iter().flatten().collect())
}
