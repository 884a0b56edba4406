//! Runs a protocol of protocols.md end to end: list the photos, prepare them, embed, score,
//! compute the metrics and fill a report.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use std::sync::Mutex;

use image::RgbImage;
use maskid_core::{Affine, AlignedFace, Embedding, Landmarks5, OcclusionMap, ALIGNMENT_TEMPLATE};
use maskid_eval::{
    identification_metrics, probe_ranks, verification_metrics, AlignmentShift, ImageRef, Lfw, MaskSetting, MaskStage,
    Pair, ProbePreparation, Protocol, Report, ReportMetrics,
};
use maskid_face::{align_face_by, central_crop, select_faces, similarity_transform, Alignment, FacePolicy};
use maskid_face::{FaceEmbedder, FaceRestorer};
use maskid_mask::{image_seed, mask_face, render_mask, Coverage, MaskSpec, MaskStyle, RgbImageMut};
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
    /// Where masks are drawn (masked settings only).
    pub mask_stage: MaskStage,
    /// Which landmarks align the probes (references: five points, as protocols.md).
    pub probe_alignment: Alignment,
    /// Where the probes' landmarks come from.
    pub probe_landmarks: LandmarkSource,
    /// Grey the probe crops from this row down (an oracle occlusion of the lower face).
    pub blank_probe_from: Option<usize>,
    /// A pairs list in view 2's format to use instead of `pairs.txt` (`lfw-view2` only),
    /// relative to `data`.
    pub pairs_file: Option<String>,
}

/// Where the landmarks that align a probe come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LandmarkSource {
    /// The detector's (with its rescue passes), on the photo the probe is taken from.
    #[default]
    Detector,
    /// The masked-face model's pass alone, where it finds a face (else the detector's).
    MaskedModel,
    /// The photo's landmarks before a photo-stage mask was drawn: the alignment a perfect
    /// landmark finder would give under the mask (an oracle; the detector's elsewhere).
    Clean,
}

impl LandmarkSource {
    /// Every source.
    pub const ALL: [LandmarkSource; 3] = [LandmarkSource::Detector, LandmarkSource::MaskedModel, LandmarkSource::Clean];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            LandmarkSource::Detector => "detector",
            LandmarkSource::MaskedModel => "masked-model",
            LandmarkSource::Clean => "clean",
        }
    }
}

