//! Stages 0 and 1: the inpainting network learns to restore covered faces.
//!
//! * Stage 0 (`inpaint`) pretrains encoder and decoder from scratch: hole-weighted L1 plus,
//!   when configured, the least-squares adversarial term against a PatchGAN critic and the
//!   perceptual and style terms on the critic's features (a stand-in for ICT's VGG features:
//!   burn has no pretrained VGG, and the teacher runs in ONNX Runtime without gradients).
//! * Stage 1 (`encoder`) fine-tunes the encoder alone on masked faces by the same pixel
//!   reconstruction (the paper: Adam, lr 1e-5, betas 0.5/0.9); the decoder is frozen, so the
//!   encoder must put what the mask hides into the descriptor the decoder already reads.
//!
//! Validation: PSNR (dB) of the restored region of the masked lfw-devtest probes.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use burn::tensor::Bytes;
use maskid_core::VerificationPairs;

use super::{
    adam, load_inpainter, optimizer_bytes, restore_optimizer, step_seed, StageLoop, StepLoss, TrainData, TrainOptions,
};
use crate::config::{G2dConfig, OcclusionMix, Schedule, Stage};
use crate::data::{faces_tensor, FaceBatcher, ShuffledSampler};
use crate::loss::{adversarial_critic_loss, adversarial_generator_loss, feature_loss, reconstruction_loss, style_loss};
use crate::model::{Discriminator, Inpainter};
use crate::run::{load_module, module_bytes, RunState, StageDir};
use crate::Result;

/// Probes used for validation (restoring all 1,000 would double a short stage's time).
const VALIDATION_FACES: usize = 128;

struct Weights {
    hole: f32,
    valid: f32,
    adversarial: f32,
    perceptual: f32,
    style: f32,
}

pub(crate) struct Reconstruction<'a> {
    model: Inpainter,
    optimizer: ModuleOptimizer,
    critic: Option<(Discriminator, ModuleOptimizer)>,
    batcher: FaceBatcher<'a>,
    sampler: ShuffledSampler,
    schedule: Schedule,
    weights: Weights,
    device: Device,
    validation: &'a VerificationPairs,
}

impl<'a> Reconstruction<'a> {
    pub(crate) fn new(
        config: &G2dConfig,
        stage: Stage,
        data: &TrainData<'a>,
        options: &TrainOptions<'_>,
    ) -> Result<Self> {
        let device = options.device.clone().autodiff();
        let mut model = load_inpainter(config, options.run, stage.previous(), &device)?;
        let (schedule, occlusion, weights): (&Schedule, &OcclusionMix, Weights) = match stage {
            Stage::Inpaint => {
                let c = &config.inpaint;
                let w = Weights {
                    hole: c.hole_weight,
                    valid: c.valid_weight,
                    adversarial: c.adversarial_weight,
                    perceptual: c.perceptual_weight,
                    style: c.style_weight,
                };
                (&c.schedule, &c.occlusion, w)
            }
            _ => {
                let c = &config.encoder;
                model.decoder = model.decoder.freeze();
                let w = Weights {
                    hole: c.hole_weight,
                    valid: c.valid_weight,
                    adversarial: 0.0,
                    perceptual: 0.0,
                    style: 0.0,
                };
                (&c.schedule, &c.occlusion, w)
            }
        };
        let critic = (weights.adversarial > 0.0).then(|| (config.model.discriminator.init(&device), adam(schedule)));
        Ok(Self {
            model,
            optimizer: adam(schedule),
            critic,
            batcher: FaceBatcher::new(data.faces, *occlusion, data.real_masks)?,
            sampler: ShuffledSampler::new((0..data.faces.len()).collect(), schedule.batch_size, schedule.seed)?,
            schedule: schedule.clone(),
            weights,
            device,
            validation: data.validation,
        })
    }
}

