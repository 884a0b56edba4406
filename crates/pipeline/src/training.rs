//! Training data for the G2D stages: prepared crops with their landmarks, identity labels and
//! the teacher's embeddings (cached per data set), and validation pairs as a protocol shows
//! them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use maskid_core::{AlignedFace, DensePairs, TrainingFace, VerificationPairs};
use maskid_eval::{folder_dataset, ImageRef, Lfw, MaskSetting};
use maskid_face::FacePolicy;
use maskid_mask::{mask_face, Coverage, MaskSpec, MaskStyle};

use crate::evaluate::{
    clean_embeddings, crop_landmarks, landmarks_in_crop, mask_prepared_face, masked_face, mirror_averaged_embeddings,
    protocol_face, EvalOptions,
};
use crate::models::Models;
use crate::prepare::{prepare, PrepareSummary};
use crate::{Error, ProgressFn, Result};

/// Faces to train on and the names of their identities.
pub struct TrainingSet {
    /// The faces, identity indices into `identities`.
    pub faces: Vec<TrainingFace>,
    /// Identity names.
    pub identities: Vec<String>,
    /// What `prepare` did.
    pub summary: PrepareSummary,
}

/// What the teacher's embedding of a training face is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TeacherTargets {
    /// Its embedding of the face.
    Face,
    /// The mean of its embeddings of the face and of the face's mirror image.
    MirrorAverage,
}

/// The training photos of `root`: for LFW, the people of `peopleDevTrain.txt` only
/// (protocols.md), less the `held_out` people; otherwise one identity per folder.
/// `max_people` keeps the first people (in list order) for short runs. Photos whose face
/// could not be found are left out.
pub fn training_set(
    home: &Path,
    models: &Models,
    root: &Path,
    max_people: Option<usize>,
    held_out: &BTreeSet<String>,
    targets: TeacherTargets,
    progress: ProgressFn<'_>,
) -> Result<TrainingSet> {
    let images: Vec<ImageRef> = if root.join("peopleDevTrain.txt").is_file() {
        let lfw = Lfw::open(root)?;
        lfw.people("peopleDevTrain.txt")?
            .into_iter()
            .filter(|(name, _)| !held_out.contains(name))
            .take(max_people.unwrap_or(usize::MAX))
            .flat_map(|(name, count)| (1..=count).map(move |n| Lfw::image(&name, n)))
            .collect()
    } else {
        let images = folder_dataset(root)?;
        let mut people: Vec<&str> = images.iter().map(|i| i.identity.as_str()).collect();
        people.dedup();
        let kept: std::collections::HashSet<String> =
            people.into_iter().take(max_people.unwrap_or(usize::MAX)).map(str::to_owned).collect();
        images.into_iter().filter(|i| kept.contains(&i.identity)).collect()
    };
    labelled_faces(home, models, root, images, targets, progress)
}

/// Photos without identity labels (UTKFace, say) for distillation, which needs none: every
/// photo becomes an identity of its own, numbered from `first_identity`.
pub fn unlabelled_set(
    home: &Path,
    models: &Models,
    root: &Path,
    first_identity: u32,
    targets: TeacherTargets,
    progress: ProgressFn<'_>,
) -> Result<TrainingSet> {
    let images: Vec<ImageRef> = folder_dataset(root)?
        .into_iter()
        .map(|i| ImageRef { identity: i.path.to_string_lossy().into_owned(), path: i.path })
        .collect();
    let mut set = labelled_faces(home, models, root, images, targets, progress)?;
    for face in &mut set.faces {
        face.identity += first_identity;
    }
    Ok(set)
}

fn labelled_faces(
    home: &Path,
    models: &Models,
    root: &Path,
    images: Vec<ImageRef>,
    targets: TeacherTargets,
    progress: ProgressFn<'_>,
) -> Result<TrainingSet> {
    if images.is_empty() {
        return Err(Error::NoPhotos { root: root.to_path_buf() });
    }
    let photos: Vec<PathBuf> = images.iter().map(|i| i.path.clone()).collect();
    let (prepared, summary) = prepare(home, root, &photos, models, progress)?;
    let usable: Vec<&ImageRef> = images
        .iter()
        .filter(|i| prepared.record(&i.path.to_string_lossy()).is_some_and(|r| r.error.is_none() && !r.fallback))
        .collect();
    let paths: Vec<PathBuf> = usable.iter().map(|i| i.path.clone()).collect();
    let teacher = match targets {
        TeacherTargets::Face => clean_embeddings(&prepared, &paths, &models.teacher, progress)?,
        TeacherTargets::MirrorAverage => mirror_averaged_embeddings(&prepared, &paths, &models.teacher, progress)?,
    };
    let mut ids = BTreeMap::<&str, u32>::new();
    let mut identities = Vec::new();
    let mut faces = Vec::with_capacity(usable.len());
    for image in usable {
        let next = ids.len() as u32;
        let identity = *ids.entry(&image.identity).or_insert_with(|| {
            identities.push(image.identity.clone());
            next
        });
        let key = image.path.to_string_lossy();
        faces.push(TrainingFace {
            face: prepared.face(&key)?,
            landmarks: crop_landmarks(&prepared, &key),
            identity,
            teacher: teacher[&image.path].clone(),
        });
    }
    Ok(TrainingSet { faces, identities, summary })
}

