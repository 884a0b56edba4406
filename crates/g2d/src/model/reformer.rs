//! The discriminative reformer: a ResNet-like network (stem convolution, four stages of basic
//! residual blocks with batch norm, global average pooling, one fully-connected layer) that
//! turns the descriptor into an identity embedding. The paper reports 22 layers; with
//! `blocks = [2, 2, 2, 2]` this has 18 weighted layers plus the 1x1 shortcuts.

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use super::{conv, l2_normalize};

/// Sizes of the reformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReformerConfig {
    /// Channels of the four stages; stages 2-4 halve the resolution.
    pub widths: Vec<usize>,
    /// Residual blocks per stage.
    pub blocks: Vec<usize>,
    /// Length D of the identity embedding.
    pub embedding_dim: usize,
}

impl Default for ReformerConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl ReformerConfig {
    /// The CPU default: 64/128/192/256 channels, one block per stage, D = 512.
    pub fn small() -> Self {
        Self { widths: vec![64, 128, 192, 256], blocks: vec![1, 1, 1, 1], embedding_dim: 512 }
    }

    /// ResNet-18 widths and depth, D = 512.
    pub fn paper() -> Self {
        Self { widths: vec![64, 128, 256, 512], blocks: vec![2, 2, 2, 2], embedding_dim: 512 }
    }

    /// Builds the reformer for a descriptor of `in_channels`.
    pub fn init(&self, in_channels: usize, device: &Device) -> Reformer {
        let mut blocks = Vec::new();
        let mut channels = self.widths[0];
        for (stage, (&width, &count)) in self.widths.iter().zip(&self.blocks).enumerate() {
            for i in 0..count {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(BasicBlock::new(channels, width, stride, device));
                channels = width;
            }
        }
        Reformer {
            stem: conv([in_channels, self.widths[0]], 3, 1, 1, 1, device),
            stem_bn: BatchNormConfig::new(self.widths[0]).init(device),
            blocks,
            fc: LinearConfig::new(channels, self.embedding_dim).init(device),
        }
    }
}

/// Two 3x3 convolutions with batch norm and a shortcut (a 1x1 convolution when the shape
/// changes).
#[derive(Module, Debug)]
pub struct BasicBlock {
    pub(crate) conv1: Conv2d,
    pub(crate) bn1: BatchNorm,
    pub(crate) conv2: Conv2d,
    pub(crate) bn2: BatchNorm,
    pub(crate) shortcut: Option<(Conv2d, BatchNorm)>,
}

impl BasicBlock {
    fn new(in_channels: usize, out_channels: usize, stride: usize, device: &Device) -> Self {
        let shortcut = (stride != 1 || in_channels != out_channels).then(|| {
            (
                conv([in_channels, out_channels], 1, stride, 1, 0, device),
                BatchNormConfig::new(out_channels).init(device),
            )
        });
        Self {
            conv1: conv([in_channels, out_channels], 3, stride, 1, 1, device),
            bn1: BatchNormConfig::new(out_channels).init(device),
            conv2: conv([out_channels, out_channels], 3, 1, 1, 1, device),
            bn2: BatchNormConfig::new(out_channels).init(device),
            shortcut,
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = relu(self.bn1.forward(self.conv1.forward(x.clone())));
        let h = self.bn2.forward(self.conv2.forward(h));
        let skip = match &self.shortcut {
            Some((conv, bn)) => bn.forward(conv.forward(x)),
            None => x,
        };
        relu(h + skip)
    }
}

/// Descriptor -> identity embedding.
#[derive(Module, Debug)]
pub struct Reformer {
    pub(crate) stem: Conv2d,
    pub(crate) stem_bn: BatchNorm,
    pub(crate) blocks: Vec<BasicBlock>,
    pub(crate) fc: Linear,
}

impl Reformer {
    /// # Shapes
    /// descriptor `[batch, C, 28, 28]` -> `[batch, embedding_dim]`, L2-normalised.
    pub fn forward(&self, descriptor: Tensor<4>) -> Tensor<2> {
        let mut x = relu(self.stem_bn.forward(self.stem.forward(descriptor)));
        for block in &self.blocks {
            x = block.forward(x);
        }
        let [batch, channels, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([batch, channels]); // [b, C]
        l2_normalize(self.fc.forward(pooled))
    }

    /// Folds the batch-norm statistics of the last training step into the running values.
    /// burn defers that fold to the next update, so without it a checkpoint (or a validation)
    /// would miss the last step's statistics and a resumed run would drift from an
    /// uninterrupted one.
    pub fn sync_running_stats(&self) {
        let mut norms = vec![&self.stem_bn];
        for block in &self.blocks {
            norms.extend([&block.bn1, &block.bn2]);
            norms.extend(block.shortcut.as_ref().map(|(_, bn)| bn));
        }
        for bn in norms {
            bn.running_mean.value_sync();
            bn.running_var.value_sync();
        }
    }
}
