//! Loss and validation curves of a stage as PNG, from its `metrics.jsonl`.

use crate::run::StageDir;
use crate::{Error, Result};

/// Writes `loss.png` (training loss, smoothed over 20 steps) and `validation.png`.
pub(crate) fn write_curves(dir: &StageDir, records: &[serde_json::Value], metric: &str) -> Result<()> {
    let series = |kind: &str, key: &str| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter(|r| r["kind"] == kind)
            .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let loss = series("train", "loss");
    let smoothed: Vec<(f64, f64)> = loss
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            let window = &loss[i.saturating_sub(19)..=i];
            (x, window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64)
        })
        .collect();
    let stage = dir.stage();
    let plot = |file: &str, title: &str, y: &str, points: &[(f64, f64)]| {
        if points.is_empty() {
            return Ok(());
        }
        let path = dir.path().join(file);
        maskid_eval::write_line_png(&path, title, "step", y, points)
            .map_err(|e| Error::Checkpoint(format!("writing {}: {}", path.display(), maskid_core::error_message(&e))))
    };
    plot("loss.png", &format!("{stage}: training loss (20-step mean)"), "loss", &smoothed)?;
    plot("validation.png", &format!("{stage}: validation"), metric, &series("validation", metric))
}
