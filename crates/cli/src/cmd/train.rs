//! `maskid train --data LFW [--config FILE] [--stage S] [--run DIR] [--resume]`: the G2D
//! stages (inpaint, encoder, reformer, classifier) on the people of `peopleDevTrain.txt`,
//! validated on held-out DevTrain people; or, with `--stage detector`, YuNet tuned on masked
//! faces (its own config).

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use maskid_face::Parallelism;
use maskid_g2d::detector::{detector_finished_with, labelled_photos, tune_detector};
use maskid_g2d::{
    DetectorData, DetectorTuningConfig, G2dConfig, Progress, Stage, StageReport, TrainData, TrainOptions,
};
use maskid_mask::RealMasks;
use maskid_pipeline::{EvalOptions, TeacherTargets};
use rayon::prelude::*;

use crate::common::{choices, print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Training data: LFW (its peopleDevTrain.txt people only) or one folder per person.
    #[arg(long, required_unless_present = "print_config")]
    data: Option<PathBuf>,
    /// LFW root whose held-out DevTrain people make the validation pairs (default: --data).
    #[arg(long)]
    validation_data: Option<PathBuf>,
    /// Photos without identity labels to distil on as well (e.g. UTKFace's faces); each photo
    /// counts as its own identity.
    #[arg(long)]
    distill_data: Option<PathBuf>,
    /// TOML config (keys as in configs/small.toml; for --stage detector or mask, as in
    /// configs/detector.toml or configs/mask.toml); default: the --preset (those stages' own
    /// defaults).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Built-in config when no --config: small (CPU) or paper (GPU).
    #[arg(long, default_value = "small", value_parser = choices::preset())]
    preset: String,
    /// all (the four G2D stages), inpaint, encoder, reformer, classifier, detector (YuNet
    /// tuned on masked faces) or mask (the mask-state classifier); the last two are not part
    /// of all.
    #[arg(long, default_value = "all", value_parser = choices::stage())]
    stage: String,
    /// Run folder (default: $MASKID_HOME/runs/<config name>).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Continue from the last checkpoint (after a crash or kill); finished stages are skipped.
    #[arg(long)]
    resume: bool,
    /// Start from the finished earlier stages of this run folder (ablations: retrain only
    /// the reformer, say, with another config).
    #[arg(long)]
    from: Option<PathBuf>,
    /// cpu, or cuda / wgpu in a build with that feature.
    #[arg(long, default_value = "cpu", value_parser = choices::device())]
    device: String,
    /// Train on the first N people only (short runs).
    #[arg(long)]
    max_people: Option<usize>,
    /// Validate on N of the validation pairs (spread over both kinds and all folds); a
    /// teacher-initialised student, on the dense validation pairs among at most N photos.
    #[arg(long)]
    validation_pairs: Option<usize>,
    /// Stop each stage after this many steps (checkpointed, resumable), e.g. to split a long run.
    #[arg(long)]
    stop_after: Option<usize>,
    /// Photos of people in real masks (e.g. ../shared/datasets/masked-wild/photos): their
    /// aligned lower faces are pasted over training faces, for an occlusion mix with a `real`
    /// share.
    #[arg(long, value_name = "DIR")]
    real_masks: Option<PathBuf>,
    /// A G2D checkpoint (safetensors, `maskid export --checkpoint`) whose encoder a
    /// teacher-initialised student reads the descriptor with, e.g.
    /// models/g2d-small.safetensors; without it, the run's own encoder stage.
    #[arg(long, value_name = "FILE")]
    encoder_weights: Option<PathBuf>,
    /// Print the config (TOML, every key) and exit: a starting point for --config.
    #[arg(long)]
    print_config: bool,
    /// Print the stage reports as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    match args.stage.as_str() {
        "detector" => return train_detector(global, &args),
        "mask" => return train_mask_state(global, &args),
        _ => {}
    }
    let config = match &args.config {
        Some(path) => G2dConfig::load(path)?,
        None => G2dConfig::preset(&args.preset)?,
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let data_root = args.data.clone().context("--data is required")?;
    let stages: Vec<Stage> = if args.stage == "all" { Stage::ALL.to_vec() } else { vec![Stage::parse(&args.stage)?] };
    let device = maskid_g2d::device(&args.device)?;
    let home = global.assets().home().to_path_buf();
    let run = args.run.clone().unwrap_or_else(|| home.join("runs").join(&config.name));
    if let Some(from) = &args.from {
        let first = stages[0];
        for stage in Stage::ALL.into_iter().take_while(|s| *s != first) {
            if !run.join(stage.name()).exists() {
                maskid_g2d::run::StageDir::reuse(from, &run, stage.name())?;
                if !global.quiet {
                    eprintln!("maskid: stage {} taken from {}", stage.name(), from.display());
                }
            }
        }
    }
    let models = global.models(Parallelism::Throughput)?;
    let progress = global.progress();
    if !global.quiet {
        eprintln!("maskid: training data {} -> run folder {}", data_root.display(), run.display());
    }
    // Model selection on DevTrain people held out of training, never on lfw-devtest.
    let validation_options = EvalOptions::validation(args.validation_data.clone().unwrap_or_else(|| data_root.clone()));
    let held_out = held_out_people(&validation_options.data)
        .context("choosing the held-out validation people (--validation-data must be LFW)")?;
    let targets = match config.reformer.teacher_mirror_average {
        true => TeacherTargets::MirrorAverage,
        false => TeacherTargets::Face,
    };
    let mut set =
        maskid_pipeline::training_set(&home, &models, &data_root, args.max_people, &held_out, targets, &progress)
            .with_context(|| format!("preparing training data from {}", data_root.display()))?;
    let labelled = set.faces.len();
    if let Some(root) = &args.distill_data {
        let unlabelled =
            maskid_pipeline::unlabelled_set(&home, &models, root, set.identities.len() as u32, targets, &progress)
                .with_context(|| format!("preparing distillation photos from {}", root.display()))?;
        set.faces.extend(unlabelled.faces);
    }
    let real_masks = match &args.real_masks {
        Some(dir) => Some(real_masks(&models, dir, global.quiet)?),
        None => None,
    };
    let validation =
        maskid_pipeline::verification_pairs(&home, &models, &validation_options, args.validation_pairs, &progress)
            .context("preparing the validation pairs")?;
    // The teacher-initialised student is chosen on the dense pairs of the same people.
    let dense_validation = match config.model.student.is_some() && stages.contains(&Stage::Reformer) {
        true => Some(
            maskid_pipeline::dense_validation_pairs(
                &home,
                &models,
                &validation_options,
                args.validation_pairs,
                &progress,
            )
            .context("preparing the dense validation pairs")?,
        ),
        false => None,
    };
    drop(models);
    if !global.quiet {
        eprintln!(
            "maskid: {labelled} faces of {} people, {} unlabelled faces; {} validation pairs of {} held-out people",
            set.identities.len(),
            set.faces.len() - labelled,
            validation.genuine.len(),
            held_out.len()
        );
        if let Some(dense) = &dense_validation {
            let genuine = dense.genuine.iter().filter(|g| **g).count();
            eprintln!(
                "maskid: the student is chosen on {} dense validation pairs ({genuine} genuine) of {} photos",
                dense.pairs.len(),
                dense.clean.len()
            );
        }
    }
    let teacher_onnx = global.assets().get(&maskid_assets::SFACE)?;
    let data = TrainData {
        faces: &set.faces,
        validation: &validation,
        dense_validation: dense_validation.as_ref(),
        teacher_onnx: Some(&teacher_onnx),
        encoder_weights: args.encoder_weights.as_deref(),
        real_masks: real_masks.as_ref(),
    };
    let options = TrainOptions { run: &run, device, resume: args.resume, stop_after: args.stop_after };
    train_stages(global, &args, &config, &stages, &data, &options)
}

