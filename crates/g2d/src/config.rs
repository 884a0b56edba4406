//! The training configuration: one TOML file holds the network and every stage's
//! hyper-parameters and seeds. A file is read over the `small` preset: every key it does not
//! name keeps the preset's value, also inside a table it names in part (`[encoder.schedule]`
//! with only `steps` keeps the encoder's own learning rate, betas and batch). Unknown keys
//! and out-of-range values are errors that name the key.

use serde::{Deserialize, Serialize};

use crate::model::{DiscriminatorConfig, EncoderConfig, ReformerConfig, StudentConfig};
use crate::{Error, Result};

pub use maskid_mask::OcclusionMix;

/// The four training stages, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// 0: encoder + decoder learn to fill in covered faces.
    Inpaint,
    /// 1: the encoder is fine-tuned on masked faces by pixel reconstruction.
    Encoder,
    /// 2: the reformer learns the teacher's relations, encoder frozen.
    Reformer,
    /// 3: the classifier learns identities, backbone frozen.
    Classifier,
}

impl Stage {
    /// The stages in training order (`--stage all`).
    pub const ALL: [Stage; 4] = [Stage::Inpaint, Stage::Encoder, Stage::Reformer, Stage::Classifier];

    /// The name used in configs, folders and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Inpaint => "inpaint",
            Stage::Encoder => "encoder",
            Stage::Reformer => "reformer",
            Stage::Classifier => "classifier",
        }
    }

    /// Parses a stage name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name).ok_or_else(|| {
            Error::Config(format!("unknown stage '{name}': expected one of inpaint, encoder, reformer, classifier"))
        })
    }

    /// The stage whose checkpoint this one starts from.
    pub fn previous(self) -> Option<Stage> {
        match self {
            Stage::Inpaint => None,
            Stage::Encoder => Some(Stage::Inpaint),
            Stage::Reformer => Some(Stage::Encoder),
            Stage::Classifier => Some(Stage::Reformer),
        }
    }
}

/// Steps, optimiser and bookkeeping of one stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Schedule {
    /// Optimiser steps (batches) in the stage.
    pub steps: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Keep `lr` up to this step, then follow a half cosine down to zero at `steps`. Unset: `lr`
    /// throughout. A constant rate leaves the student wandering about its best point; annealing
    /// lets it settle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decay_from: Option<usize>,
    /// Adam beta 1.
    pub beta1: f32,
    /// Adam beta 2.
    pub beta2: f32,
    /// L2 weight decay (0: none).
    pub weight_decay: f32,
    /// Write a checkpoint every this many steps (and at the end).
    pub checkpoint_every: usize,
    /// Validate every this many steps (and at the end); 0 validates only at the end.
    pub validate_every: usize,
    /// Seed of the data order and the synthetic masks.
    pub seed: u64,
}

impl Schedule {
    /// The learning rate of the step that starts at `step` (0-based).
    pub fn lr_at(&self, step: usize) -> f64 {
        match self.decay_from {
            Some(from) if step >= from => {
                // `validate` keeps `from` below `steps`; a schedule built in code may not.
                let progress = (step - from) as f64 / self.steps.saturating_sub(from).max(1) as f64;
                self.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            _ => self.lr,
        }
    }

    /// Whether every step before `step` ran at the base `lr`.
    pub fn constant_before(&self, step: usize) -> bool {
        self.decay_from.is_none_or(|from| from >= step)
    }

    /// Checks the ranges of every key; errors name the key as `{table}.{key}`.
    pub fn validate(&self, table: &str) -> std::result::Result<(), String> {
        let key = |k: &str| format!("{table}.{k}");
        positive(&key("steps"), self.steps)?;
        if self.batch_size < 2 {
            return Err(format!("{} = {}: must be at least 2", key("batch_size"), self.batch_size));
        }
        positive(&key("checkpoint_every"), self.checkpoint_every)?;
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(format!("{} = {}: must be a positive number", key("lr"), self.lr));
        }
        if let Some(from) = self.decay_from.filter(|&from| from >= self.steps) {
            return Err(format!("{} = {from}: must be below {} ({})", key("decay_from"), key("steps"), self.steps));
        }
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(format!("{} = {beta}: must be in [0, 1)", key(name)));
            }
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(format!("{} = {}: must be 0 or more", key("weight_decay"), self.weight_decay));
        }
        Ok(())
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 32,
            lr: 1e-3,
            decay_from: None,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            checkpoint_every: 100,
            validate_every: 250,
            seed: 7,
        }
    }
}

