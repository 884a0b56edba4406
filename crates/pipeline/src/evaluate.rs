//! Runs a protocol of protocols.md end to end: list the photos, prepare them, embed, score,
//! compute the metrics and fill a report.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use maskid_core::{AlignedFace, Embedding, Landmarks5, OcclusionMap, ALIGNMENT_TEMPLATE};
use maskid_eval::{
    identification_metrics, probe_ranks, verification_metrics, ImageRef, Lfw, MaskSetting, Pair, Protocol, Report,
    ReportMetrics,
};
use maskid_face::similarity_transform;
use maskid_face::{FaceEmbedder, FaceRestorer};
use maskid_mask::{image_seed, mask_face, Coverage, MaskSpec, MaskStyle};
use rayon::prelude::*;

use crate::embed_cache::EmbeddingCache;
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
    /// Force one mask style (`None`: drawn per image from the seed).
    pub style: Option<MaskStyle>,
    /// Nose coverage of the masks.
    pub coverage: Coverage,
    /// Embed each face and its mirror image and take the mean (two passes a face).
    pub mirror_average: bool,
}

impl EvalOptions {
    /// lfw-devtest pairs, masked probes, protocol seed 0, random style and coverage.
    pub fn devtest_mask_probe(data: PathBuf) -> Self {
        Self {
            protocol: Protocol::LfwDevtest,
            mask: MaskSetting::MaskProbe,
            seed: 0,
            data,
            style: None,
            coverage: Coverage::Random,
            mirror_average: false,
        }
    }

    /// G2D's validation setting: the held-out DevTrain pairs (`lfw-devtrain-holdout`), masked
    /// probes, seed 0.
    pub fn validation(data: PathBuf) -> Self {
        Self { protocol: Protocol::LfwDevtrainHoldout, ..Self::devtest_mask_probe(data) }
    }
}

/// One protocol run: the report, what `prepare` did, and what comparing two models item by item
/// needs (each pair's score, or each probe's rank-1 answer).
#[derive(Debug)]
pub struct Evaluation {
    /// The report.
    pub report: Report,
    /// What `prepare` did.
    pub prepared: PrepareSummary,
    /// The protocol's pairs, in order.
    pub pairs: Vec<Pair>,
    /// The cosine of each pair.
    pub scores: Vec<f32>,
    /// Whether each probe's own person came first (identification; empty for pairs).
    pub rank1_hits: Vec<bool>,
}