impl StageLoop for Reconstruction<'_> {
    fn metric(&self) -> &'static str {
        "hole_psnr_db"
    }

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        let mut parts = vec![("model", module_bytes(&self.model)?), ("optimizer", optimizer_bytes(&self.optimizer)?)];
        if let Some((critic, optimizer)) = &self.critic {
            parts.push(("critic", module_bytes(critic)?));
            parts.push(("critic_optimizer", optimizer_bytes(optimizer)?));
        }
        Ok(parts)
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        let origin = dir.path().display().to_string();
        self.model = load_module(self.model.clone(), dir.load_part(state, "model")?, &origin)?;
        self.optimizer = restore_optimizer(self.optimizer.clone(), dir, state, "optimizer")?;
        if let Some((critic, optimizer)) = self.critic.take() {
            let critic = load_module(critic, dir.load_part(state, "critic")?, &origin)?;
            self.critic = Some((critic, restore_optimizer(optimizer, dir, state, "critic_optimizer")?));
        }
        Ok(())
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let seed = step_seed(self.schedule.seed, step);
        let batch = self.batcher.batch(&self.sampler.batch(step), seed, &self.device)?;
        let restored = self.model.forward(batch.masked); // [b, 3, 112, 112]
        let w = &self.weights;
        let reconstruction = reconstruction_loss(restored.clone(), batch.clean.clone(), batch.holes, w.hole, w.valid);
        let mut terms = vec![("reconstruction", reconstruction.clone())];
        let mut total = reconstruction;
        if let Some((critic, critic_optimizer)) = self.critic.take() {
            // The critic learns first, on the restored faces cut from the generator's graph.
            let (real, _) = critic.forward(batch.clean.clone());
            let (fake, _) = critic.forward(restored.clone().detach());
            let critic_loss = adversarial_critic_loss(real, fake);
            let grads = GradientsParams::from_grads(critic_loss.backward(), &critic);
            let mut critic_optimizer = critic_optimizer;
            let critic = critic_optimizer.step(self.schedule.lr_at(step), critic, grads);
            terms.push(("critic", critic_loss));
            // Then the generator's terms against the updated critic.
            let (fake_scores, fake_features) = critic.forward(restored);
            let (_, clean_features) = critic.forward(batch.clean);
            let clean_features: Vec<_> = clean_features.into_iter().map(|f| f.detach()).collect();
            let adversarial = adversarial_generator_loss(fake_scores);
            total = total + adversarial.clone().mul_scalar(w.adversarial);
            terms.push(("adversarial", adversarial));
            if w.perceptual > 0.0 {
                let perceptual = feature_loss(&fake_features, &clean_features);
                total = total + perceptual.clone().mul_scalar(w.perceptual);
                terms.push(("perceptual", perceptual));
            }
            if w.style > 0.0 {
                let style = style_loss(&fake_features, &clean_features);
                total = total + style.clone().mul_scalar(w.style);
                terms.push(("style", style));
            }
            self.critic = Some((critic, critic_optimizer));
        }
        let grads = GradientsParams::from_grads(total.backward(), &self.model);
        self.model = self.optimizer.step(self.schedule.lr_at(step), self.model.clone(), grads);
        Ok(StepLoss::read(total, terms))
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        let model = self.model.valid();
        let device = self.device.clone().inner();
        let n = self.validation.probes.len().min(VALIDATION_FACES);
        if n == 0 {
            return Ok((f64::NAN, serde_json::json!({})));
        }
        let (mut squared, mut absolute, mut covered) = (0f64, 0f64, 0f64);
        for start in (0..n).step_by(32) {
            let end = (start + 32).min(n);
            let masked: Vec<&[u8]> = self.validation.probes[start..end].iter().map(|f| f.rgb()).collect();
            let clean: Vec<&[u8]> = self.validation.clean_probes[start..end].iter().map(|f| f.rgb()).collect();
            let restored = model.forward(faces_tensor(&masked, &device));
            let error: Vec<f32> = (restored - faces_tensor(&clean, &device))
                .into_data()
                .try_into_vec()
                .map_err(|e| crate::Error::Data(format!("reading a tensor: {e:?}")))?;
            let plane = error.len() / (3 * (end - start));
            for (i, hole) in self.validation.probe_holes[start..end].iter().enumerate() {
                for (p, &h) in hole.coverage.iter().enumerate() {
                    for c in 0..3 {
                        let e = f64::from(error[(i * 3 + c) * plane + p]);
                        squared += f64::from(h) * e * e;
                        absolute += f64::from(h) * e.abs();
                    }
                    covered += 3.0 * f64::from(h);
                }
            }
        }
        let mse = squared / covered.max(1.0);
        // Pixel values span 2 in [-1, 1]: PSNR = 10 log10(2^2 / MSE).
        let psnr = 10.0 * (4.0 / mse.max(1e-12)).log10();
        Ok((psnr, serde_json::json!({ "hole_l1_levels": absolute / covered.max(1.0) * 127.5, "faces": n })))
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.model)
    }
}
