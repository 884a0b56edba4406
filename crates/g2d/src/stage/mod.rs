//! The four training stages (g2d-method.md), greedy and module-wise, and the one loop that
//! drives each of them: resume, batches, checkpoints, validation, metrics, progress.

mod classifier;
mod inpaint;
mod reformer;
mod student;

pub use student::{initial_student, load_average_student};

use std::path::Path;
use std::time::Instant;

use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use maskid_core::{AlignedFace, DensePairs, TrainingFace, VerificationPairs};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{G2dConfig, Schedule, Stage};
use crate::data::faces_tensor;
use crate::model::{embed_faces, Backbone, EncoderConfig, FaceNetwork, Inpainter};
use maskid_mask::RealMasks;

use crate::run::{load_module, module_bytes, MetricsLog, RunConfig, RunState, StageDir};
use crate::{Error, Result};

/// What a training run works on.
pub struct TrainData<'a> {
    /// Training faces (only peopleDevTrain people for maskid's own models).
    pub faces: &'a [TrainingFace],
    /// Validation pairs (mask-probe pairs of held-out training people).
    pub validation: &'a VerificationPairs,
    /// Dense validation pairs of the same people, which the teacher-initialised student is
    /// chosen by when given (the 432 pairs above are too few to tell it from the teacher).
    pub dense_validation: Option<&'a DensePairs>,
    /// The teacher's ONNX file, which the teacher-initialised student is built from.
    pub teacher_onnx: Option<&'a Path>,
    /// A G2D checkpoint whose encoder the teacher-initialised student reads the descriptor
    /// with; `None`: the run's own encoder stage.
    pub encoder_weights: Option<&'a Path>,
    /// Real masked faces for an occlusion mix with a `real` share.
    pub real_masks: Option<&'a RealMasks>,
}

impl TrainData<'_> {
    /// Number of identities (largest index + 1).
    pub fn identities(&self) -> usize {
        self.faces.iter().map(|f| f.identity as usize + 1).max().unwrap_or(0)
    }

    /// A fingerprint of the faces and labels, so a resumed run refuses other data.
    pub fn fingerprint(&self) -> String {
        let mut hash = Sha256::new();
        for f in self.faces {
            hash.update(f.identity.to_le_bytes());
            hash.update(&f.face.rgb()[..64]);
            hash.update(&f.face.rgb()[f.face.rgb().len() / 2..][..64]);
        }
        for crop in self.real_masks.map_or(&[][..], RealMasks::crops) {
            hash.update(&crop[crop.len() / 2..][..64]);
        }
        hex::encode(&hash.finalize()[..8])
    }
}

/// Where and how a stage runs.
pub struct TrainOptions<'a> {
    /// The run folder; each stage writes `run/<stage>/`.
    pub run: &'a Path,
    /// The device (`Device::flex()` by default); autodiff is added for the trained modules.
    pub device: Device,
    /// Continue from the stage's last checkpoint instead of starting over.
    pub resume: bool,
    /// Stop (after a checkpoint) once this many steps are done; the stage stays unfinished.
    pub stop_after: Option<usize>,
}

/// Progress of a stage, sent after every step.
#[derive(Debug, Clone, Serialize)]
pub struct Progress {
    /// The stage.
    pub stage: &'static str,
    /// Steps done.
    pub step: usize,
    /// Steps in the stage.
    pub steps: usize,
    /// Loss of the last step.
    pub loss: f64,
    /// Training images per second in this session.
    pub images_per_s: f64,
    /// Last validation value, if any.
    pub validation: Option<f64>,
}

/// What a stage did.
#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    /// The stage.
    pub stage: &'static str,
    /// Its folder.
    pub dir: String,
    /// Steps done (all sessions).
    pub steps: usize,
    /// Steps done in this session.
    pub steps_this_session: usize,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Mean loss of the first 10% of this session's steps and of the last 10%.
    pub loss_start_end: (f64, f64),
    /// Best validation value and its step.
    pub best_validation: Option<(f64, usize)>,
    /// What the validation value is.
    pub validation_metric: &'static str,
    /// Training images per second in this session (validation excluded).
    pub images_per_s: f64,
    /// Wall-clock seconds over all sessions.
    pub elapsed_s: f64,
    /// Peak resident memory of the process so far, MiB.
    pub peak_memory_mib: Option<f64>,
    /// All steps done.
    pub finished: bool,
}

