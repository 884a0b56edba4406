//! The inpainting network, shaped like the CNN "guided upsampler" of ICT (Wan et al., ICCV
//! 2021), which G2D starts from: a 7x7 stem, two strided 4x4 convolutions down to 1/4
//! resolution, dilated 3x3 residual blocks without normalisation, two transposed 4x4
//! convolutions back up and a 7x7 convolution to RGB.
//!
//! The encoder ends after residual block `descriptor_block`; its output is the *descriptor*
//! (`[batch, width, 28, 28]` for 112x112 faces). The decoder holds the remaining blocks and the
//! upsampling path. ICT pads by reflection; we pad with zeros, which ONNX `Conv` does natively.

use burn::nn::conv::{Conv2d, ConvTranspose2d, ConvTranspose2dConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, tanh};
use serde::{Deserialize, Serialize};

use super::conv;

/// Sizes of the inpainting network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// Channels of the full-resolution stem (ICT: 64).
    pub stem_width: usize,
    /// Channels at 1/4 resolution, i.e. of the descriptor (ICT: 256).
    pub width: usize,
    /// Residual blocks at 1/4 resolution, encoder and decoder together (ICT: 8).
    pub res_blocks: usize,
    /// The descriptor is taken after this many residual blocks (1..=res_blocks).
    pub descriptor_block: usize,
    /// Dilation of the first convolution of each residual block (ICT: 2).
    pub dilation: usize,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self::small()
    }
}

impl EncoderConfig {
    /// The CPU default: 16/32/64 channels, 4 blocks, descriptor after the second.
    pub fn small() -> Self {
        Self { stem_width: 16, width: 64, res_blocks: 4, descriptor_block: 2, dilation: 2 }
    }

    /// ICT's sizes: 64/128/256 channels, 8 blocks, descriptor after the fourth.
    pub fn paper() -> Self {
        Self { stem_width: 64, width: 256, res_blocks: 8, descriptor_block: 4, dilation: 2 }
    }

    /// Builds encoder and decoder.
    pub fn init(&self, device: &Device) -> Inpainter {
        let half = self.width / 2;
        let block = |_| ResBlock::new(self.width, self.dilation, device);
        Inpainter {
            encoder: Encoder {
                stem: conv([3, self.stem_width], 7, 1, 1, 3, device),
                down1: conv([self.stem_width, half], 4, 2, 1, 1, device),
                down2: conv([half, self.width], 4, 2, 1, 1, device),
                blocks: (0..self.descriptor_block).map(block).collect(),
            },
            decoder: Decoder {
                blocks: (self.descriptor_block..self.res_blocks).map(block).collect(),
                up1: up([self.width, half], device),
                up2: up([half, self.stem_width], device),
                out: conv([self.stem_width, 3], 7, 1, 1, 3, device),
            },
        }
    }
}

fn up(channels: [usize; 2], device: &Device) -> ConvTranspose2d {
    ConvTranspose2dConfig::new(channels, [4, 4]).with_stride([2, 2]).with_padding([1, 1]).init(device)
}

/// A residual block of ICT's upsampler: dilated 3x3, ReLU, 3x3, added to the input.
#[derive(Module, Debug)]
pub struct ResBlock {
    dilated: Conv2d,
    conv: Conv2d,
}

impl ResBlock {
    fn new(width: usize, dilation: usize, device: &Device) -> Self {
        Self {
            dilated: conv([width, width], 3, 1, dilation, dilation, device),
            conv: conv([width, width], 3, 1, 1, 1, device),
        }
    }

    /// Same shape in and out.
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = self.conv.forward(relu(self.dilated.forward(x.clone())));
        x + h
    }

    /// The two convolutions, for export.
    pub(crate) fn convs(&self) -> [&Conv2d; 2] {
        [&self.dilated, &self.conv]
    }
}

/// Face -> descriptor.
#[derive(Module, Debug)]
pub struct Encoder {
    pub(crate) stem: Conv2d,
    pub(crate) down1: Conv2d,
    pub(crate) down2: Conv2d,
    pub(crate) blocks: Vec<ResBlock>,
}

impl Encoder {
    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] -> descriptor `[batch, width, 28, 28]`.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<4> {
        let x = relu(self.stem.forward(faces)); // [b, stem, 112, 112]
        let x = relu(self.down1.forward(x)); // [b, width/2, 56, 56]
        let mut x = relu(self.down2.forward(x)); // [b, width, 28, 28]
        for block in &self.blocks {
            x = block.forward(x);
        }
        x
    }
}

/// Descriptor -> restored face.
#[derive(Module, Debug)]
pub struct Decoder {
    pub(crate) blocks: Vec<ResBlock>,
    pub(crate) up1: ConvTranspose2d,
    pub(crate) up2: ConvTranspose2d,
    pub(crate) out: Conv2d,
}

impl Decoder {
    /// # Shapes
    /// `[batch, width, 28, 28]` -> `[batch, 3, 112, 112]` in [-1, 1].
    pub fn forward(&self, descriptor: Tensor<4>) -> Tensor<4> {
        let mut x = descriptor;
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = relu(self.up1.forward(x)); // [b, width/2, 56, 56]
        let x = relu(self.up2.forward(x)); // [b, stem, 112, 112]
        tanh(self.out.forward(x))
    }
}

/// Encoder + decoder: the inpainting network of stages 0 and 1.
#[derive(Module, Debug)]
pub struct Inpainter {
    /// Face -> descriptor.
    pub encoder: Encoder,
    /// Descriptor -> face.
    pub decoder: Decoder,
}

impl Inpainter {
    /// Restores covered faces. `[batch, 3, 112, 112]` -> same shape.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<4> {
        self.decoder.forward(self.encoder.forward(faces))
    }

    /// The same network with the descriptor taken after residual block `descriptor_block`:
    /// blocks move between encoder and decoder, no weight changes.
    pub fn split_at(mut self, descriptor_block: usize) -> Self {
        let mut blocks = std::mem::take(&mut self.encoder.blocks);
        blocks.append(&mut self.decoder.blocks);
        self.decoder.blocks = blocks.split_off(descriptor_block.min(blocks.len()));
        self.encoder.blocks = blocks;
        self
    }
}