impl std::str::FromStr for LandmarkSource {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|a| a.name() == s).ok_or_else(|| {
            format!("unknown landmark source `{s}` (allowed: {})", Self::ALL.map(LandmarkSource::name).join(", "))
        })
    }
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
            mask_stage: MaskStage::Crop,
            probe_alignment: Alignment::FivePoint,
            probe_landmarks: LandmarkSource::Detector,
            blank_probe_from: None,
            pairs_file: None,
        }
    }

    /// Whether probes are prepared otherwise than references (beyond their mask).
    fn probe_options(&self) -> bool {
        self.probe_alignment != Alignment::FivePoint
            || self.probe_landmarks != LandmarkSource::Detector
            || self.blank_probe_from.is_some()
    }

    /// Whether the preparation differs from protocols.md's at all.
    fn changes_preparation(&self) -> bool {
        self.probe_options() || (self.mask_stage == MaskStage::Photo && self.mask != MaskSetting::Clean)
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
    if options.protocol == Protocol::RmfrdDevIdent && options.mask != MaskSetting::Clean {
        return Err(Error::EvalOptions("rmfrd-dev-ident's probes wear real masks: use --mask clean"));
    }
    if options.mask_stage == MaskStage::Photo && options.mask == MaskSetting::Clean {
        return Err(Error::EvalOptions("--mask-stage photo draws masks: choose --mask mask-probe or mask-both"));
    }
    if options.blank_probe_from.is_some_and(|row| row >= maskid_core::ALIGNED_SIZE_PX) {
        return Err(Error::EvalOptions("--blank-probe-below takes a row of the 112-row crop (0 to 111)"));
    }
    let lfw = Lfw::open(&options.data)?;
    let pairs = match (&options.pairs_file, options.protocol) {
        (None, protocol) => protocol.pairs(&lfw, options.seed)?,
        (Some(file), Protocol::LfwView2) => Some(lfw.view2_pairs_in(file)?),
        (Some(_), _) => {
            return Err(Error::EvalOptions("--pairs replaces pairs.txt: it goes with --protocol lfw-view2"))
        }
    };
    let ident = options.protocol.ident_set(&lfw, options.seed)?;
    // How each side of a comparison is shown to the model.
    let reference_view = View { masked: options.mask == MaskSetting::MaskBoth, probe: false };
    let probe_view = View { masked: options.mask != MaskSetting::Clean, probe: options.probe_options() };
    let mut versions: BTreeSet<(PathBuf, View)> = BTreeSet::new();
    if let Some(pairs) = &pairs {
        for p in pairs {
            versions.insert((p.a.path.clone(), reference_view));
            versions.insert((p.b.path.clone(), probe_view));
        }
    }
    if let Some(set) = &ident {
        versions.extend(set.gallery.iter().map(|i| (i.path.clone(), reference_view)));
        versions.extend(set.probes.iter().chain(&set.non_enrolled).map(|i| (i.path.clone(), probe_view)));
    }
    // Sorted by path, so a photo's versions are neighbours.
    let mut photos: Vec<PathBuf> = versions.iter().map(|(p, _)| p.clone()).collect();
    photos.dedup();
    let (prepared, summary) = prepare(home, &options.data, &photos, models, progress)?;
    let versions: Vec<(PathBuf, View)> = versions.into_iter().collect();
    let clean_embedder = reference_embedder.unwrap_or(embedder);
    let shown = ShownFaces { prepared: &prepared, models, options, log: Mutex::default() };
    let embeddings = embed_versions(&shown, &versions, clean_embedder, embedder, restorer, progress)?;
    let get = |image: &ImageRef, view: View| &embeddings[&(image.path.clone(), view)];

    let (mut scored_pairs, mut scores, mut rank1_hits) = (Vec::new(), Vec::new(), Vec::new());
    let metrics = if let Some(pairs) = pairs {
        scores = pairs
            .iter()
            .map(|p| get(&p.a, reference_view).cosine(get(&p.b, probe_view)))
            .collect::<std::result::Result<_, _>>()?;
        let genuine: Vec<bool> = pairs.iter().map(|p| p.genuine).collect();
        let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
        scored_pairs = pairs;
        ReportMetrics::Verification(verification_metrics(&scores, &genuine, &folds))
    } else {
        let set = ident.expect("BUG: identification protocol has an ident set");
        // Look each embedding up once: the score matrix has probes x gallery entries.
        let gallery: Vec<&Embedding> = set.gallery.iter().map(|g| get(g, reference_view)).collect();
        let rows = |probes: &[ImageRef]| -> Result<Vec<Vec<f32>>> {
            probes
                .iter()
                .map(|p| {
                    let probe = get(p, probe_view);
                    gallery.iter().map(|g| Ok(probe.cosine(g)?)).collect()
                })
                .collect()
        };
        let probes = rows(&set.probes)?;
        rank1_hits = probe_ranks(&probes, &set.truth).into_iter().map(|rank| rank == 1).collect();
        ReportMetrics::Identification(identification_metrics(&probes, &set.truth, &rows(&set.non_enrolled)?))
    };
    let probe_masked = probe_view.masked;
    let probe_preparation = options.changes_preparation().then(|| shown.preparation());
    let report = Report {
        protocol: options.protocol.name().into(),
        model: format!(
            "{}{}{}",
            if restorer.is_some() { "unmask+" } else { "" },
            embedder.info().id,
            if options.mirror_average { "+mirror" } else { "" }
        ),
        model_sha256: embedder.info().sha256.clone(),
        reference_model: reference_embedder.map(|e| e.info().id.clone()),
        mask: options.mask.name().into(),
        mask_style: if probe_masked { options.style.map_or("random", MaskStyle::name) } else { "none" }.into(),
        mask_render_version: probe_masked.then_some(maskid_mask::RENDER_VERSION),
        seed: options.seed,
        data: options.data.display().to_string(),
        images: photos.len(),
        fallback_crops: summary.fallbacks,
        pairs_file: options.pairs_file.clone(),
        probe_preparation,
        maskid_version: env!("CARGO_PKG_VERSION").into(),
        metrics,
    };
    Ok(Evaluation { report, prepared: summary, pairs: scored_pairs, scores, rank1_hits })
}