/// One step's loss and its named terms.
pub(crate) struct StepLoss {
    pub total: f64,
    pub terms: Vec<(&'static str, f64)>,
}

impl StepLoss {
    /// The values of a loss and its terms, read off their tensors.
    pub(crate) fn read(total: Tensor<1>, terms: Vec<(&'static str, Tensor<1>)>) -> Self {
        Self {
            total: f64::from(total.into_scalar::<f32>()),
            terms: terms.into_iter().map(|(name, t)| (name, f64::from(t.into_scalar::<f32>()))).collect(),
        }
    }
}

/// A module trained by one optimiser: what the reformer, student, classifier and detector
/// stages checkpoint, restore and step.
pub(crate) struct Trained<M: Module> {
    /// The module being trained.
    pub(crate) model: M,
    optimizer: ModuleOptimizer,
}

impl<M: Module> Trained<M> {
    /// `model` under Adam with `schedule`'s betas and weight decay.
    pub(crate) fn new(model: M, schedule: &Schedule) -> Self {
        Self { model, optimizer: adam(schedule) }
    }

    /// The checkpoint parts: the module and the optimiser's state.
    pub(crate) fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        Ok(vec![("model", module_bytes(&self.model)?), ("optimizer", optimizer_bytes(&self.optimizer)?)])
    }

    /// Both, from a checkpoint of [`Trained::parts`].
    pub(crate) fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.model =
            load_module(self.model.clone(), dir.load_part(state, "model")?, &dir.path().display().to_string())?;
        self.optimizer = restore_optimizer(self.optimizer.clone(), dir, state, "optimizer")?;
        Ok(())
    }

    /// One optimiser step at learning rate `lr`.
    pub(crate) fn step(&mut self, lr: f64, grads: burn::optim::GradientsParams) {
        self.model = self.optimizer.step(lr, self.model.clone(), grads);
    }
}

/// What differs between stages; [`drive`] does the rest.
pub(crate) trait StageLoop {
    /// Name of the validation value (higher is better).
    fn metric(&self) -> &'static str;
    /// Validate once before the first step too (a stage that starts from a trained network
    /// logs where it started, and keeps that network if training never beats it).
    const VALIDATE_AT_START: bool = false;
    /// The checkpoint's parts (model, optimiser state, ...).
    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>>;
    /// Restores the parts of a checkpoint.
    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()>;
    /// Trains on batch `step`.
    fn step(&mut self, step: usize) -> Result<StepLoss>;
    /// Validation: the metric and extra values for the log.
    fn validate(&mut self) -> Result<(f64, serde_json::Value)>;
    /// The module to keep as the stage's result when validation is best.
    fn best(&self) -> Result<Bytes>;
}

