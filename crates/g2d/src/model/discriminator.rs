//! The PatchGAN critic (Isola et al., 2017) of the inpainting stage: four 4x4 convolutions
//! with leaky ReLU, one realness score per 14x14 patch. Its hidden feature maps also serve the
//! perceptual and style terms (loss/inpaint.rs), as the teacher runs outside burn and gives
//! no gradients.

use burn::nn::conv::Conv2d;
use burn::prelude::*;
use burn::tensor::activation::leaky_relu;
use serde::{Deserialize, Serialize};

use super::conv;

/// Size of the critic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscriminatorConfig {
    /// Channels of the first layer (doubled twice).
    pub width: usize,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self { width: 32 }
    }
}

impl DiscriminatorConfig {
    /// Builds the critic.
    pub fn init(&self, device: &Device) -> Discriminator {
        let w = self.width;
        Discriminator {
            layers: vec![
                conv([3, w], 4, 2, 1, 1, device),
                conv([w, 2 * w], 4, 2, 1, 1, device),
                conv([2 * w, 4 * w], 4, 2, 1, 1, device),
            ],
            score: conv([4 * w, 1], 3, 1, 1, 1, device),
        }
    }
}

/// Face -> patch scores, plus the hidden features.
#[derive(Module, Debug)]
pub struct Discriminator {
    layers: Vec<Conv2d>,
    score: Conv2d,
}

impl Discriminator {
    /// # Shapes
    /// `[batch, 3, 112, 112]` -> scores `[batch, 1, 14, 14]` and three feature maps
    /// (56, 28, 14 pixels square).
    pub fn forward(&self, faces: Tensor<4>) -> (Tensor<4>, Vec<Tensor<4>>) {
        let mut features = Vec::with_capacity(self.layers.len());
        let mut x = faces;
        for layer in &self.layers {
            x = leaky_relu(layer.forward(x), 0.2);
            features.push(x.clone());
        }
        (self.score.forward(x), features)
    }
}
