//! Where a mask goes: the face frame fitted to the five landmarks, the mean face contour in
//! the 112x112 template frame, and polygon helpers.

use maskid_core::{similarity_transform, Landmarks5, ALIGNMENT_TEMPLATE};

use crate::{Error, Result};

/// A point.
pub type Point = [f32; 2];

/// Half-width of the mean face at template height `y`: the jaw line from the cheekbones
/// (y 60) down to the chin (y 112), symmetric about x = 56. Measured on the standard
/// template's proportions (eye distance 35 px, mouth at y 92).
pub fn jaw_half_width(y: f32) -> f32 {
    const TABLE: [(f32, f32); 9] = [
        (56.0, 38.5),
        (66.0, 38.0),
        (76.0, 36.5),
        (86.0, 33.5),
        (94.0, 29.5),
        (100.0, 25.0),
        (106.0, 18.5),
        (110.0, 11.0),
        (113.0, 0.0),
    ];
    if y <= TABLE[0].0 {
        return TABLE[0].1;
    }
    for w in TABLE.windows(2) {
        let ((y0, h0), (y1, h1)) = (w[0], w[1]);
        if y <= y1 {
            return h0 + (h1 - h0) * (y - y0) / (y1 - y0);
        }
    }
    0.0
}

/// The face's frame: template coordinates -> image pixels. An affine fit of the template's
/// five points to the landmarks (roll, scale, the squash of a turned head) plus a shift of
/// the face's middle towards where the nose really is (yaw moves the nose and chin more
/// than the cheek edges).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaceFrame {
    m: [[f32; 3]; 2],
    inverse: [[f32; 3]; 2],
    nose_shift: Point,
    /// Image pixels per template unit.
    pub scale: f32,
}

impl FaceFrame {
    /// Fits the frame to landmarks in image pixels.
    pub fn fit(landmarks: &Landmarks5) -> Result<Self> {
        let src = ALIGNMENT_TEMPLATE;
        let dst = landmarks.0;
        if dst.iter().flatten().any(|v| !v.is_finite()) {
            return Err(Error::Landmarks("not finite"));
        }
        let spread = {
            let (mx, my) = (dst.iter().map(|p| p[0]).sum::<f32>() / 5.0, dst.iter().map(|p| p[1]).sum::<f32>() / 5.0);
            dst.iter().map(|p| (p[0] - mx).powi(2) + (p[1] - my).powi(2)).sum::<f32>()
        };
        if spread < 1e-3 {
            return Err(Error::Landmarks("all five points coincide"));
        }
        let m = affine_fit(&src, &dst).or_else(|| similarity_fit(&src, &dst)).ok_or(Error::Landmarks("no fit"))?;
        let inverse = invert(&m).ok_or(Error::Landmarks("they span no area"))?;
        let scale = (m[0][0] * m[1][1] - m[0][1] * m[1][0]).abs().sqrt();
        let predicted = apply(&m, src[2]);
        // Only a part of the nose's residual is yaw; cap it at a quarter of the face width.
        let cap = 0.25 * 72.0 * scale;
        let nose_shift =
            [(dst[2][0] - predicted[0]).clamp(-cap, cap), (dst[2][1] - predicted[1]).clamp(-cap, cap) * 0.3];
        Ok(Self { m, inverse, nose_shift, scale })
    }

    /// Template point -> image pixel.
    pub fn to_image(&self, p: Point) -> Point {
        let q = apply(&self.m, p);
        let weight = (1.0 - (p[0] - 56.0).abs() / 44.0).max(0.0);
        [q[0] + self.nose_shift[0] * weight, q[1] + self.nose_shift[1] * weight]
    }

    /// Image pixel -> template point (the affine part only; for texture coordinates).
    pub fn to_template(&self, q: Point) -> Point {
        apply(&self.inverse, q)
    }
}

fn apply(m: &[[f32; 3]; 2], p: Point) -> Point {
    [m[0][0] * p[0] + m[0][1] * p[1] + m[0][2], m[1][0] * p[0] + m[1][1] * p[1] + m[1][2]]
}

fn invert(m: &[[f32; 3]; 2]) -> Option<[[f32; 3]; 2]> {
    let [[a, b, c], [d, e, f]] = *m;
    let det = a * e - b * d;
    if det.abs() < 1e-6 || !det.is_finite() {
        return None;
    }
    let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
    Some([[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]])
}

/// Least-squares affine map of `src` onto `dst`; `None` when the normal equations are
/// singular (collinear landmarks).
fn affine_fit(src: &[Point; 5], dst: &[Point; 5]) -> Option<[[f32; 3]; 2]> {
    // Normal equations with X = [x y 1], in f64 for stability.
    let mut xtx = [[0f64; 3]; 3];
    let mut xtu = [0f64; 3];
    let mut xtv = [0f64; 3];
    for (s, d) in src.iter().zip(dst) {
        let row = [f64::from(s[0]), f64::from(s[1]), 1.0];
        for i in 0..3 {
            for j in 0..3 {
                xtx[i][j] += row[i] * row[j];
            }
            xtu[i] += row[i] * f64::from(d[0]);
            xtv[i] += row[i] * f64::from(d[1]);
        }
    }
    let inv = invert3(&xtx)?;
    let solve = |b: &[f64; 3]| -> [f32; 3] {
        std::array::from_fn(|i| (inv[i][0] * b[0] + inv[i][1] * b[1] + inv[i][2] * b[2]) as f32)
    };
    let m = [solve(&xtu), solve(&xtv)];
    // A fit that mirrors the face or squashes it flat is not a face: fall back.
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let sim = similarity_fit(src, dst)?;
    let sim_det = sim[0][0] * sim[1][1] - sim[0][1] * sim[1][0];
    (det > 0.25 * sim_det).then_some(m)
}