/// Trains one stage.
pub fn train_stage(
    config: &G2dConfig,
    stage: Stage,
    data: &TrainData<'_>,
    options: &TrainOptions<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<StageReport> {
    if data.faces.is_empty() {
        return Err(Error::Data("the training set is empty".into()));
    }
    match stage {
        Stage::Inpaint | Stage::Encoder => {
            let mut stage_loop = inpaint::Reconstruction::new(config, stage, data, options)?;
            drive(&mut stage_loop, config, stage.name(), &data.fingerprint(), options, progress)
        }
        Stage::Reformer => match &config.model.student {
            Some(student) => {
                let mut stage_loop = student::StudentDistillation::new(config, student, data, options)?;
                drive(&mut stage_loop, config, stage.name(), &data.fingerprint(), options, progress)
            }
            None => {
                let mut stage_loop = reformer::Distillation::new(config, data, options)?;
                drive(&mut stage_loop, config, stage.name(), &data.fingerprint(), options, progress)
            }
        },
        Stage::Classifier => {
            let mut stage_loop = classifier::Classifier::new(config, data, options)?;
            drive(&mut stage_loop, config, stage.name(), &data.fingerprint(), options, progress)
        }
    }
}

/// Whether `run` holds the stage named `stage` finished with this very config (so `--resume`
/// skips it).
pub fn finished_with<C: RunConfig + PartialEq>(run: &Path, stage: &'static str, config: &C) -> bool {
    StageDir::finished(run, stage).is_ok_and(|(dir, state)| ran_with(&dir, &state, config))
}

/// Whether the checkpoints of `dir` were trained with `config`: the same text, or a saved
/// config that reads as the same one (a run saved by an older maskid writes its config with
/// keys since moved or added, so its hash differs).
fn ran_with<C: RunConfig + PartialEq>(dir: &StageDir, state: &RunState, config: &C) -> bool {
    state.config_sha256 == config_sha256(config) || dir.config::<C>().is_ok_and(|saved| saved == *config)
}

/// `config` less its name and `stage`'s step count: two configs of one shape differ only in
/// what the run is called and how long the stage trains.
fn run_shape<C: RunConfig>(config: &C, stage: &str) -> Option<toml::Table> {
    let mut table: toml::Table = toml::from_str(&config.to_toml()).ok()?;
    table.remove("name");
    let schedule = C::schedule_table(&mut table, stage)?;
    schedule.remove("steps");
    schedule.remove("decay_from");
    Some(table)
}

fn config_sha256(config: &impl RunConfig) -> String {
    hex::encode(Sha256::digest(config.to_toml().as_bytes()))
}

/// Trains the stage named `stage` with `stage_loop` (of G2D or the detector), from its last
/// checkpoint when resuming; `data_fingerprint` ties the checkpoints to the data.
pub(crate) fn drive<L: StageLoop, C: RunConfig + PartialEq>(
    stage_loop: &mut L,
    config: &C,
    stage: &'static str,
    data_fingerprint: &str,
    options: &TrainOptions<'_>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<StageReport> {
    reset_peak_memory();
    let schedule = config.stage_schedule(stage);
    let dir = StageDir::create(options.run, stage)?;
    let config_sha256 = config_sha256(config);
    let mut state = match (dir.state()?, options.resume) {
        (Some(mut saved), true) => {
            if !ran_with(&dir, &saved, config) {
                let saved_config = dir.config::<C>()?;
                let longer = schedule.steps > saved.step
                    && saved_config.stage_schedule(stage).constant_before(saved.step)
                    && schedule.constant_before(saved.step)
                    && run_shape(&saved_config, stage)
                        .is_some_and(|saved_shape| Some(saved_shape) == run_shape(config, stage));
                if !longer {
                    return Err(Error::Checkpoint(format!(
                        "{}: the checkpoint was trained with another config (see its config.toml); resume with that config (only the name, this stage's steps and a decay_from not before the saved step may change: more steps extend the run) or start a new run folder",
                        dir.path().display()
                    )));
                }
                // The same run, trained on for more steps: the rate was constant up to the saved
                // step in both configs, so the steps already taken are those this run takes.
                saved.finished = false;
            }
            // From here on the checkpoints are this config's (its text, as saved below).
            saved.config_sha256.clone_from(&config_sha256);
            if saved.data_fingerprint != data_fingerprint {
                return Err(Error::Checkpoint(format!(
                    "{}: the checkpoint was trained on other data; resume with the same data or start a new run folder",
                    dir.path().display()
                )));
            }
            stage_loop.restore(&dir, &saved)?;
            saved
        }
        (Some(saved), false) if saved.step > 0 => {
            return Err(Error::Checkpoint(format!(
                "{}: a checkpoint of step {} exists: pass --resume to continue it, or another run folder to start over",
                dir.path().display(),
                saved.step
            )));
        }
        _ => RunState { config_sha256, data_fingerprint: data_fingerprint.to_string(), ..RunState::default() },
    };
    dir.save_config(config)?;
    let mut metrics = dir.metrics(state.step)?;
    let start_step = state.step;
    let end_step = options.stop_after.map_or(schedule.steps, |s| s.min(schedule.steps));
    let session = Instant::now();
    let mut train_s = 0.0;
    let mut losses = Vec::new();
    let mut last_validation = state.best_validation;
    let validate_every = if schedule.validate_every == 0 { usize::MAX } else { schedule.validate_every };
    let mut new_best = None;
    if L::VALIDATE_AT_START && state.step == 0 && validate_every != usize::MAX {
        let value = log_validation(stage_loop, &mut metrics, 0)?;
        last_validation = Some(value);
        state.best_validation = Some(value);
        new_best = Some(stage_loop.best()?);
    }
    while state.step < end_step {
        let t = Instant::now();
        let loss = stage_loop.step(state.step)?;
        if !loss.total.is_finite() {
            return Err(Error::Diverged(format!(
                "stage {} step {}: the loss is {} (lower {}.schedule.lr?)",
                stage,
                state.step + 1,
                loss.total,
                stage
            )));
        }
        train_s += t.elapsed().as_secs_f64();
        state.step += 1;
        losses.push(loss.total);
        let images_per_s = (losses.len() * schedule.batch_size) as f64 / train_s.max(1e-9);
        let lr = schedule.lr_at(state.step - 1);
        let mut line = serde_json::json!({ "step": state.step, "kind": "train", "loss": loss.total, "lr": lr, "images_per_s": images_per_s });
        for (name, value) in &loss.terms {
            line[*name] = (*value).into();
        }
        metrics.log(&line)?;
        let done = state.step == schedule.steps;
        if state.step % validate_every == 0 || done {
            let value = log_validation(stage_loop, &mut metrics, state.step)?;
            last_validation = Some(value);
            // NaN (nothing to validate on) counts as a first best, so the stage has a result.
            if state.best_validation.is_none_or(|best| value > best || best.is_nan()) {
                state.best_validation = Some(value);
                state.best_step = state.step;
                new_best = Some(stage_loop.best()?);
            }
        }
        // A new best is written with the checkpoint of its step, so state.json never points at
        // a best model that is not on disk.
        if state.step % schedule.checkpoint_every == 0 || done || state.step == end_step || new_best.is_some() {
            state.finished = done;
            state.elapsed_s += session.elapsed().as_secs_f64();
            let parts = stage_loop.parts()?;
            dir.save_checkpoint(&mut state, &parts, new_best.take())?;
            state.elapsed_s -= session.elapsed().as_secs_f64();
        }
        progress(&Progress {
            stage,
            step: state.step,
            steps: schedule.steps,
            loss: loss.total,
            images_per_s,
            validation: last_validation,
        });
    }
    state.elapsed_s += session.elapsed().as_secs_f64();
    let records = metrics.read()?;
    crate::curves::write_curves(&dir, &records, stage_loop.metric())?;
    let tenth = (losses.len() / 10).max(1);
    let mean = |xs: &[f64]| if xs.is_empty() { f64::NAN } else { xs.iter().sum::<f64>() / xs.len() as f64 };
    Ok(StageReport {
        stage,
        dir: dir.path().display().to_string(),
        steps: state.step,
        steps_this_session: state.step - start_step,
        final_loss: losses.last().copied().unwrap_or(f64::NAN),
        loss_start_end: (mean(&losses[..tenth.min(losses.len())]), mean(&losses[losses.len().saturating_sub(tenth)..])),
        best_validation: state.best_validation.map(|v| (v, state.best_step)),
        validation_metric: stage_loop.metric(),
        images_per_s: (losses.len() * schedule.batch_size) as f64 / train_s.max(1e-9),
        elapsed_s: state.elapsed_s,
        peak_memory_mib: peak_memory_mib(),
        finished: state.finished,
    })
}

/// Validates and logs the value (and the loop's extra values) at `step`.
fn log_validation<L: StageLoop>(stage_loop: &mut L, metrics: &mut MetricsLog, step: usize) -> Result<f64> {
    let (value, extra) = stage_loop.validate()?;
    let mut line = serde_json::json!({ "step": step, "kind": "validation" });
    line[stage_loop.metric()] = value.into();
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        obj.extend(more);
    }
    metrics.log(&line)?;
    Ok(value)
}

