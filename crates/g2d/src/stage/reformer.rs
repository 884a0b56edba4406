//! Stage 2: relation-based distillation. The encoder is frozen; the reformer sees the
//! descriptors of masked faces and learns to make its embeddings relate to each other as the
//! teacher's embeddings of the same faces unmasked do (loss/relation.rs). Batches hold P
//! identities x K images, so the relations include same-person pairs. The teacher's
//! embeddings are computed once per data set and cached by the caller.
//!
//! Validation: 10-fold accuracy of the backbone on the lfw-devtest pairs, mask-probe.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Bytes;
use maskid_core::{DensePairs, VerificationPairs};

use super::{
    load_inpainter, new_backbone, step_seed, verification_accuracy, StageLoop, StepLoss, TrainData, TrainOptions,
    Trained,
};
use crate::config::{G2dConfig, ReformerStageConfig, Stage};
use crate::data::{FaceBatch, FaceBatcher, IdentitySampler};
use crate::loss::relation_loss;
use crate::model::{Backbone, Encoder, Reformer};
use crate::run::{module_bytes, RunState, StageDir};
use crate::Result;

/// What this stage trains: the reformer and, for the feature term, a projection from the
/// embedding to the teacher's dimension (dropped after training).
#[derive(Module, Debug)]
struct Student {
    reformer: Reformer,
    projection: Option<Linear>,
}

/// What the two distillation loops (this one and stage/student.rs) share: P x K batches of
/// masked faces with the teacher's embeddings, the stage's settings, the devices (the base
/// one for frozen parts, its autodiff twin for the trained one) and the validation pairs.
pub(crate) struct DistillationData<'a> {
    batcher: FaceBatcher<'a>,
    sampler: IdentitySampler,
    pub(crate) config: ReformerStageConfig,
    pub(crate) base: Device,
    pub(crate) device: Device,
    pub(crate) validation: &'a VerificationPairs,
    pub(crate) dense_validation: Option<&'a DensePairs>,
}

impl<'a> DistillationData<'a> {
    pub(crate) fn new(config: &G2dConfig, data: &TrainData<'a>, options: &TrainOptions<'_>) -> Result<Self> {
        let stage = &config.reformer;
        let base = options.device.clone();
        Ok(Self {
            batcher: FaceBatcher::new(data.faces, stage.occlusion, data.real_masks)?
                .mirroring(stage.mirror as f32)
                .degrading(stage.condition as f32),
            sampler: IdentitySampler::new(
                data.faces,
                stage.identities_per_batch,
                stage.images_per_identity,
                stage.schedule.seed,
            )
            .and_then(|s| match stage.lookalikes {
                0 => Ok(s),
                pool => s.with_lookalikes(data.faces, pool),
            })?,
            config: stage.clone(),
            device: base.clone().autodiff(),
            base,
            validation: data.validation,
            dense_validation: data.dense_validation,
        })
    }

    /// Batch `step` on the base device, its occluders drawn from the step's seed.
    pub(crate) fn batch(&self, step: usize) -> Result<FaceBatch> {
        let seed = step_seed(self.config.schedule.seed, step);
        self.batcher.batch(&self.sampler.batch(step), seed, &self.base)
    }

    /// A tensor of the frozen part (or the batch), moved into the graph.
    pub(crate) fn to_graph<const D: usize>(&self, tensor: Tensor<D>) -> Tensor<D> {
        Tensor::from_data(tensor.into_data(), &self.device)
    }
}

pub(crate) struct Distillation<'a> {
    encoder: Encoder,
    student: Trained<Student>,
    shared: DistillationData<'a>,
}

impl<'a> Distillation<'a> {
    pub(crate) fn new(config: &G2dConfig, data: &TrainData<'a>, options: &TrainOptions<'_>) -> Result<Self> {
        let shared = DistillationData::new(config, data, options)?;
        let encoder = load_inpainter(config, options.run, Stage::Reformer.previous(), &shared.base)?.encoder;
        let teacher_dim = data.faces[0].teacher.values().len();
        let fresh = new_backbone(config, &shared.device);
        let student = Student {
            reformer: fresh.reformer,
            projection: (config.reformer.relation.feature > 0.0)
                .then(|| LinearConfig::new(config.model.reformer.embedding_dim, teacher_dim).init(&shared.device)),
        };
        Ok(Self { encoder, student: Trained::new(student, &config.reformer.schedule), shared })
    }

    fn backbone(&self) -> Backbone {
        Backbone { encoder: self.encoder.clone(), reformer: self.student.model.reformer.valid() }
    }
}

impl StageLoop for Distillation<'_> {
    fn metric(&self) -> &'static str {
        "mask_probe_accuracy"
    }

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        self.student.parts()
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.student.restore(dir, state)
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let batch = self.shared.batch(step)?;
        // The frozen encoder runs without a graph; only the reformer's part is differentiated.
        let descriptor = self.shared.to_graph(self.encoder.forward(batch.masked));
        let teacher = self.shared.to_graph(batch.teacher);
        let student = self.student.model.reformer.forward(descriptor); // [b, D]
        let projected = self.student.model.projection.as_ref().map(|p| p.forward(student.clone()));
        let (total, terms) = relation_loss(student, projected, teacher, batch.identities, &self.shared.config.relation);
        let grads = GradientsParams::from_grads(total.backward(), &self.student.model);
        self.student.step(self.shared.config.schedule.lr_at(step), grads);
        self.student.model.reformer.sync_running_stats();
        Ok(StepLoss::read(total, terms))
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        verification_accuracy(&self.backbone(), self.shared.validation, &self.shared.base)
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.backbone())
    }
}