/// The unmasked and the masked embedding of each of `photos` (relative to `options.data`;
/// masked as `options` mask probes), for measurements beside the protocols (calibration).
/// Photos the preparation could not read are left out.
pub fn clean_and_masked_embeddings(
    home: &Path,
    models: &Models,
    embedder: &FaceEmbedder,
    options: &EvalOptions,
    photos: &[PathBuf],
    progress: ProgressFn<'_>,
) -> Result<Vec<(PathBuf, Embedding, Embedding)>> {
    let (prepared, _) = prepare(home, &options.data, photos, models, progress)?;
    let usable: Vec<PathBuf> = photos
        .iter()
        .filter(|p| prepared.record(&p.to_string_lossy()).is_some_and(|r| r.error.is_none()))
        .cloned()
        .collect();
    let masked = View { masked: true, probe: options.probe_options() };
    let versions: Vec<(PathBuf, View)> =
        usable.iter().flat_map(|p| [(p.clone(), View::PLAIN), (p.clone(), masked)]).collect();
    let shown = ShownFaces { prepared: &prepared, models, options, log: Mutex::default() };
    let mut embeddings = embed_versions(&shown, &versions, embedder, embedder, None, progress)?;
    let mut take =
        |p: &PathBuf, view: View| embeddings.remove(&(p.clone(), view)).expect("BUG: every version embedded");
    Ok(usable.iter().map(|p| (p.clone(), take(p, View::PLAIN), take(p, masked))).collect())
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
    Ok(mask_face(face, &crop_landmarks(prepared, &key), &mask_spec(&key, options))?)
}

/// The mask of a photo in a protocol run: a function of (its path, the protocol seed) and the
/// forced style and coverage, whether drawn on the crop or on the photo.
fn mask_spec(key: &str, options: &EvalOptions) -> MaskSpec {
    MaskSpec::from_seed(image_seed(key, options.seed), options.style, options.coverage)
}

/// The five landmarks of a prepared photo inside its aligned crop (the template for a
/// central-crop fallback).
pub fn crop_landmarks(prepared: &PreparedSet, key: &str) -> Landmarks5 {
    prepared.record(key).and_then(|r| r.landmarks).map_or(Landmarks5(ALIGNMENT_TEMPLATE), |lm| landmarks_in_crop(&lm))
}

/// Where a face's photo landmarks land in its aligned crop.
pub fn landmarks_in_crop(landmarks: &Landmarks5) -> Landmarks5 {
    match similarity_transform(&landmarks.0, &ALIGNMENT_TEMPLATE) {
        Ok(t) => mapped(&t, landmarks),
        Err(_) => Landmarks5(ALIGNMENT_TEMPLATE),
    }
}

/// Landmarks moved by a map.
fn mapped(t: &Affine, landmarks: &Landmarks5) -> Landmarks5 {
    Landmarks5(landmarks.0.map(|p| {
        let q = t.apply([f64::from(p[0]), f64::from(p[1])]);
        [q[0] as f32, q[1] as f32]
    }))
}

/// How one image of a protocol is shown to the model: masked or not, and prepared with the
/// probe options or as protocols.md prepares every image. A photo shown the same way on both
/// sides of a protocol is embedded once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct View {
    masked: bool,
    probe: bool,
}

