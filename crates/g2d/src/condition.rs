//! Photo conditions for the student's view: low resolution, blur, dim or harsh light, colour
//! casts and sensor noise. On rmfrd-dev, real masked photos with their mask greyed out keep
//! far less identity than the same people's unmasked photos greyed the same way (models/
//! README.md, "Real masks"): the points go with the photo, not the mask. The student sees a
//! share of its occluded faces so degraded while the teacher's target stays the clean face's,
//! so it learns to find identity through them.

use maskid_core::ALIGNED_SIZE_PX;
use maskid_mask::Rng;

const SIZE: usize = ALIGNED_SIZE_PX;

/// Degrades an aligned 112x112 RGB face in place, every draw from `rng`: half the time
/// shrunk to 30-80% and enlarged back (bilinear), a third of the time box-blurred, then light
/// (gain 0.5-1.3, contrast 0.6-1.2, gamma 0.7-1.5, each channel 0.9-1.1) and noise (up to 8
/// levels).
pub fn degrade(rgb: &mut [u8], rng: &mut Rng) {
    assert_eq!(rgb.len(), SIZE * SIZE * 3, "BUG: an aligned face");
    let mut pixels: Vec<f32> = rgb.iter().map(|&v| f32::from(v)).collect();
    if rng.chance(0.5) {
        let side = ((SIZE as f32 * rng.range(0.3, 0.8)).round() as usize).max(8);
        pixels = resize(&resize(&pixels, SIZE, side), side, SIZE);
    }
    if rng.chance(1.0 / 3.0) {
        pixels = box_blur(&pixels);
    }
    let (gain, contrast, gamma) = (rng.range(0.5, 1.3), rng.range(0.6, 1.2), rng.range(0.7, 1.5));
    let cast = [rng.range(0.9, 1.1), rng.range(0.9, 1.1), rng.range(0.9, 1.1)];
    let noise = rng.range(0.0, 8.0);
    for (i, (out, v)) in rgb.iter_mut().zip(&pixels).enumerate() {
        let lit = 255.0 * (v / 255.0).clamp(0.0, 1.0).powf(gamma);
        let shaded = (128.0 + (lit - 128.0) * contrast) * gain * cast[i % 3];
        // Roughly normal noise: the sum of three uniforms, centred.
        let grain = noise * (rng.unit() + rng.unit() + rng.unit() - 1.5);
        *out = (shaded + grain).round().clamp(0.0, 255.0) as u8;
    }
}

/// A square RGB image of side `from` resampled to side `to` (bilinear, pixel centres).
fn resize(pixels: &[f32], from: usize, to: usize) -> Vec<f32> {
    let scale = from as f32 / to as f32;
    let mut out = vec![0.0; to * to * 3];
    for y in 0..to {
        let sy = ((y as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
        let (y0, fy) = (sy.floor() as usize, sy.fract());
        let y1 = (y0 + 1).min(from - 1);
        for x in 0..to {
            let sx = ((x as f32 + 0.5) * scale - 0.5).clamp(0.0, (from - 1) as f32);
            let (x0, fx) = (sx.floor() as usize, sx.fract());
            let x1 = (x0 + 1).min(from - 1);
            for c in 0..3 {
                let at = |yy: usize, xx: usize| pixels[(yy * from + xx) * 3 + c];
                let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
                let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
                out[(y * to + x) * 3 + c] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

/// A 3x3 box blur of a 112x112 RGB image (edges replicated).
fn box_blur(pixels: &[f32]) -> Vec<f32> {
    let at = |y: isize, x: isize, c: usize| {
        let (y, x) = (y.clamp(0, SIZE as isize - 1) as usize, x.clamp(0, SIZE as isize - 1) as usize);
        pixels[(y * SIZE + x) * 3 + c]
    };
    let mut out = vec![0.0; pixels.len()];
    for y in 0..SIZE as isize {
        for x in 0..SIZE as isize {
            for c in 0..3 {
                let sum: f32 = (-1..=1)
                    .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                    .map(|(dy, dx)| at(y + dy, x + dx, c))
                    .sum();
                out[(y as usize * SIZE + x as usize) * 3 + c] = sum / 9.0;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn face() -> Vec<u8> {
        (0..SIZE * SIZE * 3).map(|i| ((i / 3 % SIZE) * 2 + (i / 3 / SIZE) % 7 * 9) as u8).collect()
    }

    #[test]
    fn degradation_is_a_pure_function_of_the_seed_and_changes_the_face() {
        let (mut a, mut b, mut c) = (face(), face(), face());
        degrade(&mut a, &mut Rng::new(5));
        degrade(&mut b, &mut Rng::new(5));
        degrade(&mut c, &mut Rng::new(6));
        assert_eq!(a, b);
        assert_ne!(a, c);
        for degraded in [&a, &c] {
            let moved = degraded.iter().zip(face()).filter(|(x, y)| x.abs_diff(*y) > 2).count();
            assert!(moved > degraded.len() / 4, "{moved} of {} values changed", degraded.len());
        }
    }

    #[test]
    fn resizing_keeps_a_flat_image_flat_and_blur_averages() {
        let flat = vec![100.0; SIZE * SIZE * 3];
        let small = resize(&flat, SIZE, 40);
        assert_eq!(small.len(), 40 * 40 * 3);
        assert!(resize(&small, 40, SIZE).iter().all(|v| (v - 100.0).abs() < 1e-3));
        let mut dot = vec![0.0; SIZE * SIZE * 3];
        dot[(50 * SIZE + 50) * 3] = 90.0;
        let blurred = box_blur(&dot);
        assert!((blurred[(50 * SIZE + 51) * 3] - 10.0).abs() < 1e-4);
        assert!((blurred.iter().sum::<f32>() - 90.0).abs() < 1e-3);
    }
}
