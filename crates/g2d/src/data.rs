//! Training data: which faces make each batch (a seeded shuffle, or P identities x K images
//! for relation distillation) and how a batch becomes tensors (synthetic occluders drawn from
//! the step's seed, so a resumed run sees the very same batches).

use burn::prelude::*;
use burn::tensor::TensorData;
use maskid_core::{mirror_rows, AlignedFace, Embedding, OcclusionMap, TrainingFace, ALIGNED_SIZE_PX};
use maskid_mask::{occlude, OcclusionMix, RealMasks, RgbImageMut, Rng};
use rayon::prelude::*;

use crate::{Error, Result};

const PIXELS: usize = ALIGNED_SIZE_PX * ALIGNED_SIZE_PX;

/// Keeps the mirroring draw apart from the occluder's draws of the same seed.
const MIRROR_SALT: u64 = 0x6d69_7272_6f72_6564;
/// Keeps the photo-condition draws apart from the others.
const CONDITION_SALT: u64 = 0x636f_6e64_6974_696f;

/// A batch as tensors.
pub struct FaceBatch {
    /// Occluded faces, `[batch, 3, 112, 112]` in [-1, 1].
    pub masked: Tensor<4>,
    /// The same faces clean.
    pub clean: Tensor<4>,
    /// Covered region, `[batch, 1, 112, 112]` in 0..1.
    pub holes: Tensor<4>,
    /// Teacher embeddings of the clean faces, `[batch, 128]`.
    pub teacher: Tensor<2>,
    /// Identity indices, `[batch]`.
    pub identities: Tensor<1, Int>,
}

/// Builds batches of one data set with one occlusion mix.
pub struct FaceBatcher<'a> {
    faces: &'a [TrainingFace],
    occlusion: OcclusionMix,
    real: Option<&'a RealMasks>,
    /// Share of faces mirrored left to right (with their occluder and clean twin).
    mirror: f32,
    /// Share of occluded faces degraded by `condition::degrade` (their clean twins are not).
    condition: f32,
}

impl<'a> FaceBatcher<'a> {
    /// A batcher over `faces`; `real` masks are needed when the mix has a real share.
    pub fn new(faces: &'a [TrainingFace], occlusion: OcclusionMix, real: Option<&'a RealMasks>) -> Result<Self> {
        if occlusion.real > 0.0 && real.is_none() {
            return Err(Error::Data(
                "the occlusion mix has a `real` share: give photos of real masked faces (maskid train --real-masks DIR)"
                    .into(),
            ));
        }
        Ok(Self { faces, occlusion, real, mirror: 0.0, condition: 0.0 })
    }

    /// The batcher with a `share` of its faces mirrored left to right.
    pub fn mirroring(self, share: f32) -> Self {
        Self { mirror: share, ..self }
    }

    /// The batcher with a `share` of its occluded faces in a degraded photo condition.
    pub fn degrading(self, share: f32) -> Self {
        Self { condition: share, ..self }
    }