/// Stage 0: inpainting pretraining (ICT's upsampler losses).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InpaintConfig {
    /// Steps and optimiser.
    pub schedule: Schedule,
    /// Weight of the L1 error inside the covered region.
    pub hole_weight: f32,
    /// Weight of the L1 error outside it.
    pub valid_weight: f32,
    /// Weight of the least-squares adversarial term (0: no discriminator is trained).
    pub adversarial_weight: f32,
    /// Weight of the perceptual term: L1 between the discriminator's features of the restored
    /// and the clean face (needs `adversarial_weight > 0`).
    pub perceptual_weight: f32,
    /// Weight of the style term: L1 between Gram matrices of those features.
    pub style_weight: f32,
    /// What covers the faces.
    pub occlusion: OcclusionMix,
}

impl Default for InpaintConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule { steps: 1500, lr: 1e-3, ..Schedule::default() },
            hole_weight: 6.0,
            valid_weight: 1.0,
            adversarial_weight: 0.0,
            perceptual_weight: 0.0,
            style_weight: 0.0,
            occlusion: OcclusionMix::default(),
        }
    }
}

/// Stage 1: self-supervised fine-tuning of the encoder on masked faces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderStageConfig {
    /// Steps and optimiser (the paper: Adam, lr 1e-5, betas 0.5/0.9, batch 16).
    pub schedule: Schedule,
    /// Weight of the L1 error inside the covered region.
    pub hole_weight: f32,
    /// Weight of the L1 error outside it.
    pub valid_weight: f32,
    /// Only masks here: the encoder is specialised to masked faces.
    pub occlusion: OcclusionMix,
}

impl Default for EncoderStageConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule { steps: 500, batch_size: 16, lr: 1e-5, beta1: 0.5, beta2: 0.9, ..Schedule::default() },
            hole_weight: 6.0,
            valid_weight: 1.0,
            occlusion: OcclusionMix { mask: 1.0, strokes: 0.0, blocks: 0.0, clean: 0.0, real: 0.0, hold_out: None },
        }
    }
}

/// Weights of the relation-distillation terms (loss/relation.rs); 0 turns a term off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelationWeights {
    /// Pairwise cosine-similarity matrices must match.
    pub similarity: f32,
    /// RKD distance term: normalised pairwise distances must match.
    pub rkd_distance: f32,
    /// RKD angle term: angles of every triplet must match.
    pub rkd_angle: f32,
    /// Direct feature approximation through a learned projection to the teacher's dimension.
    pub feature: f32,
    /// Identity margin on the batch's labels: each view must be closer, by a cosine margin, to
    /// the other views of its person than to anyone else in the batch. Distillation alone can
    /// only copy the teacher; this term is the one that can add to it. 0 (unset) turns it off.
    #[serde(skip_serializing_if = "is_zero")]
    pub identity: f32,
    /// Identity margin from masked to clean, the comparison mask-probe makes: each student view
    /// must be closer, by the same margin, to the teacher's clean embeddings of its person's
    /// photos (its own included) than to any other person's in the batch. 0 (unset) turns it off.
    #[serde(skip_serializing_if = "is_zero")]
    pub cross_identity: f32,
    /// A margin at the verification threshold, masked to clean: each student view must be
    /// clearly above the cut with the teacher's clean embeddings of its person's photos and
    /// clearly below it with everyone else's in the batch. 0 (unset) turns it off.
    #[serde(skip_serializing_if = "is_zero")]
    pub verification: f32,
}

/// An unset (default) number, left out of a saved config so older configs read back equal.
fn is_zero<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

impl Default for RelationWeights {
    fn default() -> Self {
        Self {
            similarity: 1.0,
            rkd_distance: 0.0,
            rkd_angle: 0.0,
            feature: 1.0,
            identity: 0.0,
            cross_identity: 0.0,
            verification: 0.0,
        }
    }
}

