//! maskid's benchmark harness: what `maskid bench` measures, as functions that return their
//! reports (the CLI parses the flags and prints). Every figure in BENCHMARKS.md comes from one
//! of these; no timing is asserted in a test.
//!
//! - [`photo`]: photo -> embedding latency, mask synthesis and data-set throughput;
//! - [`detect`]: the share of real masked photos with a face found;
//! - [`g2d`]: G2D training images/s per stage, an exported backbone on ONNX Runtime and burn;
//! - [`search`]: gallery search, built-in index and PostgreSQL + pgvector;
//! - [`service`]: the HTTP service under an open-loop identify load;
//! - [`soak`]: the service under hostile and careless clients for minutes;
//! - [`strangers`]: open-set decisions by target FPIR, with people not enrolled;
//! - [`video`]: `maskid watch` on clips of people walking past, made from LFW and encoded.
#![deny(missing_docs)]

pub mod detect;
pub mod g2d;
pub mod photo;
pub mod search;
pub mod service;
pub mod soak;
pub mod strangers;
pub mod video;

use std::path::PathBuf;

use maskid_assets::Assets;
use maskid_face::Parallelism;
use maskid_pipeline::{ModelChoice, Models, ModelsConfig, Progress, Recognizer};

/// Where the models come from and how they run: what the CLI's global flags say.
pub struct Setup<'a> {
    /// The model cache and the hand-supplied models folder.
    pub assets: Assets,
    /// Detector settings and the photo size limit (the parallelism is each benchmark's).
    pub models: ModelsConfig,
    /// `--models-dir`, passed on to the `maskid serve` the soak starts.
    pub models_dir: Option<PathBuf>,
    /// Where long preparations report progress.
    pub progress: &'a (dyn Fn(Progress<'_>) + Sync),
}

impl Setup<'_> {
    /// The settings with `parallelism`.
    pub fn models_config(&self, parallelism: Parallelism) -> ModelsConfig {
        ModelsConfig { parallelism, ..self.models }
    }

    /// The detector and the teacher.
    pub fn models(&self, parallelism: Parallelism) -> anyhow::Result<Models> {
        Ok(Models::load(&self.assets, self.models_config(parallelism))?)
    }

    /// The detector and `model`.
    pub fn recognizer(&self, model: &ModelChoice, parallelism: Parallelism) -> anyhow::Result<Recognizer> {
        Ok(Recognizer::load(&self.assets, self.models_config(parallelism), model.clone())?)
    }
}

/// The value at quantile `q` (0..1) of `sorted` (ascending), by nearest rank rounded down.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

/// The median of `v` (sorted in place).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}
