//! Drawing a mask: outlines placed on the face frame, fabric and shading, soft edges, and
//! compositing into the image with its occlusion map.

use maskid_core::{AlignedFace, Landmarks5, OcclusionMap, ALIGNED_SIZE_PX};

use crate::geometry::{capsule, ellipse, jaw_half_width, FaceFrame, Point};
use crate::raster::{polygon_coverage, Layer, Window};
use crate::rng::{value_noise, Rng};
use crate::style::{MaskSpec, MaskStyle, Texture};
use crate::{Error, Result};

/// An RGB image to draw on: row-major, 3 bytes a pixel.
pub struct RgbImageMut<'a> {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// The pixels.
    pub data: &'a mut [u8],
}

impl<'a> RgbImageMut<'a> {
    /// Wraps RGB bytes; an error when the length does not match.
    pub fn new(width: usize, height: usize, data: &'a mut [u8]) -> Result<Self> {
        if data.len() != width * height * 3 || width == 0 || height == 0 {
            return Err(Error::Shape { width, height, bytes: data.len() });
        }
        Ok(Self { width, height, data })
    }

    fn pixel(&self, p: Point) -> Option<[f32; 3]> {
        let (x, y) = (p[0].floor(), p[1].floor());
        if x < 0.0 || y < 0.0 || x >= self.width as f32 || y >= self.height as f32 {
            return None;
        }
        let i = (y as usize * self.width + x as usize) * 3;
        Some([f32::from(self.data[i]), f32::from(self.data[i + 1]), f32::from(self.data[i + 2])])
    }
}

/// How a part of a mask is coloured.
#[derive(Clone, Copy)]
enum Paint {
    /// The mask's fabric (colour, texture, pleats, seam or dome by style).
    Fabric,
    /// The accent colour, flat (valves, ear loops).
    Accent(f32),
    /// The main colour darkened by the factor (straps, a respirator's valve cover).
    Body(f32),
    /// A round filter cartridge: a dark rim, a face lit from above, a grille of rings.
    Cartridge { centre: Point, radius: f32 },
    /// Skin of a finger from `base` to `tip`: round (darker at the sides, dark in the gaps
    /// between fingers), with knuckle creases and a nail.
    Finger { base: Point, tip: Point, half_width: f32 },
    /// Skin of the back of the hand.
    Palm,
    /// One flat colour (free-form occluders).
    Flat([f32; 3]),
}

struct Part {
    outline: Vec<Point>,
    paint: Paint,
}

/// Light on the face, read from the visible upper face.
struct Lighting {
    brightness: f32,
    side: f32,
    skin: [f32; 3],
}