/// Stage 2: relation distillation from the teacher into the reformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReformerStageConfig {
    /// Steps and optimiser; `batch_size` must equal identities x images per identity.
    pub schedule: Schedule,
    /// P: identities per batch.
    pub identities_per_batch: usize,
    /// K: images per identity (drawn with new masks when a person has fewer photos).
    pub images_per_identity: usize,
    /// The relation terms.
    pub relation: RelationWeights,
    /// What covers the student's faces (the teacher always sees them clean).
    pub occlusion: OcclusionMix,
    /// Share of the student's faces mirrored left to right (with their occluder).
    pub mirror: f64,
    /// Share of the student's faces shown in a degraded photo condition (blur, low
    /// resolution, light, colour cast, noise: `condition::degrade`); the teacher's targets stay
    /// the clean faces'.
    #[serde(skip_serializing_if = "is_zero")]
    pub condition: f64,
    /// The teacher's target for a face is the mean of its embeddings of the face and of its
    /// mirror image (a two-view ensemble, flip-invariant as mirrored views need), not of the
    /// face alone. Read when the training data are prepared.
    pub teacher_mirror_average: bool,
    /// Look-alike batches when above 0: each batch is one person and P-1 others drawn from the
    /// `lookalikes` people nearest them by the teacher (data.rs, `IdentitySampler`). 0 (unset):
    /// P people at random.
    #[serde(skip_serializing_if = "is_zero")]
    pub lookalikes: usize,
}

impl Default for ReformerStageConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule { steps: 3000, lr: 1e-3, weight_decay: 5e-4, ..Schedule::default() },
            identities_per_batch: 16,
            images_per_identity: 2,
            relation: RelationWeights::default(),
            occlusion: OcclusionMix::default(),
            mirror: 0.0,
            condition: 0.0,
            teacher_mirror_average: false,
            lookalikes: 0,
        }
    }
}

/// Stage 3: the identity classifier on the frozen backbone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClassifierStageConfig {
    /// Steps and optimiser.
    pub schedule: Schedule,
    /// What covers the faces.
    pub occlusion: OcclusionMix,
}

impl Default for ClassifierStageConfig {
    fn default() -> Self {
        Self { schedule: Schedule { steps: 1000, lr: 1e-2, ..Schedule::default() }, occlusion: OcclusionMix::default() }
    }
}

/// The networks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Inpainting encoder + decoder.
    pub encoder: EncoderConfig,
    /// Descriptor -> identity embedding.
    pub reformer: ReformerConfig,
    /// PatchGAN critic of the inpainting stage.
    pub discriminator: DiscriminatorConfig,
    /// When set, the reformer stage trains the teacher-initialised student (model/student.rs)
    /// instead of the ResNet reformer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student: Option<StudentConfig>,
}

/// Everything a training run needs; saved beside each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct G2dConfig {
    /// A name for reports.
    pub name: String,
    /// Seed of the weight initialisation.
    pub seed: u64,
    /// The networks.
    pub model: ModelConfig,
    /// Stage 0.
    pub inpaint: InpaintConfig,
    /// Stage 1.
    pub encoder: EncoderStageConfig,
    /// Stage 2.
    pub reformer: ReformerStageConfig,
    /// Stage 3.
    pub classifier: ClassifierStageConfig,
}

impl Default for G2dConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl G2dConfig {
    /// The CPU default: trains on 2 cores.
    pub fn small() -> Self {
        Self {
            name: "small".into(),
            seed: 7,
            model: ModelConfig::default(),
            inpaint: InpaintConfig::default(),
            encoder: EncoderStageConfig::default(),
            reformer: ReformerStageConfig::default(),
            classifier: ClassifierStageConfig::default(),
        }
    }

    /// ICT's upsampler sizes (256 channels, 8 dilated blocks, 64-channel stem) with the
    /// adversarial, perceptual and style terms on: for a GPU.
    pub fn paper() -> Self {
        let mut config = Self::small();
        config.name = "paper".into();
        config.model.encoder = EncoderConfig::paper();
        config.model.reformer = ReformerConfig::paper();
        config.model.discriminator = DiscriminatorConfig { width: 64 };
        config.inpaint.adversarial_weight = 0.1;
        config.inpaint.perceptual_weight = 0.1;
        config.inpaint.style_weight = 250.0;
        config.inpaint.schedule.steps = 100_000;
        config.encoder.schedule.steps = 20_000;
        config.reformer.schedule.steps = 50_000;
        config.classifier.schedule.steps = 10_000;
        config
    }