/// Evaluates `embedder` on a protocol; also returns what `prepare` did. With
/// `reference_embedder` (mask-probe only), the unmasked references are embedded by that model
/// and the masked probes by `embedder`: a gallery enrolled by one model, searched with
/// another of the same embedding space. With `restorer`, masked faces are inpainted before
/// they are embedded (unmask, then embed).
pub fn evaluate(
    home: &Path,
    models: &Models,
    embedder: &FaceEmbedder,
    reference_embedder: Option<&FaceEmbedder>,
    restorer: Option<&FaceRestorer>,
    options: &EvalOptions,
    progress: ProgressFn<'_>,
) -> Result<Evaluation> {
    if reference_embedder.is_some() && options.mask != MaskSetting::MaskProbe {
        return Err(Error::ReferenceNeedsMaskProbe);
    }
    let lfw = Lfw::open(&options.data)?;
    let pairs = options.protocol.pairs(&lfw, options.seed)?;
    let ident = options.protocol.ident_set(&lfw, options.seed)?;
    // Which (photo, masked) versions the protocol compares.
    let probe_masked = options.mask != MaskSetting::Clean;
    let reference_masked = options.mask == MaskSetting::MaskBoth;
    let mut versions: BTreeSet<(PathBuf, bool)> = BTreeSet::new();
    if let Some(pairs) = &pairs {
        for p in pairs {
            versions.insert((p.a.path.clone(), reference_masked));
            versions.insert((p.b.path.clone(), probe_masked));
        }
    }
    if let Some(set) = &ident {
        versions.extend(set.gallery.iter().map(|i| (i.path.clone(), reference_masked)));
        versions.extend(set.probes.iter().chain(&set.non_enrolled).map(|i| (i.path.clone(), probe_masked)));
    }
    // Sorted by path, so a photo's two versions are neighbours.
    let mut photos: Vec<PathBuf> = versions.iter().map(|(p, _)| p.clone()).collect();
    photos.dedup();
    let (prepared, summary) = prepare(home, &options.data, &photos, models, progress)?;
    let versions: Vec<(PathBuf, bool)> = versions.into_iter().collect();
    let clean_embedder = reference_embedder.unwrap_or(embedder);
    let embeddings = embed_versions(&prepared, &versions, options, clean_embedder, embedder, restorer, progress)?;
    let get = |image: &ImageRef, masked: bool| &embeddings[&(image.path.clone(), masked)];

    let (mut scored_pairs, mut scores, mut rank1_hits) = (Vec::new(), Vec::new(), Vec::new());
    let metrics = if let Some(pairs) = pairs {
        scores = pairs.iter().map(|p| get(&p.a, reference_masked).cosine(get(&p.b, probe_masked))).collect();
        let genuine: Vec<bool> = pairs.iter().map(|p| p.genuine).collect();
        let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
        scored_pairs = pairs;
        ReportMetrics::Verification(verification_metrics(&scores, &genuine, &folds))
    } else {
        let set = ident.expect("BUG: identification protocol has an ident set");
        // Look each embedding up once: the score matrix has probes x gallery entries.
        let gallery: Vec<&Embedding> = set.gallery.iter().map(|g| get(g, reference_masked)).collect();
        let rows = |probes: &[ImageRef]| -> Vec<Vec<f32>> {
            probes
                .iter()
                .map(|p| {
                    let probe = get(p, probe_masked);
                    gallery.iter().map(|g| probe.cosine(g)).collect()
                })
                .collect()
        };
        let probes = rows(&set.probes);
        rank1_hits = probe_ranks(&probes, &set.truth).into_iter().map(|rank| rank == 1).collect();
        ReportMetrics::Identification(identification_metrics(&probes, &set.truth, &rows(&set.non_enrolled)))
    };
    let report = Report {
        protocol: options.protocol.name().into(),
        model: format!(
            "{}{}{}",
            if restorer.is_some() { "unmask+" } else { "" },
            embedder.model_id(),
            if options.mirror_average { "+mirror" } else { "" }
        ),
        model_sha256: embedder.model_sha256().into(),
        reference_model: reference_embedder.map(|e| e.model_id().to_owned()),
        mask: options.mask.name().into(),
        mask_style: if probe_masked { options.style.map_or("random", MaskStyle::name) } else { "none" }.into(),
        mask_render_version: probe_masked.then_some(maskid_mask::RENDER_VERSION),
        seed: options.seed,
        data: options.data.display().to_string(),
        images: photos.len(),
        fallback_crops: summary.fallbacks,
        maskid_version: env!("CARGO_PKG_VERSION").into(),
        metrics,
    };
    Ok(Evaluation { report, prepared: summary, pairs: scored_pairs, scores, rank1_hits })
}

/// The aligned crop of a prepared photo, masked when asked: the mask is drawn from the
/// landmarks carried into the crop, with the seed of (photo path, protocol seed).
pub fn protocol_face(prepared: &PreparedSet, path: &Path, masked: bool, options: &EvalOptions) -> Result<AlignedFace> {
    if !masked {
        return prepared.face(&path.to_string_lossy());
    }
    Ok(masked_face(prepared, path, options)?.0)
}

/// The masked crop of a prepared photo and the region its mask covers.
pub fn masked_face(prepared: &PreparedSet, path: &Path, options: &EvalOptions) -> Result<(AlignedFace, OcclusionMap)> {
    mask_prepared_face(prepared, path, &prepared.face(&path.to_string_lossy())?, options)
}