fn lighting(image: &RgbImageMut<'_>, frame: &FaceFrame) -> Lighting {
    let mean = |x0: f32, x1: f32, y0: f32, y1: f32| -> Option<[f32; 3]> {
        let (mut sum, mut n) = ([0f32; 3], 0.0);
        let mut y = y0;
        while y <= y1 {
            let mut x = x0;
            while x <= x1 {
                if let Some(p) = image.pixel(frame.to_image([x, y])) {
                    (0..3).for_each(|k| sum[k] += p[k]);
                    n += 1.0;
                }
                x += 3.0;
            }
            y += 3.0;
        }
        (n > 0.0).then(|| sum.map(|s| s / n))
    };
    let luma = |c: [f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    let upper = mean(28.0, 84.0, 40.0, 72.0).unwrap_or([128.0; 3]);
    let left = mean(24.0, 48.0, 55.0, 75.0).map_or(128.0, luma);
    let right = mean(64.0, 88.0, 55.0, 75.0).map_or(128.0, luma);
    let cheeks = mean(30.0, 44.0, 62.0, 74.0).zip(mean(68.0, 82.0, 62.0, 74.0));
    let skin = cheeks.map_or([200.0, 160.0, 140.0], |(a, b)| std::array::from_fn(|k| (a[k] + b[k]) / 2.0));
    Lighting {
        brightness: (luma(upper) / 140.0).clamp(0.45, 1.15),
        side: ((right - left) / (right + left + 1.0)).clamp(-0.3, 0.3),
        skin,
    }
}

/// Top edge of a face-hugging mask: from cheek to cheek through `top` at the nose.
fn top_edge(top: f32, half: f32, sag: f32, peak: f32, out: &mut Vec<Point>) {
    for i in 0..=10 {
        let x = 56.0 - half + 2.0 * half * i as f32 / 10.0;
        let r = (x - 56.0).abs() / half;
        out.push([x, top + sag * r * r - peak * (1.0 - r)]);
    }
}

/// A mask that follows the jaw `bulge` px outside it, from the top edge down under the chin.
fn jaw_mask(top: f32, sag: f32, peak: f32, bulge: f32, below_chin: f32) -> Vec<Point> {
    let side_top = top + sag;
    let half = jaw_half_width(side_top) + bulge;
    let mut outline = Vec::with_capacity(40);
    top_edge(top, half, sag, peak, &mut outline);
    let mut y = side_top + 4.0;
    let mut right = Vec::new();
    while y < 112.0 {
        right.push([56.0 + jaw_half_width(y) + bulge, y]);
        y += 4.0;
    }
    right.push([56.0 + bulge * 1.5, 112.0 + below_chin * 0.8]);
    outline.extend(right.iter().copied());
    outline.push([56.0, 113.0 + below_chin]);
    outline.extend(right.iter().rev().map(|p| [112.0 - p[0], p[1]]));
    outline
}

fn parts(spec: &MaskSpec, rng: &mut Rng) -> Vec<Part> {
    // A mask worn over the nose sits on the bridge, just under the eyes (the template's eye
    // line is y 51.7, the nose tip y 71.7); worn under the nose, just below the nostrils.
    let top = if spec.nose_covered { rng.range(54.0, 58.0) } else { rng.range(74.0, 77.0) };
    let fabric = |outline| Part { outline, paint: Paint::Fabric };
    let mut parts = match spec.style {
        MaskStyle::Surgical => {
            let mut p = vec![fabric(jaw_mask(top, 5.5, 0.0, rng.range(2.5, 4.5), 4.0))];
            // Ear loops: thin straps from the mask's corners towards the ears.
            let side = 56.0 - jaw_half_width(top + 8.0) - 2.5;
            p.push(Part {
                outline: capsule([side + 1.0, top + 9.0], [side - 12.0, top + 2.0], 1.2),
                paint: Paint::Accent(1.0),
            });
            p.push(Part {
                outline: capsule([side + 3.0, 100.0], [side - 10.0, top + 6.0], 1.2),
                paint: Paint::Accent(1.0),
            });
            let right: Vec<Part> = p[1..]
                .iter()
                .map(|s| Part { outline: s.outline.iter().map(|q| [112.0 - q[0], q[1]]).collect(), paint: s.paint })
                .collect();
            p.extend(right);
            p
        }
        MaskStyle::N95 => {
            let mut p = vec![fabric(jaw_mask(top, 6.0, 3.0, rng.range(3.0, 5.0), 6.0))];
            if spec.valve {
                p.push(Part { outline: ellipse([38.0, 97.0], 7.0, 7.0, 24), paint: Paint::Accent(1.0) });
                p.push(Part { outline: ellipse([38.0, 97.0], 3.5, 3.5, 16), paint: Paint::Accent(0.75) });
            }
            p
        }
        MaskStyle::Cloth => vec![fabric(jaw_mask(top, 5.0, 1.0, rng.range(3.0, 5.0), 5.0))],
        MaskStyle::Gaiter => {
            // A tube of stretch fabric pulled up to the nose: over the cheeks to the ears,
            // down past the jaw and over the whole neck (in a photo it reaches the collar).
            let mut outline = Vec::new();
            let half = rng.range(41.0, 45.0);
            top_edge(top + 1.0, half, 6.0, 0.0, &mut outline);
            let neck = rng.range(33.0, 37.0);
            let right = [
                [56.0 + half + 1.0, top + 12.0],
                [56.0 + half - 2.0, 92.0],
                [56.0 + neck + 3.0, 110.0],
                [56.0 + neck, 126.0],
                [56.0 + neck + 2.0, 146.0],
                [56.0 + neck - 6.0, 150.0],
                [56.0, 152.0],
            ];
            outline.extend(right);
            outline.extend(right.iter().rev().skip(1).map(|p| [112.0 - p[0], p[1]]));
            vec![fabric(outline)]
        }
        MaskStyle::Respirator => {
            // A half-face respirator seals on the nose bridge and the cheekbones: its cup is
            // as wide as the cheeks, the cartridges sit over the jaw, the straps run to the
            // back of the head above and below the ears.
            let cup_top = top.min(58.0);
            let ry = (117.0 - cup_top) / 2.0;
            let cartridge = |x: f32| Part {
                outline: ellipse([x, 100.0], 13.5, 13.5, 32),
                paint: Paint::Cartridge { centre: [x, 100.0], radius: 13.5 },
            };
            vec![
                Part { outline: capsule([30.0, 68.0], [12.0, 62.0], 6.0), paint: Paint::Body(0.7) },
                Part { outline: capsule([82.0, 68.0], [100.0, 62.0], 6.0), paint: Paint::Body(0.7) },
                Part { outline: capsule([30.0, 104.0], [16.0, 116.0], 6.0), paint: Paint::Body(0.7) },
                Part { outline: capsule([82.0, 104.0], [96.0, 116.0], 6.0), paint: Paint::Body(0.7) },
                fabric(ellipse([56.0, cup_top + ry], 31.0, ry, 40)),
                Part { outline: ellipse([56.0, 104.0], 7.5, 6.5, 24), paint: Paint::Body(0.75) },
                cartridge(27.0),
                cartridge(85.0),
            ]
        }
        MaskStyle::Hand => {
            // The back of a left hand coming in from the image's left: four fingers across
            // mouth and chin, the thumb down along the jaw.
            let first = if spec.nose_covered { top + 8.0 } else { top + 2.0 };
            let mut p = vec![Part {
                outline: vec![
                    [-20.0, first - 4.0],
                    [-8.0, first - 6.0],
                    [8.0, first - 6.0],
                    [17.0, first - 2.0],
                    [19.0, first + 8.0],
                    [19.0, first + 22.0],
                    [15.0, first + 32.0],
                    [6.0, first + 42.0],
                    [0.0, 128.0],
                    [-8.0, 150.0],
                    [-28.0, 150.0],
                    [-26.0, first + 10.0],
                ],
                paint: Paint::Palm,
            }];
            // The thumb runs under the jaw towards the chin.
            let thumb = ([6.0, first + 36.0], [38.0 + rng.range(-3.0, 3.0), first + 46.0]);
            p.push(Part {
                outline: capsule(thumb.0, thumb.1, 10.0),
                paint: Paint::Finger { base: thumb.0, tip: thumb.1, half_width: 5.0 },
            });
            for i in 0..4 {
                let axis = first + 1.5 + i as f32 * 9.2;
                let length = [62.0, 68.0, 64.0, 54.0][i] + rng.range(-3.0, 3.0);
                let (base, tip) = ([14.0, axis + 1.5], [14.0 + length, axis - 1.0 + rng.range(-1.0, 1.0)]);
                p.push(Part { outline: capsule(base, tip, 10.0), paint: Paint::Finger { base, tip, half_width: 5.0 } });
            }
            p
        }
    };
    // Slight warp: the whole mask scales and shifts (and may be mirrored), every outline
    // point moves a little more; the points that shading measures from move with the mask.
    let (scale, dx, dy) = (rng.range(0.97, 1.04), rng.range(-1.2, 1.2), rng.range(-1.0, 1.0));
    let warp = |p: Point| {
        let x = 56.0 + (p[0] - 56.0) * scale + dx;
        [if spec.mirrored { 112.0 - x } else { x }, 85.0 + (p[1] - 85.0) * scale + dy]
    };
    for part in &mut parts {
        for p in &mut part.outline {
            let (jx, jy) = (rng.range(-0.8, 0.8), rng.range(-0.8, 0.8));
            *p = warp([p[0] + jx / scale, p[1] + jy / scale]);
        }
        part.paint = match part.paint {
            Paint::Cartridge { centre, radius } => Paint::Cartridge { centre: warp(centre), radius: radius * scale },
            Paint::Finger { base, tip, half_width } => {
                Paint::Finger { base: warp(base), tip: warp(tip), half_width: half_width * scale }
            }
            paint => paint,
        };
    }
    parts
}

fn fract(v: f32) -> f32 {
    v - v.floor()
}

fn fabric_colour(spec: &MaskSpec, u: f32, v: f32) -> [f32; 3] {
    let c = spec.colour.map(f32::from);
    let a = spec.accent.map(f32::from);
    let use_accent = match spec.texture {
        Texture::Solid => false,
        Texture::Stripes { dx, dy, period } => fract((u * dx + v * dy) / period) < 0.5,
        Texture::Checks { period } => ((u / period).floor() + (v / period).floor()) as i64 % 2 == 0,
        Texture::Dots { period, radius } => {
            let (cx, cy) = ((fract(u / period) - 0.5) * period, (fract(v / period) - 0.5) * period);
            cx * cx + cy * cy < radius * radius
        }
        Texture::Floral { scale } => value_noise(u / scale, v / scale, spec.detail_seed) > 0.62,
    };
    // Woven grain.
    let grain = 0.93 + 0.14 * value_noise(u * 0.9, v * 0.9, spec.detail_seed ^ 0x5eed);
    if use_accent { a } else { c }.map(|x| x * grain)
}

/// Shading of the mask at template point (u, v): brightness of the face, the side light, the
/// roundness of the face (darker at the sides and under the chin), and style details.
fn shade(spec: &MaskSpec, light: &Lighting, top: f32, u: f32, v: f32) -> f32 {
    let side = (u - 56.0) / 46.0;
    let mut s = light.brightness * (1.0 + light.side * side) * (1.0 - 0.25 * side * side);
    s *= 1.0 - 0.15 * ((v - 104.0) / 12.0).clamp(0.0, 1.0);
    if spec.nose_covered && spec.style != MaskStyle::Hand {
        let ridge = (1.0 - (u - 56.0).abs() / 9.0).max(0.0) * (1.0 - (v - top - 8.0).abs() / 10.0).max(0.0);
        s *= 1.0 + 0.12 * ridge;
    }
    match spec.style {
        MaskStyle::Surgical => {
            // Three pleats: a dark fold line with a highlight just below.
            let span = 108.0 - top;
            for t in [0.32, 0.52, 0.72] {
                let d = v - (top + 4.0 + t * span);
                if (-1.0..0.4).contains(&d) {
                    s *= 0.8;
                } else if (0.4..2.0).contains(&d) {
                    s *= 1.06;
                }
            }
        }
        MaskStyle::N95 if (u - 56.0).abs() < 0.8 => s *= 0.82,
        MaskStyle::Gaiter => {
            // Horizontal folds, gentle over the face and bunched on the neck, and the shadow
            // where the fabric leaves the chin.
            let (period, depth) = if v > 110.0 { (5.5, 0.24) } else { (8.0, 0.1) };
            let t = (2.0 * fract(v / period + 0.35 * value_noise(u / 14.0, v / 30.0, spec.detail_seed)) - 1.0).abs();
            s *= 1.0 - depth + depth * t * t * (3.0 - 2.0 * t);
            if (112.0..122.0).contains(&v) {
                s *= 0.85;
            }
        }
        MaskStyle::Respirator => {
            // A rubber dome: brightest where it faces the camera, a soft highlight up and
            // towards the light.
            let (du, dv) = ((u - 56.0) / 31.0, (v - 86.5) / 30.5);
            let facing = (1.0 - du * du - dv * dv).max(0.0).sqrt();
            let (hu, hv) = (du + 0.3 - light.side, dv + 0.45);
            s *= 0.55 + 0.5 * facing + 0.35 * (1.0 - (hu * hu + hv * hv) / 0.06).max(0.0);
        }
        _ => {}
    }
    s
}

/// A hand's skin from the face's: a little warmer and more saturated (hands are redder than
/// cheeks in photos, and a grey hand reads as a block).
fn hand_skin(face: [f32; 3]) -> [f32; 3] {
    let mean = (face[0] + face[1] + face[2]) / 3.0;
    let warm = [1.03, 0.99, 0.97];
    std::array::from_fn(|k| ((mean + (face[k] - mean) * 1.1) * warm[k]).clamp(0.0, 255.0))
}

/// Skin of a finger at (u, v): a cylinder lit from the front, dark where it meets the next
/// finger, with two knuckle creases and a paler nail at the tip.
fn finger_colour(skin: [f32; 3], base: Point, tip: Point, half_width: f32, u: f32, v: f32) -> [f32; 3] {
    let (ax, ay) = (tip[0] - base[0], tip[1] - base[1]);
    let len = (ax * ax + ay * ay).sqrt().max(1e-3);
    let along = ((u - base[0]) * ax + (v - base[1]) * ay) / len;
    let t = along.clamp(0.0, len);
    let (px, py) = (base[0] + ax * t / len, base[1] + ay * t / len);
    let d = (((u - px) * (u - px) + (v - py) * (v - py)).sqrt() / half_width).min(1.0);
    let mut k = 1.04 - 0.3 * d * d - 1.6 * (d - 0.85).max(0.0);
    for crease in [0.4, 0.68] {
        if (along - crease * len).abs() < 0.6 {
            k *= 0.86;
        }
    }
    let nail = along > len - 0.9 * half_width && d < 0.65;
    if nail { skin.map(|c| c * 0.6 + 95.0) } else { skin }.map(|c| c * k)
}

/// A masked copy of an aligned face (`landmarks` in crop pixels) and what the mask covers.
pub fn mask_face(face: &AlignedFace, landmarks: &Landmarks5, spec: &MaskSpec) -> Result<(AlignedFace, OcclusionMap)> {
    let mut rgb = face.rgb().to_vec();
    let map = render_mask(&mut RgbImageMut::new(ALIGNED_SIZE_PX, ALIGNED_SIZE_PX, &mut rgb)?, landmarks, spec)?;
    Ok((AlignedFace::from_rgb(rgb).expect("BUG: same size"), map))
}

/// Draws the mask of `spec` on the face with `landmarks` (image pixels) and returns what it
/// covers. The same spec, landmarks and image give the same bytes on every machine.
pub fn render_mask(image: &mut RgbImageMut<'_>, landmarks: &Landmarks5, spec: &MaskSpec) -> Result<OcclusionMap> {
    let frame = FaceFrame::fit(landmarks)?;
    let mut rng = Rng::new(spec.detail_seed);
    let light = lighting(image, &frame);
    let parts = parts(spec, &mut rng);
    let top = if spec.nose_covered { 56.0 } else { 75.0 };
    let skin = hand_skin(light.skin);
    paint_parts(image, &frame, &parts, |paint, u, v| match paint {
        Paint::Fabric => fabric_colour(spec, u, v).map(|c| c * shade(spec, &light, top, u, v)),
        Paint::Accent(k) => spec.accent.map(|c| f32::from(c) * k * light.brightness),
        Paint::Body(k) => spec.colour.map(|c| f32::from(c) * k * light.brightness),
        Paint::Cartridge { centre, radius } => {
            let (du, dv) = ((u - centre[0]) / radius, (v - centre[1]) / radius);
            let d = (du * du + dv * dv).sqrt();
            let k = if d > 0.8 {
                0.6 + 0.25 * (-dv).max(0.0) // the rim, lit on top
            } else if fract(d * 3.6) < 0.3 {
                0.72 // grille rings
            } else {
                1.0 - 0.25 * dv.max(0.0) - 0.1 * d
            };
            spec.accent.map(|c| f32::from(c) * k * light.brightness * (1.0 + 0.5 * light.side * du))
        }
        Paint::Palm => {
            // Darker away from the knuckles, towards the wrist and the hand's far edge.
            let edge = if u < 56.0 { u } else { 112.0 - u };
            let k = 1.02 - 0.25 * ((18.0 - edge) / 40.0).clamp(0.0, 1.0) - 0.2 * ((v - 96.0) / 50.0).clamp(0.0, 1.0);
            skin.map(|c| c * k)
        }
        Paint::Finger { base, tip, half_width } => finger_colour(skin, base, tip, half_width, u, v),
        Paint::Flat(c) => c,
    })
}

/// Rasterises `parts` (template outlines) on the image through `frame`, blurs the colour
/// slightly, composites, and returns the coverage as an occlusion map.
fn paint_parts(
    image: &mut RgbImageMut<'_>,
    frame: &FaceFrame,
    parts: &[Part],
    colour: impl Fn(Paint, f32, f32) -> [f32; 3],
) -> Result<OcclusionMap> {
    let (width, height) = (image.width, image.height);
    let mut map = OcclusionMap::empty(width, height);
    let outlines: Vec<Vec<Point>> =
        parts.iter().map(|p| p.outline.iter().map(|q| frame.to_image(*q)).collect()).collect();
    let all: Vec<Point> = outlines.iter().flatten().copied().collect();
    let Some(window) = Window::around(&all, 1.0, width, height) else {
        return Ok(map); // the mask falls outside the image
    };
    let mut layer = Layer::new(window);
    let mut coverage = Vec::new();
    for (part, outline) in parts.iter().zip(&outlines) {
        polygon_coverage(outline, window, &mut coverage);
        layer.paint(&coverage, |x, y| match part.paint {
            Paint::Flat(c) => c,
            paint => {
                let [u, v] = frame.to_template([x, y]);
                colour(paint, u, v)
            }
        });
    }
    layer.blur_colour((0.6 * frame.scale).round().max(1.0) as usize);
    let w = window.width();
    for (i, (&a, rgb)) in layer.alpha.iter().zip(&layer.rgb).enumerate() {
        if a <= 0.0 {
            continue;
        }
        let (x, y) = (window.x0 + i % w, window.y0 + i / w);
        let p = (y * width + x) * 3;
        for (dst, src) in image.data[p..p + 3].iter_mut().zip(rgb) {
            let face = f32::from(*dst);
            *dst = (face + (src.clamp(0.0, 255.0) - face) * a).round() as u8;
        }
        map.coverage[y * width + x] = a;
    }
    Ok(map)
}

/// Draws flat-coloured template outlines (free-form occluders) on the face.
pub(crate) fn render_flat(
    image: &mut RgbImageMut<'_>,
    landmarks: &Landmarks5,
    outlines: Vec<(Vec<Point>, [u8; 3])>,
) -> Result<OcclusionMap> {
    let frame = FaceFrame::fit(landmarks)?;
    let parts: Vec<Part> =
        outlines.into_iter().map(|(outline, c)| Part { outline, paint: Paint::Flat(c.map(f32::from)) }).collect();
    paint_parts(image, &frame, &parts, |_, _, _| [0.0; 3])
}
