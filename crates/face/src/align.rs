//! Alignment onto the 112x112 template of protocols.md: five points (the protocols' and the
//! teacher's), or a subset of them for faces whose lower landmarks are guesses.

use image::RgbImage;
use maskid_core::{Affine, AlignedFace, Landmarks5, ALIGNED_SIZE_PX, ALIGNMENT_TEMPLATE};

use crate::{Error, Result};

/// Least-squares similarity transform taking `src` onto `dst` (see
/// [`maskid_core::similarity_transform`]), with an error saying why there is none.
pub fn similarity_transform(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Result<Affine> {
    maskid_core::similarity_transform(src, dst).ok_or(Error::Landmarks("not finite, or all points coincide"))
}

/// Which of the five landmarks place a face on the template. Under a mask YuNet still sees
/// the eyes, but its nose and mouth points are guesses, so the subsets trust the eyes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Alignment {
    /// All five points, least squares (protocols.md; what the teacher was trained on).
    #[default]
    FivePoint,
    /// The two eyes alone: they fix rotation, scale and position exactly.
    Eyes,
    /// The eyes and the nose tip, least squares.
    EyesNose,
}

impl Alignment {
    /// Every alignment.
    pub const ALL: [Alignment; 3] = [Alignment::FivePoint, Alignment::Eyes, Alignment::EyesNose];

    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Alignment::FivePoint => "five-point",
            Alignment::Eyes => "eyes",
            Alignment::EyesNose => "eyes-nose",
        }
    }

    /// The landmark indices it fits (in the order of [`ALIGNMENT_TEMPLATE`]).
    fn points(self) -> &'static [usize] {
        match self {
            Alignment::FivePoint => &[0, 1, 2, 3, 4],
            Alignment::Eyes => &[0, 1],
            Alignment::EyesNose => &[0, 1, 2],
        }
    }

    /// The map from the photo's pixels to the aligned crop's.
    pub fn to_template(self, landmarks: &Landmarks5) -> Result<Affine> {
        let pick = |points: &[[f32; 2]; 5]| -> Vec<[f32; 2]> { self.points().iter().map(|&i| points[i]).collect() };
        similarity_transform(&pick(&landmarks.0), &pick(&ALIGNMENT_TEMPLATE))
    }
}

impl std::str::FromStr for Alignment {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown alignment `{s}` (allowed: {})", Self::ALL.map(Alignment::name).join(", ")))
    }
}

/// Warps the face with `landmarks` onto the 112x112 template (five points; bilinear, black
/// outside).
pub fn align_face(image: &RgbImage, landmarks: &Landmarks5) -> Result<AlignedFace> {
    align_face_by(image, landmarks, Alignment::FivePoint)
}

/// [`align_face`] with the chosen landmarks.
pub fn align_face_by(image: &RgbImage, landmarks: &Landmarks5, alignment: Alignment) -> Result<AlignedFace> {
    let to_image = alignment.to_template(landmarks)?.inverse().ok_or(Error::Landmarks("singular transform"))?;
    Ok(warp(image, &to_image))
}

/// The fallback of protocols.md for photos without a detected face: a fixed central square
/// (the middle 60% of the shorter side) resized to 112x112.
pub fn central_crop(image: &RgbImage) -> AlignedFace {
    let (w, h) = image.dimensions();
    let side = f64::from(w.min(h)) * 0.6;
    let scale = side / ALIGNED_SIZE_PX as f64;
    let x0 = (f64::from(w) - side) / 2.0;
    let y0 = (f64::from(h) - side) / 2.0;
    warp(image, &Affine([[scale, 0.0, x0 + 0.5 * scale - 0.5], [0.0, scale, y0 + 0.5 * scale - 0.5]]))
}