/// Trains `stages` in order, skipping those `--resume` finds finished, and reports them.
fn train_stages(
    global: &GlobalArgs,
    args: &Args,
    config: &G2dConfig,
    stages: &[Stage],
    data: &TrainData<'_>,
    options: &TrainOptions<'_>,
) -> anyhow::Result<ExitCode> {
    let mut reports: Vec<StageReport> = Vec::new();
    for &stage in stages {
        if args.resume && maskid_g2d::finished_with(options.run, stage.name(), config) {
            if !global.quiet {
                eprintln!("maskid: stage {} already finished in {}", stage.name(), options.run.display());
            }
            continue;
        }
        let steps = config.schedule(stage).steps;
        reports.push(with_progress(global, args, stage.name(), steps, |progress| {
            maskid_g2d::train_stage(config, stage, data, options, progress)
        })?);
    }
    if args.json {
        print_json(&reports)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs one stage with a progress bar (or, into a log file, a line every twentieth of the
/// stage) and prints its report unless `--json`.
fn with_progress(
    global: &GlobalArgs,
    args: &Args,
    stage: &'static str,
    steps: usize,
    train: impl FnOnce(&mut dyn FnMut(&Progress)) -> maskid_g2d::Result<StageReport>,
) -> anyhow::Result<StageReport> {
    let bar = stage_bar(global.quiet, stage, steps);
    let plain = !global.quiet && !std::io::stderr().is_terminal();
    let report = train(&mut |p: &Progress| {
        let validation = p.validation.map_or(String::new(), |v| format!(" | val {v:.4}"));
        let message = format!("loss {:.4} | {:.1} img/s{validation}", p.loss, p.images_per_s);
        if plain && (p.step.is_multiple_of(p.steps.div_ceil(20)) || p.step == p.steps) {
            eprintln!("maskid: {} step {}/{} | {message}", p.stage, p.step, p.steps);
        }
        bar.set_position(p.step as u64);
        bar.set_message(message);
    })?;
    bar.finish();
    if !args.json {
        print_report(&report);
    }
    Ok(report)
}

/// `--stage detector`: YuNet tuned on masked views of DevTrain photos (held-out people
/// validate), the teacher's face on each clean photo found first (and kept in the run folder).
fn train_detector(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => DetectorTuningConfig::load(path)?,
        None => DetectorTuningConfig::default(),
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let data_root = args.data.clone().context("--data is required")?;
    let run = args.run.clone().unwrap_or_else(|| global.assets().home().join("runs").join(&config.name));
    let options = TrainOptions {
        run: &run,
        device: maskid_g2d::device(&args.device)?,
        resume: args.resume,
        stop_after: args.stop_after,
    };
    if args.resume && detector_finished_with(&run, &config) {
        if !global.quiet {
            eprintln!("maskid: the detector is already finished in {}", run.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let held_out = held_out_people(&data_root).context("--stage detector trains on LFW (--data)")?;
    let models = global.models(Parallelism::Throughput)?;
    if !global.quiet {
        eprintln!("maskid: finding the teacher's face in the DevTrain photos of {}", data_root.display());
    }
    let (train, validation) =
        labelled_photos(&data_root, &held_out, args.max_people, &models.detector, models.config.max_pixels, &run)?;
    if !global.quiet {
        eprintln!("maskid: {} training photos, {} of held-out people", train.len(), validation.len());
    }
    let yunet = global.assets().get(&maskid_assets::YUNET)?;
    let data = DetectorData { train: &train, validation: &validation, yunet_onnx: &yunet, teacher: &models.detector };
    let steps = config.schedule.steps;
    let stage = maskid_g2d::detector::STAGE;
    let report =
        with_progress(global, args, stage, steps, |progress| tune_detector(&config, &data, &options, progress))?;
    if args.json {
        print_json(&[report])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `--stage mask`: the mask-state classifier on DevTrain photos unmasked and masked on the
/// photo (held-out people validate), UTKFace's faces (`--distill-data`) the same way, and
/// real masks (`--real-masks`, masked-wild: all but its test part); then exported to
/// `RUN/mask/mask-state.onnx`, checked against burn.
fn train_mask_state(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    use maskid_g2d::mask_state::{self, MaskData, MaskStateConfig};
    use maskid_g2d::run::RunConfig;
    let config = match &args.config {
        Some(path) => MaskStateConfig::load(path)?,
        None => MaskStateConfig::default(),
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let lfw = args.data.clone().context("--data is required (LFW)")?;
    let masked_wild = args.real_masks.clone().context("--stage mask needs --real-masks (masked-wild's photos)")?;
    let run = args.run.clone().unwrap_or_else(|| global.assets().home().join("runs").join(&config.name));
    let device = maskid_g2d::device(&args.device)?;
    let options = TrainOptions { run: &run, device: device.clone(), resume: args.resume, stop_after: args.stop_after };
    if args.resume && mask_state::mask_state_finished_with(&run, &config) {
        if !global.quiet {
            eprintln!("maskid: the mask classifier is already finished in {}", run.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let held_out = held_out_people(&lfw).context("--stage mask trains on LFW (--data)")?;
    let models = global.models(Parallelism::Throughput)?;
    let sources = maskid_pipeline::MaskSources {
        lfw: &lfw,
        held_out: &held_out,
        max_people: args.max_people,
        utkface: args.distill_data.as_deref(),
        utkface_photos: args.max_people.unwrap_or(usize::MAX),
        masked_wild: &masked_wild,
    };
    let (train, validation) = maskid_pipeline::mask_examples(&models, &sources, &global.progress())?;
    if !global.quiet {
        let count = |set: &[maskid_core::MaskExample], f: fn(&maskid_core::MaskSource) -> bool| {
            set.iter().filter(|e| f(&e.source)).count()
        };
        use maskid_core::MaskSource::{Clean, PhotoDrawn, Real};
        for (name, set) in [("training", &train), ("validation", &validation)] {
            eprintln!(
                "maskid: {name} faces: {} unmasked, {} masked on the photo, {} real masks",
                count(set, |s| *s == Clean),
                count(set, |s| matches!(s, PhotoDrawn { .. })),
                count(set, |s| *s == Real)
            );
        }
    }
    let data = MaskData { train: &train, validation: &validation };
    let report = with_progress(global, args, mask_state::STAGE, config.schedule.steps, |progress| {
        mask_state::train_mask_state(&config, &data, &options, progress)
    })?;
    if report.finished {
        let (net, _) = mask_state::load_mask_state(&run, &device)?;
        let out = run.join(mask_state::STAGE).join("mask-state.onnx");
        let faces: Vec<_> = validation.iter().take(64).map(|e| e.face.clone()).collect();
        let metadata = [("maskid_model", "mask-state".to_string()), ("trained_steps", report.steps.to_string())];
        let diff = mask_state::export_mask_state_onnx(&net, &out, &metadata, &faces, &device)?;
        if !global.quiet {
            eprintln!("maskid: exported {} (ONNX Runtime within {diff:.1e} of burn)", out.display());
        }
    }
    if args.json {
        print_json(&[report])?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The DevTrain people of the LFW at `lfw` held out of training (the validation seed's).
fn held_out_people(lfw: &std::path::Path) -> maskid_eval::Result<BTreeSet<String>> {
    let seed = EvalOptions::validation(lfw.to_path_buf()).seed;
    let people = maskid_eval::Lfw::open(lfw)?.devtrain_holdout_people(seed)?;
    Ok(people.into_iter().map(|(name, _)| name).collect())
}

/// The largest face of every photo under `dir`, aligned, as real masks to transplant.
fn real_masks(models: &maskid_pipeline::Models, dir: &std::path::Path, quiet: bool) -> anyhow::Result<RealMasks> {
    let photos = maskid_eval::image_files(&[dir.to_path_buf()])?;
    anyhow::ensure!(!photos.is_empty(), "{}: no photos for --real-masks", dir.display());
    let crops: Vec<Vec<u8>> = photos.par_iter().filter_map(|(photo, _)| models.largest_aligned_face(photo)).collect();
    let aligned = crops.len();
    let masks = RealMasks::new(crops).with_context(|| format!("real masks from {}", dir.display()))?;
    if !quiet {
        eprintln!(
            "maskid: real masks: {} photos, {aligned} faces aligned, {} kept (lower half not padding)",
            photos.len(),
            masks.len()
        );
    }
    Ok(masks)
}

fn stage_bar(quiet: bool, stage: &str, steps: usize) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:25}] {pos}/{len} eta {eta} {msg}")
            .expect("BUG: valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(stage.to_string());
    bar.enable_steady_tick(Duration::from_millis(500));
    bar
}

fn print_report(r: &StageReport) {
    let best = r.best_validation.map_or("-".into(), |(v, step)| format!("{v:.4} at step {step}"));
    println!(
        "{:<10} steps {:>6} ({} now{}) | loss {:.4} -> {:.4} | {} best {} | {:.1} img/s | peak {} MiB | {}",
        r.stage,
        r.steps,
        r.steps_this_session,
        if r.finished { ", finished" } else { ", unfinished: --resume continues" },
        r.loss_start_end.0,
        r.loss_start_end.1,
        r.validation_metric,
        best,
        r.images_per_s,
        r.peak_memory_mib.map_or("?".into(), |m| format!("{m:.0}")),
        r.dir
    );
}