/// Starts a new peak-memory measurement (Linux: `5` to /proc/self/clear_refs), so each
/// stage reports its own peak.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident memory (VmHWM) of this process since the stage began, where /proc tells it.
pub fn peak_memory_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The seed of batch `step`'s occluders: one function of (stage seed, step), so a resumed
/// run draws the masks an uninterrupted one would.
pub(crate) fn step_seed(seed: u64, step: usize) -> u64 {
    seed ^ (step as u64 + 1).wrapping_mul(0x632b_e59b_d9b4_e019)
}

/// Adam as a schedule configures it.
pub(crate) fn adam(schedule: &Schedule) -> ModuleOptimizer {
    let mut config = AdamConfig::new().with_beta_1(schedule.beta1).with_beta_2(schedule.beta2);
    if schedule.weight_decay > 0.0 {
        config = config.with_weight_decay(Some(WeightDecayConfig::new(schedule.weight_decay)));
    }
    config.init()
}

/// Restores an optimiser's state from a checkpoint part.
pub(crate) fn restore_optimizer(
    optimizer: ModuleOptimizer,
    dir: &StageDir,
    state: &RunState,
    part: &str,
) -> Result<ModuleOptimizer> {
    let bytes = dir.load_part(state, part)?;
    optimizer
        .from_bytes(bytes)
        .map_err(|e| Error::Checkpoint(format!("{}: optimiser state '{part}' unreadable ({e})", dir.path().display())))
}

