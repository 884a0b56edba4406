//! `maskid eval`: a protocol of protocols.md, as a table, a JSON report and an ROC plot.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use maskid_eval::{
    compare_identification, compare_verification, write_line_png, write_roc_png, Comparison, MaskSetting, MaskStage,
    Protocol, Report, ReportMetrics,
};
use maskid_face::{Alignment, ChannelOrder, EmbedderConfig, FaceEmbedder, FaceRestorer, Parallelism};
use maskid_mask::{Coverage, MaskStyle};
use maskid_pipeline::{evaluate, EvalOptions, LandmarkSource, ModelChoice};

use crate::common::{choices, print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// lfw-view2, lfw-devtest, lfw-devtest-dense, lfw-devtest-ident, rmfrd-dev-ident (real
    /// masks; --data rmfrd-dev), or for choosing models (held-out DevTrain people):
    /// lfw-devtrain-holdout, lfw-devtrain-holdout-dense, lfw-devtrain-holdout-ident.
    #[arg(long)]
    protocol: Protocol,
    /// clean, mask-probe or mask-both.
    #[arg(long, default_value = "clean")]
    mask: MaskSetting,
    /// teacher (SFace), g2d (the shipped G2D model), auto (G2D for masked faces, the teacher
    /// for unmasked ones), or an ONNX backbone file taking RGB
    /// scaled to [-1, 1].
    #[arg(long, default_value = "teacher")]
    model: ModelChoice,
    /// Embed the unmasked references with this model instead (mask-probe only): teacher,
    /// g2d or FILE.onnx of the same embedding space, as a gallery enrolled by one model and
    /// searched with another.
    #[arg(long)]
    reference_model: Option<ModelChoice>,
    /// LFW root (holding images_deepfunneled/ and the list files).
    #[arg(long)]
    data: PathBuf,
    /// Mask seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Mask style of masked images: surgical, n95, cloth, gaiter, respirator, hand, random.
    #[arg(long, default_value = "random", value_parser = choices::style())]
    style: String,
    /// Nose coverage of masks: random, nose, below-nose.
    #[arg(long, default_value = "random")]
    coverage: Coverage,
    /// Where masks are drawn: crop (protocols.md: on the aligned crop, from the unmasked
    /// face's landmarks) or photo (on the full photo at its detected landmarks; the masked
    /// photo is then detected and aligned like any probe, as a real masked face is).
    #[arg(long, default_value = "crop")]
    mask_stage: MaskStage,
    /// Align the probes by these landmarks: five-point, eyes, eyes-nose (references always
    /// five-point).
    #[arg(long, default_value = "five-point")]
    probe_align: Alignment,
    /// Where the probes' landmarks come from: detector, masked-model (the masked-face
    /// detector pass alone, where it finds a face), clean (with --mask-stage photo: the
    /// photo's landmarks before its mask was drawn, an oracle).
    #[arg(long, default_value = "detector")]
    probe_landmarks: LandmarkSource,
    /// Grey every probe crop from this row (of 112) down: an occlusion without a change of
    /// photo, to measure how much identity the upper face carries.
    #[arg(long, value_name = "ROW")]
    blank_probe_below: Option<usize>,
    /// With lfw-view2: read this pairs list (view 2's format, relative to --data) instead of
    /// pairs.txt, e.g. rmfrd-dev's pairs_clean.txt.
    #[arg(long, value_name = "FILE")]
    pairs: Option<String>,
    /// Folder for the JSON report and the ROC plot.
    #[arg(long, default_value = "maskid-reports")]
    out: PathBuf,
    /// Feed the teacher BGR instead of RGB (to compare channel orders).
    #[arg(long, hide = true)]
    teacher_bgr: bool,
    /// Inpaint masked faces with the shipped G2D inpainter before embedding them (the
    /// unmask-then-embed ablation); not with `--mask clean`.
    #[arg(long)]
    unmask: bool,
    /// Embed every face and its mirror image and compare the means (two passes a face: the
    /// two-view teacher of `reformer.teacher_mirror_average`).
    #[arg(long)]
    mirror_average: bool,
    /// Also evaluate this model (teacher, g2d, auto or FILE.onnx) on the same pairs and masks, and
    /// test the difference: McNemar's exact test on the pairs (or probes) only one model's
    /// ten-fold decision (or rank-1 answer) gets right, and for pair protocols a paired
    /// bootstrap interval for each TAR.
    #[arg(long, conflicts_with_all = ["reference_model", "unmask", "teacher_bgr"])]
    compare: Option<ModelChoice>,
    /// Print the JSON report on stdout (with `--compare`: the two reports and the comparison).
    #[arg(long)]
    json: bool,
}