/// Output pixel (x, y) takes the bilinear sample of `image` at `to_image(x, y)`.
fn warp(image: &RgbImage, to_image: &Affine) -> AlignedFace {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let raw = image.as_raw();
    let mut out = vec![0u8; AlignedFace::BYTES];
    let sample = |x: i64, y: i64, c: usize| -> f64 {
        if x < 0 || y < 0 || x >= w || y >= h {
            0.0
        } else {
            f64::from(raw[((y * w + x) * 3) as usize + c])
        }
    };
    for y in 0..ALIGNED_SIZE_PX {
        for x in 0..ALIGNED_SIZE_PX {
            let [sx, sy] = to_image.apply([x as f64, y as f64]);
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            for c in 0..3 {
                let top = sample(x0, y0, c) * (1.0 - fx) + sample(x0 + 1, y0, c) * fx;
                let bottom = sample(x0, y0 + 1, c) * (1.0 - fx) + sample(x0 + 1, y0 + 1, c) * fx;
                let v = top * (1.0 - fy) + bottom * fy;
                out[(y * ALIGNED_SIZE_PX + x) * 3 + c] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    AlignedFace::from_rgb(out).expect("BUG: buffer has the aligned size")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_a_known_similarity() {
        // dst = 2 * R(30 deg) * src + (5, -3)
        let (c, s) = (30f64.to_radians().cos(), 30f64.to_radians().sin());
        let truth = Affine([[2.0 * c, -2.0 * s, 5.0], [2.0 * s, 2.0 * c, -3.0]]);
        let src = ALIGNMENT_TEMPLATE;
        let dst = src.map(|p| {
            let q = truth.apply([f64::from(p[0]), f64::from(p[1])]);
            [q[0] as f32, q[1] as f32]
        });
        let found = similarity_transform(&src, &dst).unwrap();
        for r in 0..2 {
            for k in 0..3 {
                assert!((found.0[r][k] - truth.0[r][k]).abs() < 1e-3, "{found:?}");
            }
        }
        let back = found.inverse().unwrap().apply(found.apply([10.0, 20.0]));
        assert!((back[0] - 10.0).abs() < 1e-9 && (back[1] - 20.0).abs() < 1e-9);
    }

    #[test]
    fn degenerate_landmarks_are_errors() {
        assert!(similarity_transform(&[[5.0, 5.0]; 5], &ALIGNMENT_TEMPLATE).is_err());
        assert!(similarity_transform(&[[f32::NAN, 0.0]; 5], &ALIGNMENT_TEMPLATE).is_err());
        // Collinear points still define a similarity.
        let line = [[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]];
        assert!(similarity_transform(&line, &ALIGNMENT_TEMPLATE).is_ok());
    }

    #[test]
    fn eye_alignment_puts_the_eyes_on_the_template_whatever_the_mouth() {
        // A face whose mouth points a mask pushed 9 px down and 4 px aside: five-point
        // alignment moves the eyes off the template, eye alignment keeps them exact.
        let mut seen = ALIGNMENT_TEMPLATE.map(|[x, y]| [2.0 * x + 30.0, 2.0 * y + 10.0]);
        for p in &mut seen[3..] {
            *p = [p[0] + 4.0, p[1] + 9.0];
        }
        let landmarks = Landmarks5(seen);
        let eye_error = |alignment: Alignment| {
            let t = alignment.to_template(&landmarks).unwrap();
            (0..2)
                .map(|i| {
                    let q = t.apply([f64::from(seen[i][0]), f64::from(seen[i][1])]);
                    (q[0] - f64::from(ALIGNMENT_TEMPLATE[i][0])).hypot(q[1] - f64::from(ALIGNMENT_TEMPLATE[i][1]))
                })
                .fold(0.0, f64::max)
        };
        assert!(eye_error(Alignment::Eyes) < 1e-3);
        assert!(eye_error(Alignment::FivePoint) > 0.5, "{}", eye_error(Alignment::FivePoint));
        assert!(eye_error(Alignment::EyesNose) < eye_error(Alignment::FivePoint));
        // Undisturbed landmarks align the same way whichever points are fitted.
        let clean = Landmarks5(ALIGNMENT_TEMPLATE.map(|[x, y]| [2.0 * x + 30.0, 2.0 * y + 10.0]));
        let image = RgbImage::from_fn(300, 300, |x, y| image::Rgb([x as u8, y as u8, (x ^ y) as u8]));
        let five = align_face(&image, &clean).unwrap();
        for alignment in [Alignment::Eyes, Alignment::EyesNose] {
            let other = align_face_by(&image, &clean, alignment).unwrap();
            // Equal up to the rounding of two least-squares fits.
            let most = other.rgb().iter().zip(five.rgb()).map(|(a, b)| a.abs_diff(*b)).max();
            assert!(most <= Some(1), "{alignment:?}: {most:?}");
        }
        assert_eq!("eyes-nose".parse::<Alignment>(), Ok(Alignment::EyesNose));
        assert!("nose".parse::<Alignment>().unwrap_err().contains("five-point, eyes, eyes-nose"));
    }

    #[test]
    fn template_landmarks_align_to_the_identity() {
        let image = RgbImage::from_fn(112, 112, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let face = align_face(&image, &Landmarks5(ALIGNMENT_TEMPLATE)).unwrap();
        assert_eq!(face.rgb(), image.as_raw().as_slice());
    }

    #[test]
    fn landmarks_outside_the_image_give_a_black_crop_not_a_panic() {
        let image = RgbImage::from_pixel(50, 50, image::Rgb([200, 200, 200]));
        let far = Landmarks5(ALIGNMENT_TEMPLATE.map(|p| [p[0] + 5000.0, p[1] - 5000.0]));
        let face = align_face(&image, &far).unwrap();
        assert!(face.rgb().iter().all(|&v| v == 0));
        assert_eq!(central_crop(&RgbImage::new(1, 1)).rgb().len(), AlignedFace::BYTES);
    }
}
