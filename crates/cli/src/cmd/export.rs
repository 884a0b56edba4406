//! `maskid export --run DIR -o model.onnx [--inpainter unmask.onnx]`: the trained backbone
//! (encoder up to the descriptor + reformer), and optionally the inpainter (encoder + decoder,
//! for unmask previews), as ONNX, each checked against burn on 32 real aligned faces. With
//! `--run` given more than once, the weight average of teacher-initialised students.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::Parallelism;
use serde::Serialize;

use crate::common::{print_json, GlobalArgs};

/// Largest ONNX Runtime vs burn difference accepted (issue: <= 1e-4).
const PARITY_TOLERANCE: f32 = 1e-4;

#[derive(clap::Args)]
pub struct Args {
    /// Run folder whose reformer stage has finished. Given more than once (runs of one
    /// student config that differ in seed), exports the average of their students' weights.
    #[arg(long, required = true)]
    run: Vec<PathBuf>,
    /// The ONNX file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Export the run's tuned face detector (`train --stage detector`) instead of a G2D model:
    /// YuNet's file with the tuned weights, checked against burn on the sample photos.
    #[arg(long, conflicts_with_all = ["inpainter", "checkpoint", "data"])]
    detector: bool,
    /// Also write the inpainting network (masked face -> restored face) to this ONNX file.
    #[arg(long)]
    inpainter: Option<PathBuf>,
    /// Also write every trained weight (encoder, decoder, reformer) as safetensors.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// LFW root: check parity on 16 lfw-devtest pairs (32 crops, probes masked); default:
    /// the six sample photos, clean and in five mask styles.
    #[arg(long)]
    data: Option<PathBuf>,
    /// A student run only: the teacher's share in the exported weights, 0..1 (replaces the
    /// run config's `model.student.teacher_share`; 0 = as trained, 1 = the teacher).
    #[arg(long, conflicts_with = "detector")]
    teacher_share: Option<f64>,
    /// A student run only: export the stage's last checkpoint, not its best validated step.
    #[arg(long, conflicts_with = "detector")]
    last: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Summary {
    output: String,
    bytes: u64,
    sha256: String,
    embedding_dim: usize,
    parity_faces: usize,
    max_abs_difference: f32,
    inpainter: Option<InpainterSummary>,
    checkpoint: Option<String>,
}

#[derive(Serialize)]
struct InpainterSummary {
    output: String,
    bytes: u64,
    sha256: String,
    max_abs_difference: f32,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let device = maskid_g2d::Device::flex();
    let run = &args.run[0];
    if args.detector {
        anyhow::ensure!(args.run.len() == 1, "--detector exports one run's detector: give --run once");
        return export_detector(global, run, &args, &device);
    }
    let (trained, _) = maskid_g2d::run::StageDir::finished(run, maskid_g2d::Stage::Reformer.name())?;
    if trained.config::<maskid_g2d::G2dConfig>()?.model.student.is_some() {
        return export_student(global, &args, &device);
    }
    anyhow::ensure!(
        args.teacher_share.is_none() && !args.last && args.run.len() == 1,
        "--teacher-share, --last and more than one --run export teacher-initialised students; {} trained a G2D \
         reformer",
        run.display()
    );
    let (backbone, config) = maskid_g2d::load_backbone(run, &device)?;
    let input = "faces [batch, 3, 112, 112], RGB scaled to [-1, 1], aligned to the ArcFace template";
    let metadata = [
        ("maskid.model", "g2d-backbone".to_string()),
        ("maskid.input", input.into()),
        ("maskid.output", "embedding [batch, D], L2-normalised".into()),
        ("maskid.config", config.to_toml()),
    ];
    maskid_g2d::export::export_onnx(&backbone, &args.output, &metadata)?;
    let models = global.models(Parallelism::Latency)?;
    let faces = maskid_pipeline::parity_faces(&global.assets(), &models, args.data.as_deref())?;
    let max = maskid_g2d::export::parity(&backbone, &args.output, &faces, &device)?;
    check_parity(max, faces.len(), &args.output)?;
    let inpainter = match &args.inpainter {
        Some(path) => {
            let inpainter = maskid_g2d::load_trained_inpainter(run, &device)?;
            let metadata = [
                ("maskid.model", "g2d-inpainter".to_string()),
                ("maskid.input", input.into()),
                ("maskid.output", "restored [batch, 3, 112, 112], RGB in [-1, 1]".into()),
                ("maskid.config", config.to_toml()),
            ];
            maskid_g2d::export::export_inpainter_onnx(&inpainter, path, &metadata)?;
            let max = maskid_g2d::export::inpainter_parity(&inpainter, path, &faces, &device)?;
            check_parity(max, faces.len(), path)?;
            Some(InpainterSummary {
                output: path.display().to_string(),
                bytes: std::fs::metadata(path)?.len(),
                sha256: maskid_assets::sha256_file(path)?,
                max_abs_difference: max,
            })
        }
        None => None,
    };
    if let Some(path) = &args.checkpoint {
        let weights = maskid_g2d::export::G2dWeights {
            encoder: backbone.encoder.clone(),
            decoder: maskid_g2d::load_trained_inpainter(run, &device)?.decoder,
            reformer: backbone.reformer.clone(),
        };
        let metadata = [("maskid.model", "g2d-weights".to_string()), ("maskid.config", config.to_toml())];
        maskid_g2d::export::export_safetensors(&weights, &config, path, &metadata)?;
    }
    let summary = Summary {
        output: args.output.display().to_string(),
        bytes: std::fs::metadata(&args.output)?.len(),
        sha256: maskid_assets::sha256_file(&args.output)?,
        embedding_dim: config.model.reformer.embedding_dim,
        parity_faces: faces.len(),
        max_abs_difference: max,
        inpainter,
        checkpoint: args.checkpoint.as_ref().map(|p| p.display().to_string()),
    };
    print_summary(&summary, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_summary(summary: &Summary, json: bool) -> anyhow::Result<()> {
    if json {
        print_json(summary)?;
    } else {
        println!(
            "wrote {} ({:.1} MB, sha256 {}); ONNX Runtime vs burn on {} faces: max |diff| {:.2e}",
            summary.output,
            summary.bytes as f64 / 1e6,
            summary.sha256,
            summary.parity_faces,
            summary.max_abs_difference
        );
        if let Some(i) = &summary.inpainter {
            println!(
                "wrote {} ({:.1} MB, sha256 {}); ONNX Runtime vs burn: max |diff| {:.2e}",
                i.output,
                i.bytes as f64 / 1e6,
                i.sha256,
                i.max_abs_difference
            );
        }
    }
    Ok(())
}

/// The teacher-initialised student of a run (configs/teacher-init.toml), or the weight average
/// of several runs' students, checked as the backbone is.
fn export_student(global: &GlobalArgs, args: &Args, device: &maskid_g2d::Device) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.inpainter.is_none() && args.checkpoint.is_none(),
        "--inpainter and --checkpoint export the inpainting network of a G2D run; {} trained a student on the \
         encoder of another run: export them from that run",
        args.run[0].display()
    );
    let teacher = global.assets().get(&maskid_assets::SFACE)?;
    let runs: Vec<&std::path::Path> = args.run.iter().map(|r| r.as_path()).collect();
    let (student, configs) =
        maskid_g2d::stage::load_average_student(&runs, &teacher, args.teacher_share, args.last, device)?;
    let config = &configs[0];
    let names: Vec<&str> = configs.iter().map(|c| c.name.as_str()).collect();
    let mut metadata = vec![
        ("maskid.model", "g2d-student".to_string()),
        ("maskid.input", "faces [batch, 3, 112, 112], RGB scaled to [-1, 1], aligned to the ArcFace template".into()),
        ("maskid.output", "embedding [batch, 128], L2-normalised, in SFace's embedding space".into()),
        ("maskid.embedding_space", "sface-2021dec".into()),
        ("maskid.config", config.to_toml()),
    ];
    if names.len() > 1 {
        metadata.push(("maskid.average_of", names.join(", ")));
    }
    maskid_g2d::export::export_student_onnx(&student, &args.output, &metadata)?;
    let models = global.models(Parallelism::Latency)?;
    let faces = maskid_pipeline::parity_faces(&global.assets(), &models, args.data.as_deref())?;
    let max = maskid_g2d::export::parity(&student, &args.output, &faces, device)?;
    check_parity(max, faces.len(), &args.output)?;
    let summary = Summary {
        output: args.output.display().to_string(),
        bytes: std::fs::metadata(&args.output)?.len(),
        sha256: maskid_assets::sha256_file(&args.output)?,
        embedding_dim: student.embedding_dim(),
        parity_faces: faces.len(),
        max_abs_difference: max,
        inpainter: None,
        checkpoint: None,
    };
    print_summary(&summary, args.json)?;
    Ok(ExitCode::SUCCESS)
}

/// The tuned detector of a run, checked on the six sample photos at the masked-face pass's
/// size.
fn export_detector(
    global: &GlobalArgs,
    run: &std::path::Path,
    args: &Args,
    device: &maskid_g2d::Device,
) -> anyhow::Result<ExitCode> {
    let assets = global.assets();
    maskid_face::init_runtime(&assets.get(&maskid_assets::ONNXRUNTIME_LIB)?)?;
    let yunet = std::fs::read(assets.get(&maskid_assets::YUNET)?)?;
    let (detector, config) = maskid_g2d::detector::load_detector(run, &yunet, device)?;
    let metadata = [
        ("maskid.model", "yunet-masked".to_string()),
        (
            "maskid.tuned_from",
            format!("face_detection_yunet_2023mar_int8bq.onnx (sha256 {})", maskid_assets::YUNET.sha256),
        ),
        ("maskid.config", config.to_toml()),
    ];
    maskid_g2d::export::export_detector_onnx(&detector, &yunet, &args.output, &metadata)?;
    let mut inputs = Vec::new();
    for photo in maskid_assets::SAMPLE_PHOTOS.iter() {
        let image = maskid_face::load_image(&assets.get(photo)?, maskid_face::DEFAULT_MAX_PIXELS)?;
        let side = maskid_face::MASKED_PASS_CANVAS_PX;
        let small = image::imageops::thumbnail(&image, side, side * image.height() / image.width().max(1));
        inputs.push(maskid_face::yunet_input(&small));
    }
    let max = maskid_g2d::export::detector_parity(&detector, &args.output, &inputs, device)?;
    check_parity(max, inputs.len(), &args.output)?;
    let summary = Summary {
        output: args.output.display().to_string(),
        bytes: std::fs::metadata(&args.output)?.len(),
        sha256: maskid_assets::sha256_file(&args.output)?,
        embedding_dim: 0,
        parity_faces: inputs.len(),
        max_abs_difference: max,
        inpainter: None,
        checkpoint: None,
    };
    print_summary(&summary, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn check_parity(max: f32, faces: usize, path: &std::path::Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        max <= PARITY_TOLERANCE,
        "ONNX Runtime and burn differ by {max:.2e} (> {PARITY_TOLERANCE:.0e}) on {faces} faces; {} is not trustworthy",
        path.display()
    );
    Ok(())
}
