//! The feature classifier: one fully-connected layer over the training identities; softmax
//! lives in the loss. Closed-set identification only: it is not part of the exported backbone.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

/// Embedding -> identity logits.
#[derive(Module, Debug)]
pub struct Classifier {
    fc: Linear,
}

impl Classifier {
    /// A classifier of `embedding_dim` inputs over `identities` classes.
    pub fn new(embedding_dim: usize, identities: usize, device: &Device) -> Self {
        Self { fc: LinearConfig::new(embedding_dim, identities).init(device) }
    }

    /// # Shapes
    /// `[batch, embedding_dim]` -> logits `[batch, identities]`.
    pub fn forward(&self, embeddings: Tensor<2>) -> Tensor<2> {
        self.fc.forward(embeddings)
    }

    /// Number of identities.
    pub fn identities(&self) -> usize {
        self.fc.weight.dims()[1]
    }
}