impl View {
    /// The crop `prepare` cached, as it is.
    const PLAIN: View = View { masked: false, probe: false };
}

/// Makes the faces of the views other than the plain one, and keeps count of what that took.
struct ShownFaces<'a> {
    prepared: &'a PreparedSet,
    models: &'a Models,
    options: &'a EvalOptions,
    log: Mutex<ShownLog>,
}

#[derive(Default)]
struct ShownLog {
    realigned: usize,
    fallbacks: usize,
    /// Faces the masked-face model found (`LandmarkSource::MaskedModel`; the others keep the
    /// detector's landmarks).
    masked_model_found: usize,
    /// Per photo-stage masked face: mean displacement of the five points, of the eyes.
    shifts: Vec<(f64, f64)>,
}

impl ShownFaces<'_> {
    /// The face of `path` as `view` shows it.
    fn face(&self, path: &Path, view: View) -> Result<AlignedFace> {
        let options = self.options;
        let (alignment, source) = match view.probe {
            true => (options.probe_alignment, options.probe_landmarks),
            false => (Alignment::FivePoint, LandmarkSource::Detector),
        };
        let photo_stage = view.masked && options.mask_stage == MaskStage::Photo;
        let landmarks = self.prepared.record(&path.to_string_lossy()).and_then(|r| r.landmarks);
        let mut face = match landmarks {
            Some(clean)
                if photo_stage || alignment != Alignment::FivePoint || source == LandmarkSource::MaskedModel =>
            {
                self.realigned(path, &clean, view.masked, photo_stage, alignment, source)?
            }
            // The cached crop (the central crop where `prepare` found no face; it counts those).
            _ => protocol_face(self.prepared, path, view.masked, options)?,
        };
        if let (true, Some(row)) = (view.probe, options.blank_probe_from) {
            face = blank_below(&face, row);
        }
        Ok(face)
    }

    /// The face aligned anew from its photo: masked on the photo first (`photo_stage`) and
    /// detected again, or masked on the crop after.
    fn realigned(
        &self,
        path: &Path,
        clean: &Landmarks5,
        masked: bool,
        photo_stage: bool,
        alignment: Alignment,
        source: LandmarkSource,
    ) -> Result<AlignedFace> {
        let spec = mask_spec(&path.to_string_lossy(), self.options);
        let mut photo = self.models.load_photo(&self.options.data.join(path))?;
        if photo_stage {
            let (w, h) = (photo.width() as usize, photo.height() as usize);
            render_mask(&mut RgbImageMut::new(w, h, photo.as_mut())?, clean, &spec)?;
        }
        // Run only where asked for: `prepare` already detected the unmasked photo.
        let detected = || -> Result<Option<Landmarks5>> {
            Ok(match photo_stage {
                true => centre_face(&photo, self.models.detector.detect(&photo)?, self.models),
                false => Some(*clean),
            })
        };
        let (landmarks, masked_model_found) = match source {
            LandmarkSource::Detector => (detected()?, false),
            LandmarkSource::MaskedModel => {
                match centre_face(&photo, self.models.detector.detect_masked(&photo)?, self.models) {
                    Some(found) => (Some(found), true),
                    None => (detected()?, false),
                }
            }
            LandmarkSource::Clean => (Some(*clean), false),
        };
        let mut log = self.log.lock().expect("BUG: log lock poisoned");
        log.realigned += 1;
        log.masked_model_found += usize::from(masked_model_found);
        let Some(landmarks) = landmarks else {
            log.fallbacks += 1;
            return Ok(central_crop(&photo));
        };
        let to_crop = alignment.to_template(&landmarks)?;
        let clean_in_crop = mapped(&to_crop, clean);
        if photo_stage {
            log.shifts.push(displacement(&clean_in_crop, &landmarks_in_crop(clean)));
        }
        drop(log);
        let face = align_face_by(&photo, &landmarks, alignment)?;
        Ok(match masked && !photo_stage {
            true => mask_face(&face, &clean_in_crop, &spec)?.0,
            false => face,
        })
    }

    /// What the report says of the preparation.
    fn preparation(&self) -> ProbePreparation {
        let log = self.log.lock().expect("BUG: log lock poisoned");
        let options = self.options;
        ProbePreparation {
            mask_stage: options.mask_stage.name().into(),
            alignment: options.probe_alignment.name().into(),
            landmarks: options.probe_landmarks.name().into(),
            blank_from_row: options.blank_probe_from,
            realigned: log.realigned,
            fallbacks: log.fallbacks,
            masked_model_found: (options.probe_landmarks == LandmarkSource::MaskedModel)
                .then_some(log.masked_model_found),
            shift: AlignmentShift::of(&log.shifts),
        }
    }
}