/// [`masked_face`] for a crop already read from the prepared set.
pub(crate) fn mask_prepared_face(
    prepared: &PreparedSet,
    path: &Path,
    face: &AlignedFace,
    options: &EvalOptions,
) -> Result<(AlignedFace, OcclusionMap)> {
    let key = path.to_string_lossy();
    let spec = MaskSpec::from_seed(image_seed(&key, options.seed), options.style, options.coverage);
    Ok(mask_face(face, &crop_landmarks(prepared, &key), &spec)?)
}

/// The five landmarks of a prepared photo inside its aligned crop (the template for a
/// central-crop fallback).
pub fn crop_landmarks(prepared: &PreparedSet, key: &str) -> Landmarks5 {
    prepared.record(key).and_then(|r| r.landmarks).map_or(Landmarks5(ALIGNMENT_TEMPLATE), |lm| landmarks_in_crop(&lm))
}

/// Where a face's photo landmarks land in its aligned crop.
pub fn landmarks_in_crop(landmarks: &Landmarks5) -> Landmarks5 {
    match similarity_transform(&landmarks.0, &ALIGNMENT_TEMPLATE) {
        Ok(t) => Landmarks5(landmarks.0.map(|p| {
            let q = t.apply([f64::from(p[0]), f64::from(p[1])]);
            [q[0] as f32, q[1] as f32]
        })),
        Err(_) => Landmarks5(ALIGNMENT_TEMPLATE),
    }
}

/// Embeds each (photo, masked) version, 32 at a time across the embedder's sessions: the
/// unmasked ones with `clean_embedder` (through its embedding cache), the masked ones with
/// `masked_embedder`, after `restorer` when given.
fn embed_versions(
    prepared: &PreparedSet,
    versions: &[(PathBuf, bool)],
    options: &EvalOptions,
    clean_embedder: &FaceEmbedder,
    masked_embedder: &FaceEmbedder,
    restorer: Option<&FaceRestorer>,
    progress: ProgressFn<'_>,
) -> Result<HashMap<(PathBuf, bool), Embedding>> {
    let clean: Vec<PathBuf> = versions.iter().filter(|(_, m)| !m).map(|(p, _)| p.clone()).collect();
    let masked: Vec<PathBuf> = versions.iter().filter(|(_, m)| *m).map(|(p, _)| p.clone()).collect();
    let clean_embeddings = match options.mirror_average {
        true => mirror_averaged_embeddings(prepared, &clean, clean_embedder, progress)?,
        false => clean_embeddings(prepared, &clean, clean_embedder, progress)?,
    };
    let mut out: HashMap<(PathBuf, bool), Embedding> =
        clean_embeddings.into_iter().map(|(p, e)| ((p, false), e)).collect();
    let masked_face = |p: &Path| protocol_face(prepared, p, true, options);
    let embeddings = embed_chunks(&masked, masked_face, masked_embedder, restorer, options.mirror_average, progress)?;
    out.extend(masked.into_iter().map(|p| (p, true)).zip(embeddings));
    Ok(out)
}

/// Embeddings of the unmasked crops of `photos`, through the model's embedding cache.
pub fn clean_embeddings(
    prepared: &PreparedSet,
    photos: &[PathBuf],
    embedder: &FaceEmbedder,
    progress: ProgressFn<'_>,
) -> Result<HashMap<PathBuf, Embedding>> {
    cached_embeddings(prepared, photos, embedder, false, progress)
}

/// For each unmasked crop of `photos`, the mean of the model's embeddings of the crop and of
/// its mirror image (normalised), through the embedding cache.
pub fn mirror_averaged_embeddings(
    prepared: &PreparedSet,
    photos: &[PathBuf],
    embedder: &FaceEmbedder,
    progress: ProgressFn<'_>,
) -> Result<HashMap<PathBuf, Embedding>> {
    let mut mirrored = cached_embeddings(prepared, photos, embedder, true, progress)?;
    let mut out = cached_embeddings(prepared, photos, embedder, false, progress)?;
    for (path, e) in &mut out {
        *e = mean_embedding(e, &mirrored.remove(path).expect("BUG: both views of every photo"));
    }
    Ok(out)
}