/// The optimiser's state as a checkpoint part.
pub(crate) fn optimizer_bytes(optimizer: &ModuleOptimizer) -> Result<Bytes> {
    optimizer.into_bytes().map_err(|e| Error::Checkpoint(format!("encoding optimiser state: {e}")))
}

/// The inpainting network a stage starts from: the best model of the previous stage, or a
/// fresh one seeded by the config.
pub(crate) fn load_inpainter(
    config: &G2dConfig,
    run: &Path,
    previous: Option<Stage>,
    device: &Device,
) -> Result<Inpainter> {
    device.seed(config.seed);
    let fresh = config.model.encoder.init(device);
    match previous {
        None => Ok(fresh),
        Some(stage) => {
            let (dir, state) = StageDir::finished(run, stage.name())?;
            if stage != Stage::Inpaint {
                check_same_network(&dir, config, |c| c.model.encoder.clone())?;
                return dir.load_best(&state, fresh);
            }
            // Stage 0 trains encoder and decoder as one network, so its weights serve any
            // descriptor depth; after stage 1 the depth is fixed (only the encoder was tuned).
            let unsplit = |c: &G2dConfig| EncoderConfig { descriptor_block: 0, ..c.model.encoder.clone() };
            check_same_network(&dir, config, unsplit)?;
            let saved = dir.config::<G2dConfig>()?.model.encoder.init(device);
            Ok(dir.load_best(&state, saved)?.split_at(config.model.encoder.descriptor_block))
        }
    }
}

/// The backbone trained by the reformer stage of `run`.
pub fn load_backbone(run: &Path, device: &Device) -> Result<(Backbone, G2dConfig)> {
    let (dir, state) = StageDir::finished(run, Stage::Reformer.name())?;
    let config = dir.config::<G2dConfig>()?;
    Ok((dir.load_best(&state, new_backbone(&config, device))?, config))
}

/// The inpainting network (encoder + decoder) of `run`: after stage 1 if it ran, else stage 0.
pub fn load_trained_inpainter(run: &Path, device: &Device) -> Result<Inpainter> {
    let (dir, state) =
        StageDir::finished(run, Stage::Encoder.name()).or_else(|_| StageDir::finished(run, Stage::Inpaint.name()))?;
    dir.load_best(&state, dir.config::<G2dConfig>()?.model.encoder.init(device))
}

/// A fresh backbone of `config`'s shape.
pub(crate) fn new_backbone(config: &G2dConfig, device: &Device) -> Backbone {
    Backbone {
        encoder: config.model.encoder.init(device).encoder,
        reformer: config.model.reformer.init(config.model.encoder.width, device),
    }
}