/// The landmarks of the face nearest the photo's centre, if any.
fn centre_face(photo: &RgbImage, found: Vec<maskid_core::Detection>, models: &Models) -> Option<Landmarks5> {
    let threshold = models.detector.config().score_threshold;
    let chosen = select_faces(found, FacePolicy::Center, photo.dimensions(), threshold).ok()?;
    chosen.first().map(|d| d.landmarks)
}

/// Mean distance of the five points, and of the two eyes, between two placements.
fn displacement(a: &Landmarks5, b: &Landmarks5) -> (f64, f64) {
    let d: Vec<f64> = a.0.iter().zip(&b.0).map(|(p, q)| f64::from(p[0] - q[0]).hypot(f64::from(p[1] - q[1]))).collect();
    (d.iter().sum::<f64>() / 5.0, (d[0] + d[1]) / 2.0)
}

/// The crop with every row from `row` down mid-grey.
fn blank_below(face: &AlignedFace, row: usize) -> AlignedFace {
    let mut rgb = face.rgb().to_vec();
    rgb[row * maskid_core::ALIGNED_SIZE_PX * 3..].fill(128);
    AlignedFace::from_rgb(rgb).expect("BUG: same size")
}

/// Embeds each (photo, view) version, 32 at a time across the embedder's sessions: the plain
/// ones with `clean_embedder` (through its embedding cache), the others with
/// `masked_embedder`, the masked ones after `restorer` when given.
fn embed_versions(
    shown: &ShownFaces<'_>,
    versions: &[(PathBuf, View)],
    clean_embedder: &FaceEmbedder,
    masked_embedder: &FaceEmbedder,
    restorer: Option<&FaceRestorer>,
    progress: ProgressFn<'_>,
) -> Result<HashMap<(PathBuf, View), Embedding>> {
    let of_view =
        |view: View| -> Vec<PathBuf> { versions.iter().filter(|(_, v)| *v == view).map(|(p, _)| p.clone()).collect() };
    let (prepared, mirror_average) = (shown.prepared, shown.options.mirror_average);
    let plain = of_view(View::PLAIN);
    let clean_embeddings = match mirror_average {
        true => mirror_averaged_embeddings(prepared, &plain, clean_embedder, progress)?,
        false => clean_embeddings(prepared, &plain, clean_embedder, progress)?,
    };
    let mut out: HashMap<(PathBuf, View), Embedding> =
        clean_embeddings.into_iter().map(|(p, e)| ((p, View::PLAIN), e)).collect();
    let views: BTreeSet<View> = versions.iter().map(|(_, v)| *v).filter(|v| *v != View::PLAIN).collect();
    for view in views {
        let photos = of_view(view);
        let restorer = restorer.filter(|_| view.masked);
        let face_of = |p: &Path| shown.face(p, view);
        let embeddings = embed_chunks(&photos, face_of, masked_embedder, restorer, mirror_average, progress)?;
        out.extend(photos.into_iter().map(|p| (p, view)).zip(embeddings));
    }
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
    let mut cache = EmbeddingCache::open(prepared.dir(), &embedder.info().sha256)?;
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