/// The normalised mean of two embeddings.
fn mean_embedding(a: &Embedding, b: &Embedding) -> Embedding {
    Embedding::normalized(a.values().iter().zip(b.values()).map(|(x, y)| x + y).collect())
}

/// Embeddings of the unmasked crops of `photos` (`mirrored`: of their mirror images), through
/// the model's embedding cache.
fn cached_embeddings(
    prepared: &PreparedSet,
    photos: &[PathBuf],
    embedder: &FaceEmbedder,
    mirrored: bool,
    progress: ProgressFn<'_>,
) -> Result<HashMap<PathBuf, Embedding>> {
    let unusable: Vec<String> = photos
        .iter()
        .filter_map(|p| prepared.record(&p.to_string_lossy()).and_then(|r| r.error.clone()))
        .take(3)
        .collect();
    if !unusable.is_empty() {
        return Err(Error::Unreadable { first: unusable });
    }
    let mut cache = EmbeddingCache::open(prepared.dir(), embedder.model_sha256())?;
    // A mirrored crop is cached under its photo's key with a suffix no path ends in.
    let key = |p: &Path| match mirrored {
        true => format!("{}#mirrored", p.to_string_lossy()),
        false => p.to_string_lossy().into_owned(),
    };
    let mut out = HashMap::new();
    let mut todo = Vec::new();
    for path in photos {
        match cache.get(&key(path)) {
            Some(e) => drop(out.insert(path.clone(), e.clone())),
            None => todo.push(path.clone()),
        }
    }
    let face_of = |p: &Path| {
        let face = prepared.face(&p.to_string_lossy())?;
        Ok(if mirrored { face.mirrored() } else { face })
    };
    let fresh = embed_chunks(&todo, face_of, embedder, None, false, progress)?;
    cache.append(todo.iter().map(|p| key(p)).zip(fresh.iter().cloned()).collect())?;
    out.extend(todo.into_iter().zip(fresh));
    Ok(out)
}

/// Embeds the faces `face_of` gives for `photos` (restored first by `restorer`), 32 at a time
/// across the embedder's sessions; with `mirror_average`, the mean of the embeddings of each
/// face and of its mirror image (one draw of the face for both).
fn embed_chunks(
    photos: &[PathBuf],
    face_of: impl Fn(&Path) -> Result<AlignedFace> + Sync,
    embedder: &FaceEmbedder,
    restorer: Option<&FaceRestorer>,
    mirror_average: bool,
    progress: ProgressFn<'_>,
) -> Result<Vec<Embedding>> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    let chunks: Vec<Vec<Embedding>> = photos
        .par_chunks(32)
        .map(|chunk| -> Result<Vec<Embedding>> {
            let mut faces: Vec<AlignedFace> = chunk.iter().map(|p| face_of(p)).collect::<Result<_>>()?;
            if mirror_average {
                let mirrored: Vec<AlignedFace> = faces.iter().map(AlignedFace::mirrored).collect();
                faces.extend(mirrored);
            }
            if let Some(restorer) = restorer {
                faces = restorer.restore(&faces)?;
            }
            let mut embeddings = embedder.embed(&faces)?;
            if mirror_average {
                let mirrored = embeddings.split_off(chunk.len());
                embeddings = embeddings.iter().zip(&mirrored).map(|(a, b)| mean_embedding(a, b)).collect();
            }
            let n = done.fetch_add(chunk.len(), std::sync::atomic::Ordering::Relaxed) + chunk.len();
            progress(Progress { stage: "embed", done: n, total: photos.len() });
            Ok(embeddings)
        })
        .collect::<Result<_>>()?;
    Ok(chunks.into_iter().flatten().collect())
}