    /// The faces at `indices`, each covered by an occluder drawn from (`seed`, position in the
    /// run), on `device`.
    pub fn batch(&self, indices: &[usize], seed: u64, device: &Device) -> Result<FaceBatch> {
        // (masked, its occlusion map, the clean face when mirrored)
        let items: Vec<(Vec<u8>, OcclusionMap, Option<Vec<u8>>)> = indices
            .par_iter()
            .enumerate()
            .map(|(slot, &i)| {
                let face = &self.faces[i];
                let mut rgb = face.face.rgb().to_vec();
                let mut image = RgbImageMut::new(ALIGNED_SIZE_PX, ALIGNED_SIZE_PX, &mut rgb)?;
                let mask_seed =
                    seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (slot as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                let (_, mut map) = occlude(&mut image, &face.landmarks, mask_seed, &self.occlusion, self.real)?;
                let mut condition = Rng::new(mask_seed ^ CONDITION_SALT);
                if self.condition > 0.0 && condition.chance(self.condition) {
                    crate::condition::degrade(&mut rgb, &mut condition);
                }
                // Mirrored after occluding, so the occluder is drawn as it would be unmirrored.
                let mirrored = self.mirror > 0.0 && Rng::new(mask_seed ^ MIRROR_SALT).chance(self.mirror);
                if !mirrored {
                    return Ok((rgb, map, None));
                }
                mirror_rows(&mut rgb, ALIGNED_SIZE_PX, 3);
                mirror_rows(&mut map.coverage, map.width, 1);
                Ok((rgb, map, Some(face.face.mirrored().rgb().to_vec())))
            })
            .collect::<std::result::Result<_, maskid_mask::Error>>()
            .map_err(|e| Error::Data(format!("drawing an occluder: {e}")))?;
        let n = indices.len();
        let masked: Vec<&[u8]> = items.iter().map(|(rgb, _, _)| rgb.as_slice()).collect();
        let clean: Vec<&[u8]> = items
            .iter()
            .zip(indices)
            .map(|((_, _, mirrored), &i)| mirrored.as_deref().unwrap_or(self.faces[i].face.rgb()))
            .collect();
        let holes: Vec<f32> = items.iter().flat_map(|(_, map, _)| map.coverage.iter().copied()).collect();
        let teacher_dim = self.faces[indices[0]].teacher.values().len();
        let teacher: Vec<f32> = indices.iter().flat_map(|&i| self.faces[i].teacher.values().iter().copied()).collect();
        let identities: Vec<i64> = indices.iter().map(|&i| i64::from(self.faces[i].identity)).collect();
        Ok(FaceBatch {
            masked: faces_tensor(&masked, device),
            clean: faces_tensor(&clean, device),
            holes: Tensor::from_data(TensorData::new(holes, [n, 1, ALIGNED_SIZE_PX, ALIGNED_SIZE_PX]), device),
            teacher: Tensor::from_data(TensorData::new(teacher, [n, teacher_dim]), device),
            identities: Tensor::from_data(TensorData::new(identities, [n]), device),
        })
    }
}

/// RGB crops -> `[n, 3, 112, 112]` in [-1, 1], as the exported backbone expects.
pub fn faces_tensor(faces: &[&[u8]], device: &Device) -> Tensor<4> {
    let mut values = vec![0f32; faces.len() * 3 * PIXELS];
    values.par_chunks_mut(3 * PIXELS).zip(faces).for_each(|(out, rgb)| {
        for (p, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * PIXELS + p] = f32::from(px[c]) / 127.5 - 1.0;
            }
        }
    });
    Tensor::from_data(TensorData::new(values, [faces.len(), 3, ALIGNED_SIZE_PX, ALIGNED_SIZE_PX]), device)
}

/// `[n, 3, 112, 112]` in [-1, 1] -> RGB crops.
pub fn tensor_faces(tensor: Tensor<4>) -> Result<Vec<AlignedFace>> {
    let values =
        tensor.into_data().try_into_vec::<f32>().map_err(|e| Error::Data(format!("reading a tensor: {e:?}")))?;
    Ok(values
        .chunks_exact(3 * PIXELS)
        .map(|planes| AlignedFace::from_unit_planes(planes).expect("BUG: one face's planes"))
        .collect())
}

/// A seeded permutation of `0..n` (Fisher-Yates).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

/// Which faces make batch `step`: epochs of a fresh shuffle, batches of `batch_size`, the last
/// incomplete batch of an epoch dropped.
#[derive(Debug, Clone)]
pub struct ShuffledSampler {
    faces: Vec<usize>,
    batch_size: usize,
    seed: u64,
}

impl ShuffledSampler {
    /// Batches over the faces listed in `faces`.
    pub fn new(faces: Vec<usize>, batch_size: usize, seed: u64) -> Result<Self> {
        if faces.len() < batch_size {
            return Err(Error::Data(format!(
                "batch size {batch_size} is larger than the data set ({} faces): lower schedule.batch_size or add data",
                faces.len()
            )));
        }
        Ok(Self { faces, batch_size, seed })
    }

