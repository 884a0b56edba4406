//! `watch --annotate FILE`: the video again, with each live track's box, name, similarity and
//! mask state drawn on every frame.

use std::path::Path;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{imageops, Rgb, RgbImage};
use maskid_core::{BBox, MaskState};

use crate::ffmpeg::Encoder;
use crate::Result;

/// A live track as drawn on a frame.
#[derive(Debug, Clone)]
pub struct TrackView {
    /// The track's id.
    pub id: u64,
    /// Where it is (its last detection, moved as it moves).
    pub bbox: BBox,
    /// Who it is, when decided.
    pub name: Option<String>,
    /// Its best candidate's similarity, once searched.
    pub similarity: Option<f32>,
    /// The mask state of its best face.
    pub mask: Option<MaskState>,
}

/// Green for a named track, amber for one searched and matching nobody, grey before that.
fn colour(track: &TrackView) -> Rgb<u8> {
    match (&track.name, track.similarity) {
        (Some(_), _) => Rgb([40, 200, 80]),
        (None, Some(_)) => Rgb([240, 160, 20]),
        (None, None) => Rgb([170, 170, 170]),
    }
}

/// Writes annotated frames to a video file.
pub struct Annotator {
    encoder: Encoder,
    font: FontRef<'static>,
    size: (u32, u32),
}

impl Annotator {
    /// Starts the file: frames of `width` x `height` at `fps` (a frame of another size, from
    /// a stream that changed resolution, is scaled to it).
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        let font = FontRef::try_from_slice(dejavu::sans::regular()).expect("BUG: DejaVu Sans is a valid font");
        Ok(Self { encoder: Encoder::create(path, width, height, fps)?, font, size: (width, height) })
    }

    /// Draws the tracks on `image` and appends it.
    pub fn frame(&mut self, image: &RgbImage, tracks: &[TrackView]) -> Result<()> {
        let mut canvas = if image.dimensions() == self.size {
            image.clone()
        } else {
            imageops::resize(image, self.size.0, self.size.1, imageops::FilterType::Triangle)
        };
        let (sx, sy) = (self.size.0 as f32 / image.width() as f32, self.size.1 as f32 / image.height() as f32);
        // Lines and text grow with the frame: readable at 480p and at 4K.
        let line = (self.size.1 as f32 / 360.0).ceil().max(1.0) as i64;
        let text_px = (self.size.1 as f32 / 30.0).max(12.0);
        for track in tracks {
            let b = BBox {
                x: track.bbox.x * sx,
                y: track.bbox.y * sy,
                width: track.bbox.width * sx,
                height: track.bbox.height * sy,
            };
            let colour = colour(track);
            rectangle(&mut canvas, &b, line, colour);
            let who = match (&track.name, track.similarity) {
                (Some(name), Some(s)) => format!("{name} {s:.2}"),
                (None, Some(s)) => format!("unknown {s:.2}"),
                _ => format!("track {}", track.id),
            };
            let mask = match track.mask {
                Some(MaskState::Worn) => " [mask]",
                Some(MaskState::BelowNose) => " [mask below nose]",
                _ => "",
            };
            self.label(&mut canvas, &format!("{who}{mask}"), b.x, b.y, text_px, colour);
        }
        self.encoder.write(&canvas)
    }

    /// White text on a band of `colour`, above the point (below it at the top of the frame).
    fn label(&self, canvas: &mut RgbImage, text: &str, x: f32, y: f32, px: f32, colour: Rgb<u8>) {
        let font = self.font.as_scaled(PxScale::from(px));
        let width: f32 = text.chars().map(|c| font.h_advance(font.glyph_id(c))).sum();
        let height = font.ascent() - font.descent();
        let top = if y - height - 2.0 >= 0.0 { y - height - 2.0 } else { y + 2.0 };
        let band = BBox { x, y: top, width: width + 4.0, height: height + 2.0 };
        fill(canvas, &band, colour);
        let mut pen = x + 2.0;
        for c in text.chars() {
            let glyph = font.scaled_glyph(c);
            let advance = font.h_advance(glyph.id);
            let glyph = ab_glyph::Glyph { position: point(pen, top + 1.0 + font.ascent()), ..glyph };
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                outline.draw(|gx, gy, coverage| {
                    let (px, py) = (bounds.min.x as i64 + i64::from(gx), bounds.min.y as i64 + i64::from(gy));
                    if px >= 0 && py >= 0 && (px as u32) < canvas.width() && (py as u32) < canvas.height() {
                        let p = canvas.get_pixel_mut(px as u32, py as u32);
                        for v in p.0.iter_mut() {
                            *v = (f32::from(*v) * (1.0 - coverage) + 255.0 * coverage).round() as u8;
                        }
                    }
                });
            }
            pen += advance;
        }
    }

    /// Closes the file (playable from then on).
    pub fn finish(self) -> Result<()> {
        self.encoder.finish()
    }
}

/// Fills a box, clipped to the image.
fn fill(canvas: &mut RgbImage, b: &BBox, colour: Rgb<u8>) {
    let (w, h) = (canvas.width() as i64, canvas.height() as i64);
    let x0 = (b.x.floor() as i64).clamp(0, w);
    let x1 = ((b.x + b.width).ceil() as i64).clamp(0, w);
    let y0 = (b.y.floor() as i64).clamp(0, h);
    let y1 = ((b.y + b.height).ceil() as i64).clamp(0, h);
    for y in y0..y1 {
        for x in x0..x1 {
            canvas.put_pixel(x as u32, y as u32, colour);
        }
    }
}

/// A box outline `line` pixels thick.
fn rectangle(canvas: &mut RgbImage, b: &BBox, line: i64, colour: Rgb<u8>) {
    let t = line as f32;
    for edge in [
        BBox { height: t, ..*b },
        BBox { y: b.y + b.height - t, height: t, ..*b },
        BBox { width: t, ..*b },
        BBox { x: b.x + b.width - t, width: t, ..*b },
    ] {
        fill(canvas, &edge, colour);
    }
}
