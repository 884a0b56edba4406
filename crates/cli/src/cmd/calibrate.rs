//! `maskid calibrate`: measures a model's impostor scores, which `identify` needs to decide by
//! a target FPIR, and writes them as JSON (beside a model file by default).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use maskid_face::Parallelism;
use maskid_pipeline::{calibrate, CalibrationData, ModelChoice};

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// teacher, g2d, auto, or an embedding model's ONNX file.
    #[arg(long, default_value = "teacher")]
    model: ModelChoice,
    /// LFW root: the DevTrain people held out of training give impostor pairs.
    #[arg(long)]
    lfw: PathBuf,
    /// UTKFace root: another photo domain, measured as a check of the fit (no identities).
    #[arg(long)]
    utkface: PathBuf,
    /// UTKFace photos to embed, spread evenly over the sorted list.
    #[arg(long, default_value_t = 3000)]
    utkface_photos: usize,
    /// Every DevTrain person instead of those held out of G2D's training (only for a model
    /// that never trained on LFW, such as the teacher).
    #[arg(long)]
    all_devtrain: bool,
    /// Where to write the calibration (default: MODEL.calibration.json beside a model file,
    /// where `identify` looks for it; needed for teacher and g2d, whose calibrations are built
    /// into maskid).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Print the calibration as JSON on stdout too.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let out = match (&args.out, &args.model) {
        (Some(out), _) => out.clone(),
        (None, ModelChoice::File { path, .. }) => ModelChoice::calibration_path(path),
        (None, shipped) => anyhow::bail!(
            "{shipped}'s calibration is built into maskid: give --out FILE to measure it again \
             (crates/pipeline/calibration/{shipped}.json in the source tree)"
        ),
    };
    let recognizer = global.recognizer(&args.model, Parallelism::Throughput)?;
    let data = CalibrationData {
        lfw: args.lfw,
        utkface: args.utkface,
        utkface_photos: args.utkface_photos,
        all_devtrain: args.all_devtrain,
    };
    let progress = global.progress();
    let home = global.assets().home().to_path_buf();
    let calibration = calibrate(&home, recognizer.models(), recognizer.embedder(), &data, &progress)?;
    let text = serde_json::to_string_pretty(&calibration)?;
    maskid_assets::write_atomic(&out, text.as_bytes()).with_context(|| format!("writing {}", out.display()))?;
    if args.json {
        print_json(&calibration)?;
    } else {
        for c in &calibration.conditions {
            let tail = &c.impostors.tail;
            println!(
                "{}: {} impostor pairs; score at rate 1e-3 {:.3}; tail above it: shape {:.3}, scale {:.4}; \
                 at 1e-6 {:.3}, 1e-8 {:.3}",
                c.condition.name(),
                c.impostors.pairs,
                tail.start,
                tail.shape,
                tail.scale,
                c.impostors.score_at_rate(1e-6),
                c.impostors.score_at_rate(1e-8),
            );
            for s in &c.sources {
                let measured: Vec<String> = s
                    .measured
                    .iter()
                    .map(|(rate, score)| format!("{rate:.0e} {score:.3} (fit {:.3})", c.impostors.score_at_rate(*rate)))
                    .collect();
                println!(
                    "  {} ({}): {} photos, {} pairs; score at rate {}",
                    s.name,
                    if s.fitted { "fitted" } else { "a check" },
                    s.photos,
                    s.pairs,
                    measured.join(", ")
                );
            }
        }
        println!("wrote {}", out.display());
    }
    Ok(ExitCode::SUCCESS)
}
