//! The G2D parts of `maskid bench`: training throughput of each stage, and inference of an
//! exported backbone through ONNX Runtime (and through burn, for comparison).

use std::path::Path;
use std::time::Instant;

use maskid_core::AlignedFace;
use maskid_face::{EmbedderConfig, FaceEmbedder, Parallelism};
use maskid_g2d::{G2dConfig, Stage, StageReport, TrainData, TrainOptions};
use maskid_pipeline::{EvalOptions, TeacherTargets};
use serde::Serialize;

use crate::percentile;
use crate::Setup;

/// Images per second of each stage of the `small` config, every batch 32, after `steps`
/// steps, then of the reformer stage with the default teacher-initialised student (training
/// from unit 25, as `configs/ablation/teacher-init-first.toml`); each stage's own peak memory.
pub fn train_throughput(setup: &Setup, data: &Path, steps: usize) -> anyhow::Result<Vec<StageReport>> {
    let mut config = G2dConfig::small();
    config.encoder.schedule.batch_size = 32; // the paper's 16, doubled to compare stages
    for stage in Stage::ALL {
        let schedule = config.schedule_mut(stage);
        schedule.steps = steps;
        schedule.checkpoint_every = steps;
        schedule.validate_every = 0;
    }
    let home = setup.assets.home().to_path_buf();
    let models = setup.models(Parallelism::Throughput)?;
    let progress = setup.progress;
    let options = EvalOptions::validation(data.to_path_buf());
    let held_out = maskid_eval::Lfw::open(data)?.devtrain_holdout_people(options.seed)?;
    let held_out = held_out.into_iter().map(|(name, _)| name).collect();
    let set = maskid_pipeline::training_set(&home, &models, data, None, &held_out, TeacherTargets::Face, &progress)?;
    let validation = maskid_pipeline::verification_pairs(&home, &models, &options, Some(40), &progress)?;
    drop(models);
    let run = tempfile::tempdir()?;
    let teacher_onnx = setup.assets.get(&maskid_assets::SFACE)?;
    let train = TrainData {
        faces: &set.faces,
        validation: &validation,
        dense_validation: None,
        teacher_onnx: Some(&teacher_onnx),
        encoder_weights: None,
        real_masks: None,
    };
    let options = TrainOptions { run: run.path(), device: maskid_g2d::Device::flex(), resume: false, stop_after: None };
    let mut reports = Stage::ALL
        .into_iter()
        .map(|stage| maskid_g2d::train_stage(&config, stage, &train, &options, &mut |_| {}))
        .collect::<Result<Vec<_>, _>>()?;
    let student_run = tempfile::tempdir()?;
    for stage in [Stage::Inpaint, Stage::Encoder] {
        maskid_g2d::run::StageDir::reuse(run.path(), student_run.path(), stage.name())?;
    }
    config.model.student = Some(Default::default());
    let options = TrainOptions { run: student_run.path(), ..options };
    reports.push(maskid_g2d::train_stage(&config, Stage::Reformer, &train, &options, &mut |_| {})?);
    Ok(reports)
}

/// Speed of an exported backbone.
#[derive(Serialize)]
pub struct BackboneSpeed {
    /// The ONNX file.
    pub model: String,
    /// ONNX Runtime, one face per call: median ms.
    pub onnx_batch1_ms: f64,
    /// ONNX Runtime, 32 faces per call: faces per second.
    pub onnx_batch32_faces_per_s: f64,
    /// burn (flex CPU backend) on the same network, when the run folder is given.
    pub burn_batch1_ms: Option<f64>,
    /// burn, 32 faces per call.
    pub burn_batch32_faces_per_s: Option<f64>,
}

/// Times the backbone on 32 copies of real aligned faces.
pub fn backbone_speed(
    model: &Path,
    run: Option<&Path>,
    faces: &[AlignedFace],
    iterations: usize,
) -> anyhow::Result<BackboneSpeed> {
    let batch: Vec<AlignedFace> = faces.iter().cycle().take(32).cloned().collect();
    let embedder = FaceEmbedder::new(model, EmbedderConfig::g2d(), Parallelism::Latency)?;
    let one = &batch[..1];
    let (onnx_batch1_ms, onnx_batch32) =
        time(iterations, || embedder.embed(one).map(drop), || embedder.embed(&batch).map(drop))?;
    let burn = match run {
        None => None,
        Some(run) => {
            let device = maskid_g2d::Device::flex();
            let (backbone, _) = maskid_g2d::load_backbone(run, &device)?;
            let embed = |faces: &[AlignedFace]| {
                maskid_g2d::model::embed_faces(&backbone, &faces.iter().collect::<Vec<_>>(), &device).map(drop)
            };
            Some(time(iterations.min(20), || embed(one), || embed(&batch))?)
        }
    };
    Ok(BackboneSpeed {
        model: model.display().to_string(),
        onnx_batch1_ms,
        onnx_batch32_faces_per_s: 32e3 / onnx_batch32,
        burn_batch1_ms: burn.map(|b| b.0),
        burn_batch32_faces_per_s: burn.map(|b| 32e3 / b.1),
    })
}

/// Median ms of `single` and of `batch` over `iterations` runs each, after 3 warm-up runs.
fn time<E: Into<anyhow::Error>>(
    iterations: usize,
    single: impl Fn() -> Result<(), E>,
    batch: impl Fn() -> Result<(), E>,
) -> anyhow::Result<(f64, f64)> {
    let median = |f: &dyn Fn() -> Result<(), E>| -> anyhow::Result<f64> {
        let mut times = Vec::new();
        for i in 0..iterations + 3 {
            let t = Instant::now();
            f().map_err(Into::into)?;
            if i >= 3 {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        times.sort_by(f64::total_cmp);
        Ok(percentile(&times, 0.5))
    };
    Ok((median(&single)?, median(&batch)?))
}
