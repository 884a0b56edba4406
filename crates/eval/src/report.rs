//! Evaluation reports: JSON with everything needed to rerun the evaluation, and ROC plots.

use std::path::Path;

use plotters::prelude::*;
use serde::Serialize;

use crate::identify::IdentificationMetrics;
use crate::verify::VerificationMetrics;
use crate::{Error, Result};

/// Metrics of one protocol run.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ReportMetrics {
    /// Pair protocols.
    Verification(VerificationMetrics),
    /// The identification protocol.
    Identification(IdentificationMetrics),
}

/// One evaluation, as written to JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Protocol name (protocols.md).
    pub protocol: String,
    /// Model id.
    pub model: String,
    /// SHA-256 of the model file.
    pub model_sha256: String,
    /// The model that embedded the unmasked references, when not `model` (a gallery enrolled
    /// by another model of the same embedding space).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reference_model: Option<String>,
    /// Mask setting.
    pub mask: String,
    /// Mask style forced for every masked image, `random` (drawn per image), or `none`.
    pub mask_style: String,
    /// Version of maskid's mask drawing that drew the masks (`maskid_mask::RENDER_VERSION`);
    /// absent for clean runs and for reports written before versions were recorded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mask_render_version: Option<u32>,
    /// Mask seed.
    pub seed: u64,
    /// Data set root.
    pub data: String,
    /// Distinct images used.
    pub images: usize,
    /// Images where no face was detected and the fixed central crop was used.
    pub fallback_crops: usize,
    /// The pairs file, when not the protocol's own (`--pairs`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pairs_file: Option<String>,
    /// How masked images and probes were prepared, where that differs from protocols.md's
    /// preparation (masks drawn on the aligned crop, five-point alignment of the detection).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub probe_preparation: Option<ProbePreparation>,
    /// maskid version.
    pub maskid_version: String,
    /// The numbers.
    pub metrics: ReportMetrics,
}

/// How masked images and probes were prepared (`maskid eval --mask-stage`, `--probe-align`,
/// `--probe-landmarks`, `--blank-probe-below`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbePreparation {
    /// Where masks were drawn: `crop` or `photo`.
    pub mask_stage: String,
    /// Which landmarks aligned the probes (`five-point`, `eyes`, `eyes-nose`).
    pub alignment: String,
    /// Where the probes' landmarks came from (`detector`, `masked-model`, `clean`).
    pub landmarks: String,
    /// Probe crops grey from this row down (an oracle occlusion), if asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blank_from_row: Option<usize>,
    /// Images prepared again from their photo (detected anew after a photo-stage mask, or
    /// aligned by other landmarks).
    pub realigned: usize,
    /// Of those, images in which no face was found (the central crop stands in).
    pub fallbacks: usize,
    /// With masked-model landmarks: the images in which that model found a face (the others
    /// keep the detector's landmarks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masked_model_found: Option<usize>,
    /// Photo-stage masks: how far the alignment of the masked photo moved the face, against
    /// the five-point alignment of the same photo without its mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shift: Option<AlignmentShift>,
}

/// How far the five landmarks of the unmasked photo land from where its own five-point
/// alignment puts them, in pixels of the 112x112 crop, when the crop is aligned from the
/// masked photo instead.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlignmentShift {
    /// Faces measured (masked photos in which a face was found).
    pub faces: usize,
    /// Mean over faces of the mean displacement of the five points.
    pub mean_px: f64,
    /// Mean over faces of the mean displacement of the two eyes.
    pub eyes_mean_px: f64,
    /// 90th percentile over faces of the five-point mean displacement.
    pub p90_px: f64,
    /// Faces whose five points moved more than 5 px on average (a tenth of the eye distance
    /// is 3.5 px).
    pub over_5px: usize,
}

impl AlignmentShift {
    /// The summary of per-face displacements: (mean of five points, mean of the eyes).
    pub fn of(faces: &[(f64, f64)]) -> Option<Self> {
        if faces.is_empty() {
            return None;
        }
        let n = faces.len() as f64;
        let mut five: Vec<f64> = faces.iter().map(|f| f.0).collect();
        five.sort_by(f64::total_cmp);
        Some(Self {
            faces: faces.len(),
            mean_px: five.iter().sum::<f64>() / n,
            eyes_mean_px: faces.iter().map(|f| f.1).sum::<f64>() / n,
            p90_px: five[((0.9 * n).ceil() as usize).clamp(1, faces.len()) - 1],
            over_5px: five.iter().filter(|&&d| d > 5.0).count(),
        })
    }
}

const FONT: &str = "sans-serif";

fn register_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // DejaVu Sans is compiled in: plots need no system fonts.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws an ROC curve (log FAR axis from 1e-4) as a 640x480 PNG.
pub fn write_roc_png(path: &Path, roc: &[(f64, f64)], title: &str) -> Result<()> {
    draw_png(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((1e-4f64..1.0).log_scale(), 0.0f64..1.0)?;
        chart.configure_mesh().x_desc("false accept rate").y_desc("true accept rate").label_style((FONT, 13)).draw()?;
        let points = roc.iter().map(|&(far, tar)| (far.max(1e-4), tar));
        chart.draw_series(LineSeries::new(points, BLUE.stroke_width(2)))?;
        Ok(())
    })
}

/// Draws one curve (a training loss, a validation metric) as a 640x480 PNG.
pub fn write_line_png(path: &Path, title: &str, x_desc: &str, y_desc: &str, points: &[(f64, f64)]) -> Result<()> {
    let (x0, x1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = points.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let pad = ((y1 - y0) * 0.05).max(1e-6);
    draw_png(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), (y0 - pad)..(y1 + pad))?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).label_style((FONT, 13)).draw()?;
        chart.draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))?;
        if points.len() < 30 {
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, BLUE.filled())))?;
        }
        Ok(())
    })
}

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// Renders `draw` on a white 640x480 canvas and writes it as PNG.
fn draw_png(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> DrawResult,
) -> Result<()> {
    register_font();
    let (width, height) = (640u32, 480u32);
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    let fail = |e: &dyn std::fmt::Display| Error::Plot { path: path.display().to_string(), reason: e.to_string() };
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        draw(&root).map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&buffer, width, height, image::ExtendedColorType::Rgb8)
        .map_err(|e| fail(&e))?;
    std::fs::write(path, png).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

use image::ImageEncoder;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_png_is_a_real_png_with_a_curve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("roc.png");
        write_roc_png(&path, &[(0.0, 0.0), (1e-3, 0.8), (1e-2, 0.95), (1.0, 1.0)], "test ROC").unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        assert_eq!(img.dimensions(), (640, 480));
        let blue = img.pixels().filter(|p| p[2] > 200 && p[0] < 80 && p[1] < 80).count();
        assert!(blue > 200, "curve drawn: {blue} blue pixels");
        let dark = img.pixels().filter(|p| p[0] < 60 && p[1] < 60 && p[2] < 60).count();
        assert!(dark > 500, "axes and text drawn: {dark} dark pixels");
    }

    #[test]
    fn line_png_draws_a_curve() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loss.png");
        let points: Vec<(f64, f64)> = (0..50).map(|i| (f64::from(i), 1.0 / (1.0 + f64::from(i)))).collect();
        write_line_png(&path, "loss", "step", "loss", &points).unwrap();
        let img = image::open(&path).unwrap().into_rgb8();
        let blue = img.pixels().filter(|p| p[2] > 200 && p[0] < 80 && p[1] < 80).count();
        assert!(blue > 200, "curve drawn: {blue} blue pixels");
    }
}
