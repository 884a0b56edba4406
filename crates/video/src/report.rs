//! `watch --report DIR`: a page with a timeline of the tracks and the best frame of each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use image::{imageops, RgbImage};
use maskid_core::{write_atomic, FaceMask};
use maskid_pipeline::FaceResult;

use crate::source::Frame;
use crate::watch::Event;

/// Tracks a report keeps: the latest, so an endless stream's report stays bounded.
const MAX_TRACKS: usize = 1000;

/// Height of a track's picture in the report, pixels.
const THUMB_PX: u32 = 120;

/// One track's row.
#[derive(Default)]
struct Row {
    first_time: f64,
    last_time: f64,
    name: Option<String>,
    similarity: Option<f32>,
    mask: Option<FaceMask>,
    detections: u64,
    /// When the name was first given.
    named_at: Option<f64>,
    /// The best face's surroundings, PNG.
    picture: Option<Vec<u8>>,
    ended: bool,
}

/// What the report shows, gathered from a watch's events and best faces.
#[derive(Default)]
pub struct WatchReport {
    source: String,
    model: String,
    rows: BTreeMap<u64, Row>,
    dropped_rows: usize,
    end_time: f64,
    summary: Option<String>,
}

impl WatchReport {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes in an event.
    pub fn event(&mut self, event: &Event) {
        match event {
            Event::Started { source, model, .. } => (self.source, self.model) = (source.clone(), model.clone()),
            Event::TrackStarted { track, time, mask, .. } => {
                self.rows
                    .insert(*track, Row { first_time: *time, last_time: *time, mask: Some(*mask), ..Row::default() });
                if self.rows.len() > MAX_TRACKS {
                    self.rows.pop_first();
                    self.dropped_rows += 1;
                }
            }
            Event::Identified { track, time, name, similarity, mask, .. } => {
                if let Some(row) = self.rows.get_mut(track) {
                    if name.is_some() && row.named_at.is_none() {
                        row.named_at = Some(*time - row.first_time);
                    }
                    (row.name, row.similarity, row.mask) = (name.clone(), Some(*similarity), Some(*mask));
                }
            }
            Event::TrackEnded { track, time, name, similarity, detections, .. } => {
                if let Some(row) = self.rows.get_mut(track) {
                    (row.last_time, row.name, row.similarity, row.detections) =
                        (*time, name.clone(), *similarity, *detections);
                    row.ended = true;
                }
                self.end_time = self.end_time.max(*time);
            }
            Event::Finished { summary } => self.summary = Some(summary.to_string()),
            _ => {}
        }
    }

    /// Keeps the surroundings of a track's best face so far.
    pub fn best_face(&mut self, track: u64, frame: &Frame, face: &FaceResult) {
        let Some(row) = self.rows.get_mut(&track) else { return };
        self.end_time = self.end_time.max(frame.time_s);
        let b = face.detection.bbox;
        // The box and half its size around it, within the frame.
        let (w, h) = frame.image.dimensions();
        let x0 = (b.x - b.width / 2.0).clamp(0.0, w as f32 - 1.0) as u32;
        let y0 = (b.y - b.height / 2.0).clamp(0.0, h as f32 - 1.0) as u32;
        let x1 = (b.x + 1.5 * b.width).clamp(x0 as f32 + 1.0, w as f32) as u32;
        let y1 = (b.y + 1.5 * b.height).clamp(y0 as f32 + 1.0, h as f32) as u32;
        let crop = imageops::crop_imm(&frame.image, x0, y0, x1 - x0, y1 - y0).to_image();
        let scaled: RgbImage = imageops::resize(
            &crop,
            ((crop.width() * THUMB_PX) / crop.height()).max(1),
            THUMB_PX,
            imageops::FilterType::Triangle,
        );
        let mut png = std::io::Cursor::new(Vec::new());
        if scaled.write_to(&mut png, image::ImageFormat::Png).is_ok() {
            row.picture = Some(png.into_inner());
        }
    }

    /// Writes `index.html` and one picture per track into `dir` (created), each file
    /// atomically.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let span = self.end_time.max(1e-3);
        let mut rows = String::new();
        for (id, row) in &self.rows {
            let picture = match &row.picture {
                Some(png) => {
                    let file = format!("track-{id}.png");
                    write_atomic(&dir.join(&file), png)?;
                    format!("<img src=\"{file}\" alt=\"track {id}\">")
                }
                None => String::new(),
            };
            let who = row.name.as_deref().map_or("<i>nobody enrolled</i>".to_string(), escape);
            let left = 100.0 * row.first_time / span;
            let width = (100.0 * (row.last_time - row.first_time) / span).max(0.5);
            let _ = writeln!(
                rows,
                "<tr><td>{id}</td><td>{picture}</td><td>{who}</td><td>{}</td><td>{}</td><td>{:.2}-{:.2} s{}</td><td>{}</td>\
                 <td class=\"timeline\"><div style=\"margin-left:{left:.2}%;width:{width:.2}%\" class=\"{}\"></div></td></tr>",
                row.similarity.map_or("-".into(), |s| format!("{s:.3}")),
                row.mask.map_or("-".into(), |m| m.state.to_string()),
                row.first_time,
                row.last_time,
                if row.ended { "" } else { " (still in view)" },
                row.named_at.map_or("-".into(), |t| format!("{t:.2} s")),
                if row.name.is_some() { "named" } else { "unknown" },
            );
        }
        let dropped = if self.dropped_rows > 0 {
            format!(
                "<p>{} earlier tracks are not shown (the report keeps the latest {MAX_TRACKS}).</p>",
                self.dropped_rows
            )
        } else {
            String::new()
        };
        let page = format!(
            "<!doctype html>\n<meta charset=\"utf-8\">\n<title>maskid watch: {source}</title>\n<style>\n\
             body {{ font-family: sans-serif; margin: 2em; }}\n\
             table {{ border-collapse: collapse; width: 100%; }}\n\
             td, th {{ border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: middle; }}\n\
             td.timeline {{ width: 40%; }}\n\
             td.timeline div {{ height: 14px; border-radius: 3px; }}\n\
             .named {{ background: #28c850; }} .unknown {{ background: #f0a014; }}\n</style>\n\
             <h1>maskid watch</h1>\n<p>{source}, model {model}. {summary}</p>\n{dropped}\
             <table>\n<tr><th>track</th><th>best face</th><th>who</th><th>similarity</th><th>mask</th><th>in view</th>\
             <th>named after</th><th>timeline (0-{span:.1} s)</th></tr>\n{rows}</table>\n",
            source = escape(&self.source),
            model = escape(&self.model),
            summary = self.summary.as_deref().unwrap_or(""),
        );
        write_atomic(&dir.join("index.html"), page.as_bytes())
    }
}

/// Text made safe for HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
