//! Real masks for training: the lower part of aligned photos of people wearing masks, pasted
//! over clean aligned faces. Both sides are in the 112x112 alignment template, so the real
//! mask lands where a mask belongs. A student trained only on maskid's drawn masks can learn
//! to undo that one renderer; real masks teach it what masks in photos look like
//! (`../shared/docs/reference-numbers.md`).

use maskid_core::{OcclusionMap, ALIGNED_SIZE_PX};

use crate::render::RgbImageMut;
use crate::rng::Rng;
use crate::{Error, Result};

const SIZE: usize = ALIGNED_SIZE_PX;
/// Rows from which the pasted part may start: between the nose bridge and the nose tip.
const FIRST_ROW: std::ops::Range<f32> = 60.0..70.0;
/// Rows over which the paste fades in.
const BLEND_ROWS: f32 = 4.0;

/// Aligned crops of real masked faces to transplant.
pub struct RealMasks {
    crops: Vec<Vec<u8>>,
}

impl RealMasks {
    /// From aligned 112x112 RGB crops of masked faces. Crops whose lower half is partly
    /// padding (black beyond the photo's edge: more than 5% of its pixels) are left out;
    /// an error when no crop is left.
    pub fn new(crops: impl IntoIterator<Item = Vec<u8>>) -> Result<Self> {
        let mut kept = Vec::new();
        for crop in crops {
            if crop.len() != SIZE * SIZE * 3 {
                return Err(Error::Shape { width: SIZE, height: SIZE, bytes: crop.len() });
            }
            let lower = &crop[SIZE / 2 * SIZE * 3..];
            let black = lower.chunks_exact(3).filter(|p| p.iter().map(|&v| u32::from(v)).sum::<u32>() < 6).count();
            if black * 20 <= lower.len() / 3 {
                kept.push(crop);
            }
        }
        if kept.is_empty() {
            return Err(Error::NoRealMasks("every crop's lower half is padding"));
        }
        Ok(Self { crops: kept })
    }

    /// The crops kept, 112x112 RGB each.
    pub fn crops(&self) -> &[Vec<u8>] {
        &self.crops
    }

    /// Crops kept.
    pub fn len(&self) -> usize {
        self.crops.len()
    }

    /// Whether none was kept (never: `new` refuses that).
    pub fn is_empty(&self) -> bool {
        self.crops.is_empty()
    }

    /// Pastes the lower part of one crop, chosen by `rng`, over the aligned face `image`
    /// from a row between 60 and 70, faded in over 4 rows, mirrored half the time.
    pub(crate) fn transplant(&self, image: &mut RgbImageMut<'_>, rng: &mut Rng) -> Result<OcclusionMap> {
        if (image.width, image.height) != (SIZE, SIZE) {
            return Err(Error::Shape { width: image.width, height: image.height, bytes: image.data.len() });
        }
        let crop = &self.crops[rng.below(self.crops.len())];
        let first = rng.range(FIRST_ROW.start, FIRST_ROW.end);
        let mirrored = rng.chance(0.5);
        let mut map = OcclusionMap::empty(SIZE, SIZE);
        for y in first.floor() as usize..SIZE {
            let a = ((y as f32 + 0.5 - first) / BLEND_ROWS).clamp(0.0, 1.0);
            if a <= 0.0 {
                continue;
            }
            for x in 0..SIZE {
                let from = (y * SIZE + if mirrored { SIZE - 1 - x } else { x }) * 3;
                let to = (y * SIZE + x) * 3;
                for k in 0..3 {
                    let face = f32::from(image.data[to + k]);
                    image.data[to + k] = (face + (f32::from(crop[from + k]) - face) * a).round() as u8;
                }
                map.coverage[y * SIZE + x] = a;
            }
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_face_is_replaced_and_padding_crops_are_left_out() {
        let real = vec![200u8; SIZE * SIZE * 3];
        let mut padded = vec![200u8; SIZE * SIZE * 3];
        padded[SIZE * SIZE * 3 - SIZE * 3 * 20..].fill(0); // 20 black rows at the bottom
        let masks = RealMasks::new([real, padded]).unwrap();
        assert_eq!(masks.len(), 1);
        assert!(RealMasks::new([vec![0u8; SIZE * SIZE * 3]]).is_err());
        assert!(RealMasks::new([vec![0u8; 10]]).is_err());

        let mut face = vec![50u8; SIZE * SIZE * 3];
        let map = masks.transplant(&mut RgbImageMut::new(SIZE, SIZE, &mut face).unwrap(), &mut Rng::new(3)).unwrap();
        for y in [0, 40, 59] {
            assert_eq!(map.coverage[y * SIZE + 50], 0.0);
            assert_eq!(face[(y * SIZE + 50) * 3], 50, "row {y} untouched");
        }
        for y in [75, 111] {
            assert_eq!(map.coverage[y * SIZE + 50], 1.0);
            assert_eq!(face[(y * SIZE + 50) * 3], 200, "row {y} is the real crop's");
        }
    }
}
