//! The G2D networks (g2d-method.md): an inpainting encoder whose feature map is the
//! *descriptor*, a reformer that turns the descriptor into an identity embedding, a classifier
//! over the training identities, and the PatchGAN critic of the inpainting stage.
//!
//! Model files hold only architecture; losses live in `loss/`, training in `stage/`.

mod classifier;
mod discriminator;
mod encoder;
mod reformer;
mod sface;
mod student;
mod yunet;

pub use classifier::Classifier;
pub use discriminator::{Discriminator, DiscriminatorConfig};
pub use encoder::{Decoder, Encoder, EncoderConfig, Inpainter, ResBlock};
pub use reformer::{BasicBlock, Reformer, ReformerConfig};
pub use sface::{ConvUnit, SFace};
pub use student::{Adapter, Student, StudentConfig, StudentInput};
pub use yunet::{file_layout, YuNet, HEAD_OUTPUTS};

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use maskid_core::AlignedFace;

use crate::data::faces_tensor;
use crate::{Error, Result};

/// The exported network: encoder up to the descriptor, then the reformer.
#[derive(Module, Debug)]
pub struct Backbone {
    /// Generative encoder (frozen after stage 1).
    pub encoder: Encoder,
    /// Discriminative reformer.
    pub reformer: Reformer,
}

impl Backbone {
    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] -> `[batch, embedding_dim]`, L2-normalised.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<2> {
        self.reformer.forward(self.encoder.forward(faces))
    }
}

/// A network that embeds aligned faces: the exported backbone, or the student.
pub trait FaceNetwork {
    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] RGB -> `[batch, D]`, L2-normalised.
    fn embed(&self, faces: Tensor<4>) -> Tensor<2>;
}

impl FaceNetwork for Backbone {
    fn embed(&self, faces: Tensor<4>) -> Tensor<2> {
        self.forward(faces)
    }
}

impl FaceNetwork for Student {
    fn embed(&self, faces: Tensor<4>) -> Tensor<2> {
        self.forward(faces)
    }
}

/// A square convolution with "same" padding for odd kernels (scaled by the dilation), or the
/// given padding for the strided 4x4 kernels.
pub(crate) fn conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: usize,
    device: &Device,
) -> Conv2d {
    Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_dilation([dilation, dilation])
        .with_padding(PaddingConfig2d::Explicit(padding, padding, padding, padding))
        .init(device)
}

/// Rows scaled to unit length (a small floor keeps a zero row finite).
pub fn l2_normalize(x: Tensor<2>) -> Tensor<2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

/// Embeds faces with a network in batches of 64, on a device without autodiff.
pub fn embed_faces(network: &impl FaceNetwork, faces: &[&AlignedFace], device: &Device) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(faces.len());
    for chunk in faces.chunks(64) {
        let rgb: Vec<&[u8]> = chunk.iter().map(|f| f.rgb()).collect();
        let embeddings = network.embed(faces_tensor(&rgb, device));
        let [n, d] = embeddings.dims();
        let values = embeddings
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| Error::Data(format!("reading embeddings: {e:?}")))?;
        out.extend((0..n).map(|i| values[i * d..(i + 1) * d].to_vec()));
    }
    Ok(out)
}
