//! Anti-aliased polygon coverage, a mask layer over a pixel window, blur and compositing.

use crate::geometry::Point;

/// Vertical samples per pixel row; horizontal coverage is exact at span ends.
const SUBROWS: usize = 4;

/// A window of an image: `[x0, x1) x [y0, y1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
}

impl Window {
    /// The bounding box of `points` grown by `margin`, clipped to a `width` x `height` image.
    pub fn around(points: &[Point], margin: f32, width: usize, height: usize) -> Option<Window> {
        let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
        for p in points {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        let clip = |v: f32, max: usize| (v.max(0.0) as usize).min(max);
        let w = Window {
            x0: clip((lo[0] - margin).floor(), width),
            y0: clip((lo[1] - margin).floor(), height),
            x1: clip((hi[0] + margin).ceil() + 1.0, width),
            y1: clip((hi[1] + margin).ceil() + 1.0, height),
        };
        (w.x1 > w.x0 && w.y1 > w.y0).then_some(w)
    }

    pub fn width(&self) -> usize {
        self.x1 - self.x0
    }

    pub fn height(&self) -> usize {
        self.y1 - self.y0
    }
}

/// Coverage (0..1, even-odd rule) of `polygon` over the pixels of `window`, row-major.
pub fn polygon_coverage(polygon: &[Point], window: Window, out: &mut Vec<f32>) {
    out.clear();
    out.resize(window.width() * window.height(), 0.0);
    let n = polygon.len();
    if n < 3 {
        return;
    }
    let mut crossings: Vec<f32> = Vec::with_capacity(16);
    let weight = 1.0 / SUBROWS as f32;
    for row in 0..window.height() {
        let line = &mut out[row * window.width()..(row + 1) * window.width()];
        for sub in 0..SUBROWS {
            let y = (window.y0 + row) as f32 + (sub as f32 + 0.5) / SUBROWS as f32;
            crossings.clear();
            for i in 0..n {
                let (a, b) = (polygon[i], polygon[(i + 1) % n]);
                if (a[1] <= y) != (b[1] <= y) {
                    crossings.push(a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]));
                }
            }
            crossings.sort_by(f32::total_cmp);
            for span in crossings.chunks_exact(2) {
                let (l, r) = (span[0] - window.x0 as f32, span[1] - window.x0 as f32);
                add_span(line, l, r, weight);
            }
        }
    }
}

/// Adds `weight` times the covered fraction of each pixel between x = l and x = r.
fn add_span(line: &mut [f32], l: f32, r: f32, weight: f32) {
    let width = line.len() as f32;
    let (l, r) = (l.clamp(0.0, width), r.clamp(0.0, width));
    if r <= l {
        return;
    }
    let (li, ri) = (l.floor() as usize, r.floor() as usize);
    if li == ri {
        line[li] += weight * (r - l);
        return;
    }
    line[li] += weight * (li as f32 + 1.0 - l);
    for v in &mut line[li + 1..ri] {
        *v += weight;
    }
    if ri < line.len() {
        line[ri] += weight * (r - ri as f32);
    }
}

/// The mask being drawn: straight (not premultiplied) RGB in 0..255 and alpha in 0..1 over
/// a window of the image.
pub struct Layer {
    pub window: Window,
    pub rgb: Vec<[f32; 3]>,
    pub alpha: Vec<f32>,
}

impl Layer {
    pub fn new(window: Window) -> Self {
        let n = window.width() * window.height();
        Self { window, rgb: vec![[0.0; 3]; n], alpha: vec![0.0; n] }
    }

    /// Paints `colour(x, y)` (image pixel centre) where `coverage` says, over what is there.
    pub fn paint(&mut self, coverage: &[f32], mut colour: impl FnMut(f32, f32) -> [f32; 3]) {
        let w = self.window.width();
        for (i, &c) in coverage.iter().enumerate() {
            let c = c.min(1.0);
            if c <= 0.0 {
                continue;
            }
            let x = (self.window.x0 + i % w) as f32 + 0.5;
            let y = (self.window.y0 + i / w) as f32 + 0.5;
            let col = colour(x, y);
            let a = self.alpha[i];
            let out_a = c + a * (1.0 - c);
            for (dst, src) in self.rgb[i].iter_mut().zip(col) {
                *dst = (src * c + *dst * a * (1.0 - c)) / out_a;
            }
            self.alpha[i] = out_a;
        }
    }

    /// Box blur of the colour (not of the edges' alpha) with radius `r` pixels, so that
    /// textures and seams are not pixel-sharp. Only covered pixels are averaged.
    pub fn blur_colour(&mut self, r: usize) {
        if r == 0 {
            return;
        }
        let (w, h) = (self.window.width(), self.window.height());
        let rows = box_pass(&self.rgb, &self.alpha, r, h, w, |line, i| line * w + i);
        self.rgb = box_pass(&rows, &self.alpha, r, w, h, |line, i| i * w + line);
    }
}

/// One separable pass: `lines` lines of `len` pixels; `index(line, i)` finds pixel i of a line.
fn box_pass(
    rgb: &[[f32; 3]],
    alpha: &[f32],
    r: usize,
    lines: usize,
    len: usize,
    index: impl Fn(usize, usize) -> usize,
) -> Vec<[f32; 3]> {
    let mut out = rgb.to_vec();
    for line in 0..lines {
        for i in 0..len {
            let (mut sum, mut n) = ([0f32; 3], 0.0);
            for j in i.saturating_sub(r)..=(i + r).min(len - 1) {
                let k = index(line, j);
                if alpha[k] > 0.0 {
                    (0..3).for_each(|c| sum[c] += rgb[k][c]);
                    n += 1.0;
                }
            }
            if n > 0.0 {
                out[index(line, i)] = sum.map(|s| s / n);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_square_covers_its_pixels_and_half_pixels_at_its_edges() {
        let square = [[1.0, 1.0], [3.5, 1.0], [3.5, 3.0], [1.0, 3.0]];
        let window = Window { x0: 0, y0: 0, x1: 5, y1: 4 };
        let mut cov = Vec::new();
        polygon_coverage(&square, window, &mut cov);
        let at = |x: usize, y: usize| cov[y * 5 + x];
        assert_eq!(at(1, 1), 1.0);
        assert_eq!(at(2, 2), 1.0);
        assert!((at(3, 1) - 0.5).abs() < 1e-6, "half pixel at x = 3.5");
        assert_eq!(at(0, 0), 0.0);
        assert_eq!(at(4, 2), 0.0);
        let total: f32 = cov.iter().sum();
        assert!((total - 2.5 * 2.0).abs() < 1e-4, "area {total}");
    }

    #[test]
    fn window_is_clipped_to_the_image() {
        let w = Window::around(&[[-10.0, -10.0], [500.0, 3.0]], 2.0, 100, 50).unwrap();
        assert_eq!((w.x0, w.y0, w.x1, w.y1), (0, 0, 100, 6));
        assert!(Window::around(&[[200.0, 200.0], [300.0, 300.0]], 1.0, 100, 50).is_none());
    }
}