/// The pairs of a verification protocol as it shows them (masks drawn from `options`), at
/// about `max_pairs` of them (the same share of every fold and kind).
pub fn verification_pairs(
    home: &Path,
    models: &Models,
    options: &EvalOptions,
    max_pairs: Option<usize>,
    progress: ProgressFn<'_>,
) -> Result<VerificationPairs> {
    let lfw = Lfw::open(&options.data)?;
    let all =
        options.protocol.pairs(&lfw, options.seed)?.ok_or(Error::NotPairs { protocol: options.protocol.name() })?;
    // The same share of every (fold, kind) group, so that a subset keeps every fold with both
    // kinds whatever the list's order.
    let share = max_pairs.map_or(1.0, |n| (n as f64 / all.len().max(1) as f64).min(1.0));
    let mut groups = BTreeMap::<(usize, bool), Vec<_>>::new();
    for pair in all {
        groups.entry((pair.fold, pair.genuine)).or_default().push(pair);
    }
    let pairs: Vec<_> = groups
        .into_values()
        .flat_map(|group| {
            let keep = (group.len() as f64 * share).ceil() as usize;
            group.into_iter().take(keep)
        })
        .collect();
    let photos: Vec<PathBuf> = pairs.iter().flat_map(|p| [p.a.path.clone(), p.b.path.clone()]).collect();
    let (prepared, _) = prepare(home, &options.data, &photos, models, progress)?;
    let reference_masked = options.mask == MaskSetting::MaskBoth;
    let mut out = VerificationPairs::default();
    for pair in &pairs {
        out.references.push(protocol_face(&prepared, &pair.a.path, reference_masked, options)?);
        let clean = prepared.face(&pair.b.path.to_string_lossy())?;
        let (probe, hole) = if options.mask == MaskSetting::Clean {
            (clean.clone(), maskid_core::OcclusionMap::empty(112, 112))
        } else {
            masked_face(&prepared, &pair.b.path, options)?
        };
        out.probes.push(probe);
        out.clean_probes.push(clean);
        out.probe_holes.push(hole);
        out.genuine.push(pair.genuine);
        out.folds.push(pair.fold);
    }
    Ok(out)
}

/// `lfw-devtrain-holdout-dense` as a student's validation sees it: each photo clean and
/// masked as `maskid eval` masks it (seed and styles of `options`), the pairs as indices. With
/// `max_photos`, the cut-down set of [`Lfw::devtrain_holdout_dense_pairs`].
pub fn dense_validation_pairs(
    home: &Path,
    models: &Models,
    options: &EvalOptions,
    max_photos: Option<usize>,
    progress: ProgressFn<'_>,
) -> Result<DensePairs> {
    let lfw = Lfw::open(&options.data)?;
    let pairs = lfw.devtrain_holdout_dense_pairs(options.seed, max_photos)?;
    let photos: Vec<PathBuf> =
        pairs.iter().flat_map(|p| [p.a.path.clone(), p.b.path.clone()]).collect::<BTreeSet<_>>().into_iter().collect();
    let index: BTreeMap<&Path, u32> = photos.iter().enumerate().map(|(i, p)| (p.as_path(), i as u32)).collect();
    let (prepared, _) = prepare(home, &options.data, &photos, models, progress)?;
    let mut out = DensePairs::default();
    for photo in &photos {
        let face = prepared.face(&photo.to_string_lossy())?;
        out.masked.push(mask_prepared_face(&prepared, photo, &face, options)?.0);
        out.clean.push(face);
    }
    for pair in &pairs {
        out.pairs.push((index[pair.a.path.as_path()], index[pair.b.path.as_path()]));
        out.genuine.push(pair.genuine);
        out.folds.push(pair.fold);
    }
    Ok(out)
}

/// 32 real aligned faces to check an export against burn with: lfw-devtest crops (masked
/// probes among them) when LFW is given, else each sample photo's face clean and under five
/// mask styles.
pub fn parity_faces(assets: &maskid_assets::Assets, models: &Models, lfw: Option<&Path>) -> Result<Vec<AlignedFace>> {
    if let Some(root) = lfw {
        let options = EvalOptions::devtest_mask_probe(root.to_path_buf());
        let pairs = verification_pairs(assets.home(), models, &options, Some(16), &|_| {})?;
        return Ok(pairs.references.into_iter().chain(pairs.probes).take(32).collect());
    }
    let mut faces = Vec::new();
    for photo in maskid_assets::SAMPLE_PHOTOS.iter() {
        let (_, found) = models.photo_faces(&assets.get(photo)?, FacePolicy::Largest)?;
        for (detection, face) in found.into_iter().take(1) {
            let landmarks = landmarks_in_crop(&detection.landmarks);
            faces.push(face.clone());
            for (i, style) in MaskStyle::ALL.iter().take(5).enumerate() {
                let spec = MaskSpec::from_seed(i as u64, Some(*style), Coverage::Random);
                faces.push(mask_face(&face, &landmarks, &spec)?.0);
            }
        }
    }
    faces.truncate(32);
    Ok(faces)
}