/// Refuses to continue from a stage trained with another network shape.
pub(crate) fn check_same_network<T: PartialEq + std::fmt::Debug>(
    previous: &StageDir,
    config: &G2dConfig,
    part: impl Fn(&G2dConfig) -> T,
) -> Result<()> {
    let theirs = previous.config::<G2dConfig>()?;
    if part(&theirs) != part(config) {
        return Err(Error::Checkpoint(format!(
            "{}: trained with {:?} but this config has {:?}; use the same [model] section for every stage of a run",
            previous.path().display(),
            part(&theirs),
            part(config)
        )));
    }
    Ok(())
}

/// Validation on verification pairs: mean 10-fold accuracy, and for the log the AUC, the
/// accuracy-maximising threshold over all pairs and the pair count.
pub fn verification_accuracy(
    network: &impl FaceNetwork,
    pairs: &VerificationPairs,
    device: &Device,
) -> Result<(f64, serde_json::Value)> {
    let refs = embed_faces(network, &pairs.references.iter().collect::<Vec<_>>(), device)?;
    let probes = embed_faces(network, &pairs.probes.iter().collect::<Vec<_>>(), device)?;
    let scores: Vec<f32> = refs.iter().zip(&probes).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x * y).sum()).collect();
    let metrics = maskid_eval::verification_metrics(&scores, &pairs.genuine, &pairs.folds);
    let extra = serde_json::json!({ "auc": metrics.auc, "threshold": metrics.threshold, "pairs": pairs.genuine.len() });
    Ok((metrics.accuracy_mean, extra))
}

/// Name of [`dense_verification`]'s value.
pub const DENSE_METRIC: &str = "dense_tar_far_1e-3";

/// Validation on dense pairs: the mean of TAR at FAR 1e-3 over clean, mask-probe and
/// mask-both pairs (so a masked-face gain cannot hide a clean loss), and each of them, TAR at
/// FAR 1e-4 and the pair counts for the log. Each face is embedded once clean and once masked.
pub fn dense_verification(
    network: &impl FaceNetwork,
    dense: &DensePairs,
    device: &Device,
) -> Result<(f64, serde_json::Value)> {
    let clean = embed_faces(network, &dense.clean.iter().collect::<Vec<_>>(), device)?;
    let masked = embed_faces(network, &dense.masked.iter().collect::<Vec<_>>(), device)?;
    let cosine = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    let tar = |metrics: &maskid_eval::VerificationMetrics, far: f64| {
        metrics.tar_at_far.iter().find(|t| t.far == far).and_then(|t| t.tar).unwrap_or(f64::NAN)
    };
    let genuine = dense.genuine.iter().filter(|&&g| g).count();
    let mut extra = serde_json::json!({ "genuine": genuine, "impostor": dense.genuine.len() - genuine });
    let mut sum = 0.0;
    for (name, references, probes) in
        [("clean", &clean, &clean), ("mask_probe", &clean, &masked), ("mask_both", &masked, &masked)]
    {
        let scores: Vec<f32> =
            dense.pairs.iter().map(|&(a, b)| cosine(&references[a as usize], &probes[b as usize])).collect();
        let metrics = maskid_eval::verification_metrics(&scores, &dense.genuine, &dense.folds);
        sum += tar(&metrics, 1e-3);
        extra[format!("{name}_tar_far_1e-3")] = tar(&metrics, 1e-3).into();
        extra[format!("{name}_tar_far_1e-4")] = tar(&metrics, 1e-4).into();
    }
    Ok((sum / 3.0, extra))
}

/// The inpainting network's reconstruction of each face, in batches of 32.
pub fn restore_faces(inpainter: &Inpainter, faces: &[AlignedFace], device: &Device) -> Result<Vec<AlignedFace>> {
    let mut out = Vec::with_capacity(faces.len());
    for chunk in faces.chunks(32) {
        let rgb: Vec<&[u8]> = chunk.iter().map(|f| f.rgb()).collect();
        out.extend(crate::data::tensor_faces(inpainter.forward(faces_tensor(&rgb, device)))?);
    }
    Ok(out)
}