fn invert3(a: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0]);
    if det.abs() < 1e-9 {
        return None;
    }
    let c = |r0: usize, c0: usize, r1: usize, c1: usize| a[r0][c0] * a[r1][c1] - a[r0][c1] * a[r1][c0];
    Some([
        [c(1, 1, 2, 2) / det, -c(0, 1, 2, 2) / det, c(0, 1, 1, 2) / det],
        [-c(1, 0, 2, 2) / det, c(0, 0, 2, 2) / det, -c(0, 0, 1, 2) / det],
        [c(1, 0, 2, 1) / det, -c(0, 0, 2, 1) / det, c(0, 0, 1, 1) / det],
    ])
}

/// The least-squares similarity of `maskid_core` (defined for collinear points), in f32.
fn similarity_fit(src: &[Point; 5], dst: &[Point; 5]) -> Option<[[f32; 3]; 2]> {
    let m = similarity_transform(src, dst)?.0;
    Some(m.map(|row| row.map(|v| v as f32)))
}

/// A polygon approximating an ellipse (`n` vertices), without trigonometry so that it is the
/// same on every machine: the vertices come from a rational parametrisation of the circle.
pub fn ellipse(center: Point, rx: f32, ry: f32, n: usize) -> Vec<Point> {
    (0..n)
        .map(|i| {
            // t in (-1, 1] traces half the circle via ((1-t^2), 2t)/(1+t^2); two halves.
            let k = (i % (n / 2)) as f32 / (n / 2) as f32;
            let t = 2.0 * k - 1.0;
            let d = 1.0 + t * t;
            let (c, s) = ((1.0 - t * t) / d, 2.0 * t / d);
            let sign = if i < n / 2 { 1.0 } else { -1.0 };
            [center[0] + sign * rx * c, center[1] + sign * ry * s]
        })
        .collect()
}

/// A rectangle with rounded ends from `a` to `b`, `width` wide.
pub fn capsule(a: Point, b: Point, width: f32) -> Vec<Point> {
    let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
    let len = (dx * dx + dy * dy).sqrt().max(1e-3);
    let (nx, ny) = (-dy / len * width / 2.0, dx / len * width / 2.0);
    let (ux, uy) = (dx / len * width / 2.0, dy / len * width / 2.0);
    vec![
        [a[0] + nx, a[1] + ny],
        [a[0] - ux * 0.7 + nx * 0.7, a[1] - uy * 0.7 + ny * 0.7],
        [a[0] - ux, a[1] - uy],
        [a[0] - ux * 0.7 - nx * 0.7, a[1] - uy * 0.7 - ny * 0.7],
        [a[0] - nx, a[1] - ny],
        [b[0] - nx, b[1] - ny],
        [b[0] + ux * 0.7 - nx * 0.7, b[1] + uy * 0.7 - ny * 0.7],
        [b[0] + ux, b[1] + uy],
        [b[0] + ux * 0.7 + nx * 0.7, b[1] + uy * 0.7 + ny * 0.7],
        [b[0] + nx, b[1] + ny],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_landmarks_give_the_identity_frame() {
        let frame = FaceFrame::fit(&Landmarks5(ALIGNMENT_TEMPLATE)).unwrap();
        for p in [[10.0, 20.0], [56.0, 100.0]] {
            let q = frame.to_image(p);
            assert!((q[0] - p[0]).abs() < 1e-3 && (q[1] - p[1]).abs() < 1e-3, "{q:?}");
        }
        assert!((frame.scale - 1.0).abs() < 1e-4);
    }

    #[test]
    fn a_turned_head_moves_the_chin_with_the_nose() {
        let mut lm = ALIGNMENT_TEMPLATE;
        lm[2][0] += 8.0; // nose turned to the right
        let frame = FaceFrame::fit(&Landmarks5(lm)).unwrap();
        let chin = frame.to_image([56.0, 112.0]);
        let cheek = frame.to_image([17.0, 70.0]);
        assert!(chin[0] > 57.0, "chin follows the nose: {chin:?}");
        assert!((cheek[0] - 17.0).abs() < 2.5, "cheek edge moves less: {cheek:?}");
    }

    #[test]
    fn degenerate_landmarks() {
        assert!(FaceFrame::fit(&Landmarks5([[3.0, 3.0]; 5])).is_err());
        assert!(FaceFrame::fit(&Landmarks5([[f32::NAN, 0.0]; 5])).is_err());
        let line = Landmarks5([[0.0, 0.0], [10.0, 0.0], [5.0, 0.0], [2.0, 0.0], [8.0, 0.0]]);
        // Collinear: the similarity fallback still places a (flat) frame... which has no
        // area to invert only if the scale is zero; here it has one.
        assert!(FaceFrame::fit(&line).is_ok());
    }

    #[test]
    fn ellipse_points_lie_on_the_ellipse() {
        for p in ellipse([10.0, 20.0], 5.0, 3.0, 24) {
            let r = ((p[0] - 10.0) / 5.0).powi(2) + ((p[1] - 20.0) / 3.0).powi(2);
            assert!((r - 1.0).abs() < 1e-4, "{p:?}");
        }
    }

    #[test]
    fn jaw_narrows_to_the_chin() {
        assert!(jaw_half_width(60.0) > jaw_half_width(100.0));
        assert_eq!(jaw_half_width(120.0), 0.0);
    }
}