    /// Batches per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.faces.len() / self.batch_size
    }

    /// Face indices of batch `step`.
    pub fn batch(&self, step: usize) -> Vec<usize> {
        let epoch = step / self.steps_per_epoch();
        let k = step % self.steps_per_epoch();
        let order = permutation(self.faces.len(), self.seed ^ (epoch as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        order[k * self.batch_size..(k + 1) * self.batch_size].iter().map(|&i| self.faces[i]).collect()
    }
}

/// P identities x K images a batch, so that relations include same-person pairs. A person with
/// fewer than K photos repeats them (each copy gets its own occluder).
#[derive(Debug, Clone)]
pub struct IdentitySampler {
    by_identity: Vec<Vec<usize>>,
    identities: usize,
    images: usize,
    seed: u64,
    /// With look-alike batches: each identity's mean teacher embedding (unit length), and how
    /// many nearest people a batch's companions are drawn from.
    lookalikes: Option<(Vec<Embedding>, usize)>,
}

/// Mean teacher cosine above which two "people" are taken for one (a person under two names,
/// or one photo twice, as UTKFace has): never companions in a look-alike batch, where the
/// identity term would push them apart. SFace's same-person threshold is 0.363.
const SAME_PERSON_COSINE: f32 = 0.8;

impl IdentitySampler {
    /// Groups `faces` by identity.
    pub fn new(faces: &[TrainingFace], identities: usize, images: usize, seed: u64) -> Result<Self> {
        let count = faces.iter().map(|f| f.identity as usize + 1).max().unwrap_or(0);
        let mut by_identity = vec![Vec::new(); count];
        for (i, f) in faces.iter().enumerate() {
            by_identity[f.identity as usize].push(i);
        }
        by_identity.retain(|v| !v.is_empty());
        if by_identity.len() < identities {
            return Err(Error::Data(format!(
                "{identities} identities per batch but the data set has {}: lower reformer.identities_per_batch or add data",
                by_identity.len()
            )));
        }
        Ok(Self { by_identity, identities, images, seed, lookalikes: None })
    }

    /// The sampler with look-alike batches: one person of the shuffle a batch (the anchor),
    /// with P-1 companions drawn from the `pool` people whose mean teacher embedding of `faces`
    /// is nearest the anchor's. Random people are told apart by the teacher at once; the
    /// relations and margins worth learning are among people who look alike.
    pub fn with_lookalikes(self, faces: &[TrainingFace], pool: usize) -> Result<Self> {
        if pool + 1 < self.identities {
            return Err(Error::Data(format!(
                "look-alike batches of {} people need a pool of at least {}: raise reformer.lookalikes",
                self.identities,
                self.identities - 1
            )));
        }
        let means = self
            .by_identity
            .iter()
            .map(|photos| {
                let mut sum = vec![0f32; faces[photos[0]].teacher.values().len()];
                for &i in photos {
                    sum.iter_mut().zip(faces[i].teacher.values()).for_each(|(m, v)| *m += v);
                }
                Embedding::normalized(sum)
            })
            .collect();
        Ok(Self { lookalikes: Some((means, pool)), ..self })
    }

    /// Batches per epoch (one pass over the identities; with look-alikes, one anchor a batch).
    pub fn steps_per_epoch(&self) -> usize {
        match self.lookalikes {
            Some(_) => self.by_identity.len(),
            None => self.by_identity.len() / self.identities,
        }
    }

    /// The identities of batch `step`.
    fn people(&self, step: usize) -> Vec<usize> {
        let epoch = (step / self.steps_per_epoch()) as u64;
        let k = step % self.steps_per_epoch();
        let order = permutation(self.by_identity.len(), self.seed ^ epoch.wrapping_mul(0x2545_f491_4f6c_dd1d));
        let Some((means, pool)) = &self.lookalikes else {
            return order[k * self.identities..(k + 1) * self.identities].to_vec();
        };
        let anchor = order[k];
        // Ranked by cosine to the anchor; one person under two names ranks last.
        let mut nearest: Vec<(f32, usize)> = means
            .par_iter()
            .enumerate()
            .filter(|&(id, _)| id != anchor)
            .map(|(id, mean)| {
                let cosine = mean.cosine(&means[anchor]).expect("BUG: one teacher makes every mean");
                (if cosine > SAME_PERSON_COSINE { -2.0 } else { cosine }, id)
            })
            .collect();
        let pool = (*pool).min(nearest.len());
        nearest.select_nth_unstable_by(pool.saturating_sub(1), |a, b| b.0.total_cmp(&a.0));
        nearest.truncate(pool);
        nearest.sort_by_key(|&(_, id)| id); // the draw below must not depend on the sort's ties
        let pick = permutation(pool, self.seed ^ epoch ^ (anchor as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9));
        std::iter::once(anchor).chain(pick[..self.identities - 1].iter().map(|&j| nearest[j].1)).collect()
    }

    /// Face indices of batch `step`, identity by identity.
    pub fn batch(&self, step: usize) -> Vec<usize> {
        let epoch = (step / self.steps_per_epoch()) as u64;
        let mut batch = Vec::with_capacity(self.identities * self.images);
        for id in self.people(step) {
            let photos = &self.by_identity[id];
            let pick = permutation(photos.len(), self.seed ^ epoch ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            batch.extend((0..self.images).map(|j| photos[pick[j % photos.len()]]));
        }
        batch
    }
}

/// Splits off, for the classifier's validation, one photo of each identity that has at least
/// three: returns (training, held out) face indices.
pub fn holdout_split(faces: &[TrainingFace]) -> (Vec<usize>, Vec<usize>) {
    let mut count = std::collections::HashMap::<u32, usize>::new();
    for f in faces {
        *count.entry(f.identity).or_default() += 1;
    }
    let mut held = std::collections::HashSet::new();
    let (mut train, mut holdout) = (Vec::new(), Vec::new());
    for (i, f) in faces.iter().enumerate() {
        if count[&f.identity] >= 3 && held.insert(f.identity) {
            holdout.push(i);
        } else {
            train.push(i);
        }
    }
    (train, holdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use maskid_core::{Landmarks5, ALIGNMENT_TEMPLATE};

    fn faces(identities: &[u32]) -> Vec<TrainingFace> {
        identities
            .iter()
            .map(|&identity| TrainingFace {
                face: AlignedFace::from_rgb(vec![128; AlignedFace::BYTES]).unwrap(),
                landmarks: Landmarks5(ALIGNMENT_TEMPLATE),
                identity,
                teacher: Embedding::normalized(vec![1.0; 128]),
            })
            .collect()
    }

    #[test]
    fn shuffled_batches_cover_an_epoch_once_and_repeat_by_seed() {
        let sampler = ShuffledSampler::new((0..10).collect(), 3, 5).unwrap();
        assert_eq!(sampler.steps_per_epoch(), 3);
        let mut seen: Vec<usize> = (0..3).flat_map(|s| sampler.batch(s)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "one epoch: 9 distinct faces");
        assert_eq!(sampler.batch(4), ShuffledSampler::new((0..10).collect(), 3, 5).unwrap().batch(4));
        assert_ne!(sampler.batch(0), sampler.batch(3), "a new epoch reshuffles");
        assert!(ShuffledSampler::new((0..2).collect(), 3, 5)
            .unwrap_err()
            .to_string()
            .contains("larger than the data set"));
    }

    #[test]
    fn identity_batches_hold_p_people_k_times() {
        let set = faces(&[0, 0, 0, 1, 2, 2, 3, 3]);
        let sampler = IdentitySampler::new(&set, 2, 2, 1).unwrap();
        assert_eq!(sampler.steps_per_epoch(), 2);
        for step in 0..4 {
            let batch = sampler.batch(step);
            assert_eq!(batch.len(), 4);
            assert_eq!(set[batch[0]].identity, set[batch[1]].identity);
            assert_eq!(set[batch[2]].identity, set[batch[3]].identity);
            assert_ne!(set[batch[0]].identity, set[batch[2]].identity);
        }
        assert!(IdentitySampler::new(&set, 5, 2, 1).is_err());
    }

    #[test]
    fn lookalike_batches_hold_an_anchor_and_its_nearest_people() {
        // Identity i's teacher embedding: a share at angle i/10 rad in the first plane and the
        // rest on its own axis, so the nearest people are the nearest numbers (cosine 0.7 and
        // below); 20 and 21 are one person (cosine 1).
        let mut set = faces(&(0..22).flat_map(|i| [i, i]).collect::<Vec<_>>());
        for f in &mut set {
            let i = f.identity.min(20) as usize;
            let angle = i as f32 / 10.0;
            let mut v = vec![0.0; 128];
            (v[0], v[1], v[2 + i]) = (0.7f32.sqrt() * angle.cos(), 0.7f32.sqrt() * angle.sin(), 0.3f32.sqrt());
            f.teacher = Embedding::normalized(v);
        }
        let sampler = IdentitySampler::new(&set, 3, 2, 9).unwrap().with_lookalikes(&set, 4).unwrap();
        assert_eq!(sampler.steps_per_epoch(), 22, "one anchor a batch");
        let mut anchors = Vec::new();
        for step in 0..22 {
            let people: Vec<i64> = sampler.batch(step).iter().map(|&i| set[i].identity as i64).collect();
            assert_eq!(people.len(), 6);
            let anchor = people[0];
            anchors.push(anchor);
            let distance = |other: i64| (other.min(20) - anchor.min(20)).abs();
            let mut others: Vec<i64> =
                (0..22).filter(|&o| o != anchor && !(o >= 20 && anchor >= 20)).map(distance).collect();
            others.sort();
            for other in people.chunks(2).skip(1).map(|pair| pair[0]) {
                assert_ne!(other, anchor);
                assert!(!(anchor >= 20 && other >= 20), "one person under two names: {people:?}");
                assert!(distance(other) <= others[3], "{other} is among the 4 nearest of {anchor}: {people:?}");
            }
        }
        anchors.sort();
        assert_eq!(anchors, (0..22).collect::<Vec<_>>(), "each person anchors once an epoch");
        assert_eq!(sampler.batch(5), sampler.clone().batch(5));
        assert!(IdentitySampler::new(&set, 3, 2, 9).unwrap().with_lookalikes(&set, 1).is_err());
    }

    #[test]
    fn batches_are_occluded_and_scaled() {
        let set = faces(&[0, 1]);
        let batch = FaceBatcher::new(
            &set,
            OcclusionMix { mask: 1.0, strokes: 0.0, blocks: 0.0, clean: 0.0, real: 0.0, hold_out: None },
            None,
        )
        .unwrap()
        .batch(&[0, 1], 3, &Device::flex())
        .unwrap();
        assert_eq!(batch.masked.dims(), [2, 3, 112, 112]);
        let clean: Vec<f32> = batch.clean.into_data().try_into_vec().unwrap();
        assert!(clean.iter().all(|&v| (v - (128.0 / 127.5 - 1.0)).abs() < 1e-6));
        let holes: Vec<f32> = batch.holes.into_data().try_into_vec().unwrap();
        let covered = holes.iter().filter(|&&h| h > 0.5).count() as f32 / holes.len() as f32;
        assert!((0.1..0.6).contains(&covered), "a mask covers part of the face: {covered}");
        let round_trip = tensor_faces(faces_tensor(&[set[0].face.rgb()], &Device::flex())).unwrap();
        assert_eq!(round_trip[0], set[0].face);
        let (train, held) = holdout_split(&faces(&[0, 0, 0, 1, 1]));
        assert_eq!((train.len(), held.len()), (4, 1));
    }

    #[test]
    fn mirrored_faces_carry_their_occluder_mirrored() {
        let set = faces(&[0, 1]);
        let mix = OcclusionMix { mask: 0.5, strokes: 0.25, blocks: 0.25, clean: 0.0, real: 0.0, hold_out: None };
        let read = |b: Tensor<4>| -> Vec<f32> { b.into_data().try_into_vec().unwrap() };
        let batch =
            |share| FaceBatcher::new(&set, mix, None).unwrap().mirroring(share).batch(&[0, 1], 7, &Device::flex());
        let (plain, mirrored) = (batch(0.0).unwrap(), batch(1.0).unwrap());
        let mut expected = read(plain.masked);
        mirror_rows(&mut expected, ALIGNED_SIZE_PX, 1);
        assert_eq!(read(mirrored.masked), expected, "the same occluder, mirrored");
        let mut holes = read(plain.holes);
        assert!(holes.iter().any(|&h| h > 0.5));
        mirror_rows(&mut holes, ALIGNED_SIZE_PX, 1);
        assert_eq!(read(mirrored.holes), holes);
    }

    #[test]
    fn degraded_faces_change_only_the_students_view() {
        let set = faces(&[0, 1]);
        let mix = OcclusionMix { mask: 1.0, strokes: 0.0, blocks: 0.0, clean: 0.0, real: 0.0, hold_out: None };
        let read = |b: Tensor<4>| -> Vec<f32> { b.into_data().try_into_vec().unwrap() };
        let batch =
            |share| FaceBatcher::new(&set, mix, None).unwrap().degrading(share).batch(&[0, 1], 7, &Device::flex());
        let (plain, degraded) = (batch(0.0).unwrap(), batch(1.0).unwrap());
        assert_eq!(read(plain.clean), read(degraded.clean), "the teacher's side stays clean");
        assert_eq!(read(plain.holes), read(degraded.holes), "the same occluder");
        let masked = read(degraded.masked);
        assert_ne!(read(plain.masked), masked);
        assert_eq!(masked, read(batch(1.0).unwrap().masked), "a pure function of the seed");
    }

    #[test]
    fn a_real_share_needs_real_masks_and_pastes_them_under_the_nose() {
        let set = faces(&[0, 1]);
        let mix = OcclusionMix { mask: 0.0, strokes: 0.0, blocks: 0.0, clean: 0.0, real: 1.0, hold_out: None };
        assert!(FaceBatcher::new(&set, mix, None).is_err(), "refused without real masks");
        let real = RealMasks::new([vec![250u8; PIXELS * 3]]).unwrap();
        let batch = FaceBatcher::new(&set, mix, Some(&real)).unwrap().batch(&[0, 1], 3, &Device::flex()).unwrap();
        let masked: Vec<f32> = batch.masked.into_data().try_into_vec().unwrap();
        let at = |row: usize| masked[row * ALIGNED_SIZE_PX + 56]; // first face, red channel
        assert!((at(30) - (128.0 / 127.5 - 1.0)).abs() < 1e-6, "eyes untouched");
        assert!((at(100) - (250.0 / 127.5 - 1.0)).abs() < 1e-6, "the real crop below the nose");
    }
}