/// What `--compare --json` prints.
#[derive(serde::Serialize)]
struct Compared<'a> {
    report: &'a Report,
    baseline: &'a Report,
    comparison: &'a Comparison,
}

fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let recognizer = global.recognizer(&args.model, Parallelism::Throughput)?;
    let models = recognizer.models();
    let bgr_teacher = match args.model == ModelChoice::Teacher && args.teacher_bgr {
        true => {
            let sface = global.assets().get(&maskid_assets::SFACE)?;
            let config = EmbedderConfig { channel_order: ChannelOrder::Bgr, ..EmbedderConfig::sface() };
            Some(FaceEmbedder::new(&sface, config, Parallelism::Throughput)?)
        }
        false => None,
    };
    let embedder = bgr_teacher.as_ref().unwrap_or(recognizer.embedder());
    let style = MaskStyle::choice(&args.style).map_err(anyhow::Error::msg)?;
    let options = EvalOptions {
        protocol: args.protocol,
        mask: args.mask,
        seed: args.seed,
        data: args.data.clone(),
        style,
        coverage: args.coverage,
        mirror_average: args.mirror_average,
        mask_stage: args.mask_stage,
        probe_alignment: args.probe_align,
        probe_landmarks: args.probe_landmarks,
        blank_probe_from: args.blank_probe_below,
        pairs_file: args.pairs.clone(),
    };
    let progress = global.progress();
    // The teacher is in `models`; another reference model is loaded beside.
    let reference_model = match &args.reference_model {
        Some(model) => Some(model.load(&global.assets(), Parallelism::Throughput)?),
        None => None,
    };
    let reference = reference_model.as_ref().map(|loaded| loaded.as_ref().unwrap_or(&models.teacher));
    anyhow::ensure!(
        !args.unmask || args.mask != MaskSetting::Clean,
        "--unmask restores masked faces: --mask clean has none"
    );
    let restorer = match args.unmask {
        true => {
            let model = maskid_assets::G2D_INPAINTER.file(global.assets().home())?;
            Some(FaceRestorer::new(&model, Parallelism::Throughput).context("loading the G2D inpainter")?)
        }
        false => None,
    };
    let assets = global.assets();
    let evaluation = evaluate(assets.home(), models, embedder, reference, restorer.as_ref(), &options, &progress)?;
    let report = &evaluation.report;
    let compared = match &args.compare {
        Some(choice) => {
            let loaded = choice.load(&assets, Parallelism::Throughput)?;
            let baseline_embedder = loaded.as_ref().unwrap_or(&models.teacher);
            let baseline = evaluate(assets.home(), models, baseline_embedder, None, None, &options, &progress)?;
            let comparison = match args.protocol.has_pairs() {
                true => compare_verification(
                    &evaluation.pairs,
                    (&report.model, &evaluation.scores),
                    (&baseline.report.model, &baseline.scores),
                )?,
                false => compare_identification(
                    (&report.model, &evaluation.rank1_hits),
                    (&baseline.report.model, &baseline.rank1_hits),
                )?,
            };
            Some((baseline.report, comparison))
        }
        None => None,
    };

    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let mask = match report.mask_render_version {
        Some(version) => format!("{} (style {}, masks v{version})", report.mask, report.mask_style),
        None => report.mask.clone(),
    };
    let bgr = if args.teacher_bgr { "-bgr" } else { "" };
    let stem = format!("{}{bgr}", report_stem(report));
    let json_path = args.out.join(format!("{stem}.json"));
    maskid_assets::write_atomic(&json_path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    let mut comparison_path = None;
    if let Some((baseline, comparison)) = &compared {
        let baseline_path = args.out.join(format!("{}.json", report_stem(baseline)));
        maskid_assets::write_atomic(&baseline_path, serde_json::to_string_pretty(baseline)?.as_bytes())?;
        let path = args.out.join(format!("{stem}-vs-{}.json", baseline.model));
        maskid_assets::write_atomic(&path, serde_json::to_string_pretty(comparison)?.as_bytes())?;
        comparison_path = Some(path);
    }
    let roc_path = match &report.metrics {
        ReportMetrics::Verification(m) => {
            let path = args.out.join(format!("{stem}-roc.png"));
            write_roc_png(&path, &m.roc, &format!("{} {} (AUC {:.4})", report.protocol, mask, m.auc))?;
            path
        }
        ReportMetrics::Identification(m) => {
            // The DET curve on a log scale of FPIR (its first point, FPIR 0, has no place there).
            let points: Vec<(f64, f64)> = m
                .open_set
                .det
                .iter()
                .filter(|(fpir, _)| *fpir > 0.0)
                .map(|(fpir, fnir)| (fpir.log10(), *fnir))
                .collect();
            let path = args.out.join(format!("{stem}-det.png"));
            let title = format!("{} {} DET, gallery {}", report.protocol, mask, m.gallery);
            write_line_png(&path, &title, "log10 FPIR", "FNIR", &points)?;
            path
        }
    };
    if args.json {
        match &compared {
            Some((baseline, comparison)) => print_json(&Compared { report, baseline, comparison })?,
            None => print_json(report)?,
        }
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "protocol {}  mask {mask}  seed {}  model {} (sha256 {}...)",
        report.protocol,
        report.seed,
        report.model,
        &report.model_sha256[..12]
    );
    println!("images {}  central-crop fallbacks {}", report.images, report.fallback_crops);
    if let Some(file) = &report.pairs_file {
        println!("pairs file {file}");
    }
    if let Some(p) = &report.probe_preparation {
        let blank = p.blank_from_row.map_or(String::new(), |row| format!(", grey from row {row}"));
        println!(
            "masks drawn on the {}; probes aligned by {} of the {}{blank}; {} prepared anew, {} without a face",
            p.mask_stage, p.alignment, p.landmarks, p.realigned, p.fallbacks
        );
        if let Some(found) = p.masked_model_found {
            println!("the masked-face model found {found} of them (the others: the detector's landmarks)");
        }
        if let Some(s) = &p.shift {
            println!(
                "alignment under the mask moved the face {:.2} px (eyes {:.2}, 90th percentile {:.2}, {} of {} over 5 px)",
                s.mean_px, s.eyes_mean_px, s.p90_px, s.over_5px, s.faces
            );
        }
    }
    match &report.metrics {
        ReportMetrics::Verification(m) => {
            println!("pairs {} genuine / {} impostor", m.genuine, m.impostor);
            println!("{:<28} {} +- {}", "10-fold accuracy", pct(m.accuracy_mean), pct(m.accuracy_std));
            println!("{:<28} {:.4}", "ROC AUC", m.auc);
            println!("{:<28} {}", "EER", pct(m.eer));
            for t in &m.tar_at_far {
                let value = t.tar.map_or("not estimable".to_string(), pct);
                println!("{:<28} {}", format!("TAR @ FAR {:e}", t.far), value);
            }
            println!("{:<28} {:.4}  (FMR {}, FNMR {})", "threshold (all pairs)", m.threshold, pct(m.fmr), pct(m.fnmr));
        }
        ReportMetrics::Identification(m) => {
            println!("gallery {}  probes {}  non-enrolled {}", m.gallery, m.probes, m.non_enrolled);
            println!("{:<28} {}", "rank-1", pct(m.rank1));
            println!("{:<28} {}", "rank-5", pct(m.rank5));
            println!("open set: non-mated searches are {}", m.non_mated_from);
            let header: Vec<String> =
                maskid_eval::FPIRS.iter().map(|f| format!("{:>16}", format!("FNIR@FPIR {f:.0e}"))).collect();
            println!("{:>8} {:>7} {:>10} {}", "gallery", "mated", "non-mated", header.join(""));
            for size in &m.by_gallery_size {
                let cells: Vec<String> = size
                    .fnir_at_fpir
                    .iter()
                    .map(|d| format!("{:>16}", d.fnir.map_or("not estimable".to_string(), pct)))
                    .collect();
                println!("{:>8} {:>7} {:>10} {}", size.gallery, size.mated, size.non_mated, cells.join(""));
            }
        }
    }
    if let Some((baseline, comparison)) = &compared {
        print_comparison(comparison, report, baseline);
    }
    println!("report {}", json_path.display());
    println!("plot   {}", roc_path.display());
    if let Some(p) = comparison_path {
        println!("compared {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The file name of a report, without `.json`.
fn report_stem(report: &Report) -> String {
    let style_part = if report.mask == "clean" { String::new() } else { format!("-{}", report.mask_style) };
    let reference = report.reference_model.as_ref().map_or(String::new(), |m| format!("-ref-{m}"));
    let pairs = report.pairs_file.as_ref().map_or(String::new(), |f| {
        format!("-{}", Path::new(f).file_stem().map_or(f.clone(), |s| s.to_string_lossy().into_owned()))
    });
    let preparation = report.probe_preparation.as_ref().map_or(String::new(), |p| {
        let mut part = String::new();
        if p.mask_stage != "crop" {
            part += &format!("-{}-stage", p.mask_stage);
        }
        if p.alignment != "five-point" {
            part += &format!("-align-{}", p.alignment);
        }
        if p.landmarks != "detector" {
            part += &format!("-landmarks-{}", p.landmarks);
        }
        if let Some(row) = p.blank_from_row {
            part += &format!("-blank{row}");
        }
        part
    });
    format!("{}{pairs}-{}{style_part}{preparation}-{}{reference}", report.protocol, report.mask, report.model)
}

fn print_comparison(c: &Comparison, report: &Report, baseline: &Report) {
    let d = &c.decisions;
    let (what, model, other) = match (&report.metrics, &baseline.metrics) {
        (ReportMetrics::Verification(m), ReportMetrics::Verification(b)) => {
            ("10-fold accuracy", m.accuracy_mean, b.accuracy_mean)
        }
        (ReportMetrics::Identification(m), ReportMetrics::Identification(b)) => ("rank-1", m.rank1, b.rank1),
        _ => unreachable!("BUG: one protocol, two kinds of report"),
    };
    println!("compared with {} on the same {} items and masks:", c.baseline, d.items);
    println!(
        "{what:<28} {} vs {}: {} right only here, {} only there (McNemar p = {:.3})",
        pct(model),
        pct(other),
        d.model_only_right,
        d.baseline_only_right,
        d.mcnemar_p
    );
    for t in &c.tar_at_far {
        let (Some(m), Some(b), Some(d)) = (t.model, t.baseline, t.difference) else { continue };
        let interval = t.interval_95.map_or("no interval".to_string(), |(low, high)| {
            format!("95% interval {:+.2} to {:+.2}", 100.0 * low, 100.0 * high)
        });
        println!(
            "{:<28} {} vs {}: {:+.2} points ({interval}; {} resamples)",
            format!("TAR @ FAR {:e}", t.far),
            pct(m),
            pct(b),
            100.0 * d,
            c.resamples
        );
    }
    // Open set, whole gallery: the baseline's FNIR beside (no test of the difference).
    if let (ReportMetrics::Identification(m), ReportMetrics::Identification(b)) = (&report.metrics, &baseline.metrics) {
        for (x, y) in m.open_set.fnir_at_fpir.iter().zip(&b.open_set.fnir_at_fpir) {
            let (Some(fx), Some(fy)) = (x.fnir, y.fnir) else { continue };
            println!("{:<28} {} vs {}", format!("FNIR @ FPIR {:e}", x.fpir), pct(fx), pct(fy));
        }
    }
}
