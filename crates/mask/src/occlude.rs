//! The random occlusion augmenter of training: mask styles, free-form strokes or blocks over
//! the lower face, mixed with probabilities from the training config.

use maskid_core::{Landmarks5, OcclusionMap};
use serde::{Deserialize, Serialize};

use crate::geometry::capsule;
use crate::render::{render_flat, render_mask, RgbImageMut};
use crate::rng::Rng;
use crate::style::{Coverage, MaskSpec, MaskStyle};
use crate::transplant::RealMasks;
use crate::{Error, Result};

/// Relative weights of the occluder kinds (they need not sum to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcclusionMix {
    /// A synthetic mask of a random style.
    pub mask: f32,
    /// Free-form brush strokes.
    pub strokes: f32,
    /// Rectangular blocks.
    pub blocks: f32,
    /// Nothing: the face stays clean (so a student keeps its clean accuracy).
    #[serde(default)]
    pub clean: f32,
    /// The lower part of a real masked face ([`RealMasks`]), on aligned crops only.
    #[serde(default)]
    pub real: f32,
    /// A mask style never drawn (the others are drawn in its place), to measure how a model
    /// trained without it does on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_out: Option<MaskStyle>,
}

impl Default for OcclusionMix {
    fn default() -> Self {
        Self { mask: 0.8, strokes: 0.1, blocks: 0.1, clean: 0.0, real: 0.0, hold_out: None }
    }
}

/// What [`occlude`] drew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occluder {
    /// A mask (its spec is `MaskSpec::from_seed` of the same seed).
    Mask,
    /// Strokes.
    Strokes,
    /// Blocks.
    Blocks,
    /// Nothing (the mix's clean share).
    Nothing,
    /// A real mask transplanted from a photo.
    Real,
}

/// Draws one random occluder chosen by `mix` with `seed`, returning its occlusion map. A mix
/// with a `real` share needs `real` masks (and an aligned 112x112 image).
pub fn occlude(
    image: &mut RgbImageMut<'_>,
    landmarks: &Landmarks5,
    seed: u64,
    mix: &OcclusionMix,
    real: Option<&RealMasks>,
) -> Result<(Occluder, OcclusionMap)> {
    let mut rng = Rng::new(seed ^ 0x0cc1_0de5);
    let (clean, real_share) = (mix.clean.max(0.0), mix.real.max(0.0));
    let total = mix.mask.max(0.0) + mix.strokes.max(0.0) + mix.blocks.max(0.0) + real_share + clean;
    let pick = rng.unit() * total;
    if total > 0.0 && pick >= total - clean {
        return Ok((Occluder::Nothing, OcclusionMap::empty(image.width, image.height)));
    }
    if total > 0.0 && pick >= total - clean - real_share {
        let real = real.ok_or(Error::NoRealMasks("the occlusion mix has a real share; give real masked photos"))?;
        return Ok((Occluder::Real, real.transplant(image, &mut rng)?));
    }
    if total <= 0.0 || pick < mix.mask.max(0.0) {
        let spec = mask_spec(seed, mix.hold_out, &mut rng);
        return Ok((Occluder::Mask, render_mask(image, landmarks, &spec)?));
    }
    let colour = |rng: &mut Rng| [rng.below(256) as u8, rng.below(256) as u8, rng.below(256) as u8];
    let mut outlines = Vec::new();
    let kind = if pick < mix.mask.max(0.0) + mix.strokes.max(0.0) {
        for _ in 0..1 + rng.below(4) {
            let c = colour(&mut rng);
            let width = rng.range(4.0, 12.0);
            let mut p = [rng.range(22.0, 90.0), rng.range(68.0, 110.0)];
            for _ in 0..3 + rng.below(5) {
                let q = [
                    (p[0] + rng.range(-18.0, 18.0)).clamp(12.0, 100.0),
                    (p[1] + rng.range(-12.0, 12.0)).clamp(62.0, 116.0),
                ];
                outlines.push((capsule(p, q, width), c));
                p = q;
            }
        }
        Occluder::Strokes
    } else {
        for _ in 0..1 + rng.below(3) {
            let (w, h) = (rng.range(15.0, 45.0), rng.range(12.0, 35.0));
            let (x, y) = (rng.range(15.0, 97.0 - w), rng.range(64.0, 114.0 - h));
            outlines.push((vec![[x, y], [x + w, y], [x + w, y + h], [x, y + h]], colour(&mut rng)));
        }
        Occluder::Blocks
    };
    Ok((kind, render_flat(image, landmarks, outlines)?))
}

/// The mask of `seed`, any style but `hold_out`: a draw of the held-out style is replaced by
/// one of the others (chosen by `rng`), every other draw is kept as it is.
fn mask_spec(seed: u64, hold_out: Option<MaskStyle>, rng: &mut Rng) -> MaskSpec {
    let spec = MaskSpec::from_seed(seed, None, Coverage::Random);
    match hold_out {
        Some(held_out) if held_out == spec.style => {
            let others: Vec<MaskStyle> = MaskStyle::ALL.into_iter().filter(|s| *s != held_out).collect();
            MaskSpec::from_seed(seed, Some(others[rng.below(others.len())]), Coverage::Random)
        }
        _ => spec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_out_style_is_never_drawn_and_the_other_draws_stay() {
        let mut seen = std::collections::HashSet::new();
        let mut replaced = 0;
        for seed in 0..300 {
            let free = MaskSpec::from_seed(seed, None, Coverage::Random);
            let spec = mask_spec(seed, Some(MaskStyle::Hand), &mut Rng::new(seed));
            assert_ne!(spec.style, MaskStyle::Hand, "seed {seed}");
            match free.style {
                MaskStyle::Hand => replaced += 1,
                _ => assert_eq!(spec, free, "seed {seed}: only held-out draws change"),
            }
            seen.insert(spec.style);
        }
        assert!(replaced > 20, "about a sixth of 300 draws are hands: {replaced}");
        assert_eq!(seen.len(), 5, "the five other styles all appear: {seen:?}");
        // Without a held-out style nothing changes.
        let spec = mask_spec(7, None, &mut Rng::new(0));
        assert_eq!(spec, MaskSpec::from_seed(7, None, Coverage::Random));
    }
}