    /// The names of the presets.
    pub const PRESETS: [&'static str; 2] = ["small", "paper"];

    /// A named preset: `small` or `paper`.
    pub fn preset(name: &str) -> Result<Self> {
        match name {
            "small" => Ok(Self::small()),
            "paper" => Ok(Self::paper()),
            _ => Err(Error::Config(format!("unknown preset '{name}': expected one of small, paper"))),
        }
    }

    /// Parses TOML over the `small` preset, table by table; the error names the key and the
    /// allowed values.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let mut file: toml::Table = toml::from_str(text).map_err(|e| Error::Config(format!("{origin}: {e}")))?;
        // Configs of runs saved by an older maskid hold what is no longer a G2D setting: the
        // detector's table (it has its own config now) and the student's encoder file (a path,
        // given with `--encoder-weights` now).
        file.remove("detector");
        if let Some(toml::Value::Table(student)) = file.get_mut("model").and_then(|m| m.get_mut("student")) {
            student.remove("encoder_weights");
        }
        over_defaults(Self::small(), file, origin, Self::validate)
    }

    /// Reads and checks a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        Self::from_toml(&read_config(path)?, &path.display().to_string())
    }

    /// The TOML text of this configuration.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("BUG: the config serialises")
    }

    /// The schedule of a stage, to change.
    pub fn schedule_mut(&mut self, stage: Stage) -> &mut Schedule {
        match stage {
            Stage::Inpaint => &mut self.inpaint.schedule,
            Stage::Encoder => &mut self.encoder.schedule,
            Stage::Reformer => &mut self.reformer.schedule,
            Stage::Classifier => &mut self.classifier.schedule,
        }
    }

    /// The schedule of a stage.
    pub fn schedule(&self, stage: Stage) -> &Schedule {
        match stage {
            Stage::Inpaint => &self.inpaint.schedule,
            Stage::Encoder => &self.encoder.schedule,
            Stage::Reformer => &self.reformer.schedule,
            Stage::Classifier => &self.classifier.schedule,
        }
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let enc = &self.model.encoder;
        positive("model.encoder.stem_width", enc.stem_width)?;
        positive("model.encoder.width", enc.width)?;
        positive("model.encoder.res_blocks", enc.res_blocks)?;
        positive("model.encoder.dilation", enc.dilation)?;
        if !enc.width.is_multiple_of(2) {
            return Err(format!("model.encoder.width = {}: must be even", enc.width));
        }
        if enc.descriptor_block == 0 || enc.descriptor_block > enc.res_blocks {
            return Err(format!(
                "model.encoder.descriptor_block = {}: must be between 1 and model.encoder.res_blocks ({})",
                enc.descriptor_block, enc.res_blocks
            ));
        }
        let re = &self.model.reformer;
        if re.widths.len() != 4 || re.blocks.len() != 4 {
            return Err("model.reformer.widths and model.reformer.blocks: need 4 entries each (four stages)".into());
        }
        for (i, (&w, &b)) in re.widths.iter().zip(&re.blocks).enumerate() {
            positive(&format!("model.reformer.widths[{i}]"), w)?;
            positive(&format!("model.reformer.blocks[{i}]"), b)?;
        }
        positive("model.reformer.embedding_dim", re.embedding_dim)?;
        positive("model.discriminator.width", self.model.discriminator.width)?;
        if let Some(student) = &self.model.student {
            positive("model.student.adapter_width", student.adapter_width)?;
        }
        for stage in Stage::ALL {
            self.schedule(stage).validate(&format!("{}.schedule", stage.name()))?;
        }
        let r = &self.reformer;
        positive("reformer.identities_per_batch", r.identities_per_batch)?;
        positive("reformer.images_per_identity", r.images_per_identity)?;
        if r.identities_per_batch * r.images_per_identity != r.schedule.batch_size {
            return Err(format!(
                "reformer.schedule.batch_size = {}: must equal reformer.identities_per_batch x reformer.images_per_identity ({} x {})",
                r.schedule.batch_size, r.identities_per_batch, r.images_per_identity
            ));
        }
        if r.lookalikes > 0 && r.lookalikes + 1 < r.identities_per_batch {
            return Err(format!(
                "reformer.lookalikes = {}: a batch's other {} people are drawn from that many look-alikes, so it must be at least {1} (or 0: random people)",
                r.lookalikes,
                r.identities_per_batch - 1
            ));
        }
        if !(0.0..=1.0).contains(&r.mirror) {
            return Err(format!("reformer.mirror = {}: must be between 0 and 1", r.mirror));
        }
        if !(0.0..=1.0).contains(&r.condition) {
            return Err(format!("reformer.condition = {}: must be between 0 and 1", r.condition));
        }
        let w = &r.relation;
        for (name, weight) in
            [("identity", w.identity), ("cross_identity", w.cross_identity), ("verification", w.verification)]
        {
            if weight < 0.0 || !weight.is_finite() {
                return Err(format!("reformer.relation.{name} = {weight}: must be 0 or more"));
            }
        }
        if [w.similarity, w.rkd_distance, w.rkd_angle, w.feature].iter().all(|&x| x <= 0.0) {
            return Err(
                "reformer.relation: at least one of similarity, rkd_distance, rkd_angle, feature must be > 0".into()
            );
        }
        let i = &self.inpaint;
        if (i.perceptual_weight > 0.0 || i.style_weight > 0.0) && i.adversarial_weight <= 0.0 {
            return Err("inpaint.perceptual_weight and inpaint.style_weight use the discriminator's features: set inpaint.adversarial_weight > 0".into());
        }
        Ok(())
    }
}

