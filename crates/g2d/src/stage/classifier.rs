//! Stage 3: one fully-connected layer + softmax over the training identities, trained with
//! cross-entropy on the embeddings of masked faces while the backbone stays frozen.
//!
//! Validation: top-1 accuracy on one held-out photo of every identity with at least three
//! (those photos are not trained on), masked with a fixed seed.

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Bytes;

use super::{load_backbone, step_seed, StageLoop, StepLoss, TrainData, TrainOptions, Trained};
use crate::config::{G2dConfig, Schedule};
use crate::data::{holdout_split, FaceBatcher, ShuffledSampler};
use crate::model::{Backbone, Classifier as Head};
use crate::run::{module_bytes, RunState, StageDir};
use crate::{Error, Result};

/// Seed of the held-out faces' masks (fixed, so every validation sees the same faces).
const HOLDOUT_SEED: u64 = 0x5eed;

pub(crate) struct Classifier<'a> {
    backbone: Backbone,
    head: Trained<Head>,
    batcher: FaceBatcher<'a>,
    sampler: ShuffledSampler,
    holdout: Vec<usize>,
    schedule: Schedule,
    base: Device,
    device: Device,
}

impl<'a> Classifier<'a> {
    pub(crate) fn new(config: &G2dConfig, data: &TrainData<'a>, options: &TrainOptions<'_>) -> Result<Self> {
        let identities = data.identities();
        if identities < 2 {
            return Err(Error::Data(format!(
                "the classifier needs at least 2 identities; the training set has {identities}"
            )));
        }
        let base = options.device.clone();
        let device = base.clone().autodiff();
        let (backbone, trained_with) = load_backbone(options.run, &base)?;
        if trained_with.model != config.model {
            return Err(Error::Checkpoint(format!(
                "{}: the backbone was trained with another [model] section; use the same config for every stage of a run",
                options.run.display()
            )));
        }
        let stage = &config.classifier;
        let (train, holdout) = holdout_split(data.faces);
        Ok(Self {
            backbone,
            head: Trained::new(Head::new(config.model.reformer.embedding_dim, identities, &device), &stage.schedule),
            batcher: FaceBatcher::new(data.faces, stage.occlusion, data.real_masks)?,
            sampler: ShuffledSampler::new(train, stage.schedule.batch_size, stage.schedule.seed)?,
            holdout,
            schedule: stage.schedule.clone(),
            base,
            device,
        })
    }
}

impl StageLoop for Classifier<'_> {
    fn metric(&self) -> &'static str {
        "holdout_top1"
    }

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        self.head.parts()
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.head.restore(dir, state)
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let seed = step_seed(self.schedule.seed, step);
        let batch = self.batcher.batch(&self.sampler.batch(step), seed, &self.base)?;
        let embeddings = Tensor::<2>::from_data(self.backbone.forward(batch.masked).into_data(), &self.device);
        let targets = Tensor::<1, Int>::from_data(batch.identities.into_data(), &self.device);
        let logits = self.head.model.forward(embeddings); // [b, identities]
        let loss = CrossEntropyLossConfig::new().init(&self.device).forward(logits, targets);
        let grads = GradientsParams::from_grads(loss.backward(), &self.head.model);
        self.head.step(self.schedule.lr_at(step), grads);
        let total = f64::from(loss.into_scalar::<f32>());
        Ok(StepLoss { total, terms: vec![("cross_entropy", total)] })
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        if self.holdout.is_empty() {
            return Ok((f64::NAN, serde_json::json!({ "held_out": 0 })));
        }
        let head = self.head.model.valid();
        let mut correct = 0usize;
        for chunk in self.holdout.chunks(64) {
            let batch = self.batcher.batch(chunk, HOLDOUT_SEED, &self.base)?;
            let predicted = head.forward(self.backbone.forward(batch.masked)).argmax(1).reshape([chunk.len()]);
            let hits = predicted.equal(batch.identities).int().sum().into_scalar::<i64>();
            correct += hits as usize;
        }
        let accuracy = correct as f64 / self.holdout.len() as f64;
        Ok((accuracy, serde_json::json!({ "held_out": self.holdout.len() })))
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.head.model)
    }
}
