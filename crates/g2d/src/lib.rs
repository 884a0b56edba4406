//! The G2D network of maskid (g2d-method.md) and its training, on burn.
//!
//! * [`model`]: the inpainting encoder + decoder, the PatchGAN critic, the reformer, the
//!   classifier and the exported [`model::Backbone`] (encoder -> descriptor -> reformer).
//! * [`loss`]: inpainting and relation-distillation objectives.
//! * [`data`]: samplers and batches with synthetic occluders.
//! * [`stage`]: the four stages and the loop that drives them; [`run`]: checkpoints.
//! * [`export`]: the backbone as ONNX, and a parity check against ONNX Runtime.
//! * [`detector`]: apart from G2D, YuNet tuned to find masked faces, on the same loop.
//!
//! This is the only crate that uses burn. CPU training runs on burn's `flex` backend; the
//! `cuda` and `wgpu` features add GPU devices.
#![deny(missing_docs)]

pub mod condition;
pub mod config;
mod curves;
pub mod data;
pub mod detector;
pub mod export;
pub mod loss;
pub mod mask_state;
pub mod model;
pub mod run;
pub mod stage;

pub use burn::tensor::Device;
pub use config::{G2dConfig, Stage};
pub use detector::{DetectorData, DetectorTuningConfig};
pub use stage::{
    finished_with, load_backbone, load_trained_inpainter, train_stage, Progress, StageReport, TrainData, TrainOptions,
};

/// Errors of training, loading and export.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad configuration: names the key and the allowed values.
    #[error("config: {0}")]
    Config(String),
    /// Unusable training data.
    #[error("data: {0}")]
    Data(String),
    /// A missing, corrupt or mismatched checkpoint.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    /// The loss stopped being a number.
    #[error("training diverged: {0}")]
    Diverged(String),
    /// ONNX export or its check failed.
    #[error("export: {0}")]
    Export(String),
    /// A file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// The device named on the command line: `cpu` (burn's flex backend), or `cuda` / `wgpu` when
/// built with those features.
pub fn device(name: &str) -> Result<Device> {
    match name {
        "cpu" | "flex" => Ok(Device::flex()),
        #[cfg(feature = "cuda")]
        "cuda" => Ok(Device::cuda(0)),
        #[cfg(feature = "wgpu")]
        "wgpu" => Ok(Device::wgpu(Default::default())),
        #[cfg(not(feature = "cuda"))]
        "cuda" => Err(not_built(name)),
        #[cfg(not(feature = "wgpu"))]
        "wgpu" => Err(not_built(name)),
        _ => Err(Error::Config(format!("unknown device '{name}': expected one of cpu, cuda, wgpu"))),
    }
}

#[cfg(not(all(feature = "cuda", feature = "wgpu")))]
fn not_built(name: &str) -> Error {
    Error::Config(format!("device '{name}' needs a maskid built with it: cargo build --release --features {name}"))
}