/// A config file's text.
pub(crate) fn read_config(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.display().to_string(), source })
}

/// `file` read over `defaults` (every key it does not name keeps the default, also inside
/// the tables it names), then checked by `validate`; errors start with `origin`.
pub(crate) fn over_defaults<C: Serialize + serde::de::DeserializeOwned>(
    defaults: C,
    file: toml::Table,
    origin: &str,
    validate: impl FnOnce(&C) -> std::result::Result<(), String>,
) -> Result<C> {
    let error = |e: &dyn std::fmt::Display| Error::Config(format!("{origin}: {e}"));
    let mut merged = toml::Table::try_from(defaults).expect("BUG: the defaults serialise");
    merge_tables(&mut merged, file);
    let config: C = toml::Value::Table(merged).try_into().map_err(|e| error(&e))?;
    validate(&config).map_err(|e| error(&e))?;
    Ok(config)
}

/// `over`'s keys into `base`: tables merge key by key, anything else replaces.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(value)) => merge_tables(inner, value),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn positive(key: &str, value: usize) -> std::result::Result<(), String> {
    if value == 0 {
        return Err(format!("{key} = 0: must be at least 1"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_config_in_the_repository_loads_and_validates() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut loaded = 0;
        for dir in [root.clone(), root.join("ablation")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                // The detector's and the mask classifier's configs are their own (their modules
                // test them).
                let own = path.ends_with("detector.toml") || path.ends_with("mask.toml");
                if path.extension().is_some_and(|x| x == "toml") && !own {
                    let config = G2dConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                    // Written back and read again, it is the same run.
                    assert_eq!(G2dConfig::from_toml(&config.to_toml(), "again").unwrap(), config, "{}", path.display());
                    loaded += 1;
                }
            }
        }
        assert!(loaded >= 25, "{loaded} configs found under {}", root.display());
    }

    #[test]
    fn a_partial_table_keeps_every_key_it_does_not_name() {
        let small = G2dConfig::small();
        for stage in Stage::ALL {
            let text = format!("[{}.schedule]\nsteps = 7\n", stage.name());
            let config = G2dConfig::from_toml(&text, "partial.toml").unwrap();
            let want = Schedule { steps: 7, ..small.schedule(stage).clone() };
            assert_eq!(config.schedule(stage), &want, "{}", stage.name());
        }
        // The stage defaults the issue named, spelled out.
        let config = G2dConfig::from_toml("[encoder.schedule]\nsteps = 6\n", "x").unwrap();
        let encoder = &config.encoder.schedule;
        assert_eq!((encoder.lr, encoder.beta1, encoder.beta2, encoder.batch_size), (1e-5, 0.5, 0.9, 16));
        let config = G2dConfig::from_toml("[reformer.schedule]\nsteps = 6\n", "x").unwrap();
        assert_eq!(config.reformer.schedule.weight_decay, 5e-4);
        let config = G2dConfig::from_toml("[classifier.schedule]\nsteps = 6\n", "x").unwrap();
        assert_eq!(config.classifier.schedule.lr, 1e-2);
        // Nested tables too: the encoder's masks-only occlusion survives a partial table.
        let config = G2dConfig::from_toml("[encoder.occlusion]\nmask = 0.5\n", "x").unwrap();
        assert_eq!((config.encoder.occlusion.mask, config.encoder.occlusion.strokes), (0.5, 0.0));
        // Unknown keys are still refused by name.
        let err = G2dConfig::from_toml("[encoder.schedule]\nsteps = 6\nlearning_rate = 1\n", "x").unwrap_err();
        assert!(err.to_string().contains("unknown field `learning_rate`"), "{err}");
    }

    #[test]
    fn the_learning_rate_anneals_from_decay_from_to_zero() {
        let constant = Schedule { steps: 10, lr: 1e-3, ..Schedule::default() };
        assert!((0..10).all(|step| constant.lr_at(step) == 1e-3) && constant.constant_before(10));
        let annealed = Schedule { decay_from: Some(6), ..constant };
        assert_eq!((annealed.lr_at(5), annealed.lr_at(6)), (1e-3, 1e-3));
        assert!((annealed.lr_at(8) - 5e-4).abs() < 1e-12, "half way down at the middle of the decay");
        assert!(annealed.lr_at(9) < annealed.lr_at(8) && annealed.lr_at(9) > 0.0);
        assert!(annealed.constant_before(6) && !annealed.constant_before(7));
        let late = "[reformer.schedule]\nsteps = 100\ndecay_from = 100\n";
        let err = G2dConfig::from_toml(late, "x.toml").unwrap_err().to_string();
        assert!(err.contains("reformer.schedule.decay_from = 100: must be below"), "{err}");
    }

    #[test]
    fn presets_round_trip_through_toml() {
        for config in [G2dConfig::small(), G2dConfig::paper()] {
            config.validate().unwrap();
            assert_eq!(G2dConfig::from_toml(&config.to_toml(), "test").unwrap(), config);
        }
    }

    #[test]
    fn the_shipped_config_files_are_the_presets() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["small", "paper"] {
            let file = G2dConfig::load(&dir.join(format!("{name}.toml"))).unwrap();
            assert_eq!(
                file,
                G2dConfig::preset(name).unwrap(),
                "configs/{name}.toml: regenerate with `maskid train --preset {name} --print-config`"
            );
        }
    }

    #[test]
    fn configs_saved_by_older_runs_still_load_without_what_moved_out() {
        let old = "name = \"old\"\n[model.student]\nencoder_weights = \"models/g2d-small.safetensors\"\n\
                   train_from_unit = 17\n[detector]\nfaceless = 0.5\n";
        let config = G2dConfig::from_toml(old, "old run").unwrap();
        assert_eq!(config.model.student.as_ref().map(|s| s.train_from_unit), Some(17));
        assert!(!config.to_toml().contains("encoder_weights") && !config.to_toml().contains("detector"));
    }

    #[test]
    fn missing_keys_take_the_small_preset() {
        let config = G2dConfig::from_toml("[reformer.schedule]\nsteps = 10\n", "test").unwrap();
        assert_eq!(config.reformer.schedule.steps, 10);
        assert_eq!(config.model, G2dConfig::small().model);
    }

    #[test]
    fn errors_name_the_key_and_the_allowed_values() {
        let unknown = G2dConfig::from_toml("[reformer]\nstep = 10\n", "x.toml").unwrap_err().to_string();
        assert!(
            unknown.contains("x.toml") && unknown.contains("step") && unknown.contains("identities_per_batch"),
            "{unknown}"
        );
        let range = G2dConfig::from_toml("[model.encoder]\ndescriptor_block = 9\n", "x.toml").unwrap_err().to_string();
        assert!(range.contains("model.encoder.descriptor_block = 9"), "{range}");
        let pk = G2dConfig::from_toml("[reformer]\nidentities_per_batch = 5\n", "x.toml").unwrap_err().to_string();
        assert!(pk.contains("reformer.schedule.batch_size"), "{pk}");
        let pool = G2dConfig::from_toml("[reformer]\nlookalikes = 8\n", "x.toml").unwrap_err().to_string();
        assert!(pool.contains("reformer.lookalikes = 8") && pool.contains("at least 15"), "{pool}");
        let cross =
            G2dConfig::from_toml("[reformer.relation]\ncross_identity = -1\n", "x.toml").unwrap_err().to_string();
        assert!(cross.contains("reformer.relation.cross_identity = -1: must be 0 or more"), "{cross}");
        let stage = Stage::parse("reform").unwrap_err().to_string();
        assert!(stage.contains("inpaint, encoder, reformer, classifier"), "{stage}");
        let ty = G2dConfig::from_toml("[inpaint.schedule]\nlr = \"fast\"\n", "x.toml").unwrap_err().to_string();
        assert!(ty.contains("lr"), "{ty}");
    }
}
