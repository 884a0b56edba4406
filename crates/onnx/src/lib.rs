//! ONNX model files as protobuf bytes, without a protobuf library or code generation: only
//! the fields maskid touches are decoded and every other byte is copied as it is.
//!
//! - [`read_graph`] reads a graph's nodes and weights (to rebuild SFace and YuNet in burn);
//! - [`prepare_model`] and [`replace_conv_weights`] edit a file in place (for ONNX Runtime,
//!   and to write a tuned YuNet);
//! - [`GraphWriter`] writes a new model (maskid's exports);
//! - [`ModelInfo`] is what a model file says about itself: its hash and its metadata, among
//!   them the embedding space its embeddings live in.
#![deny(missing_docs)]

mod edit;
mod read;
mod wire;
mod write;

pub use edit::{prepare_model, replace_conv_weights, ConvWeights, SymbolicDims};
pub use read::{read_graph, ConstTensor, GraphContents, GraphNode};
pub use write::{Attribute, GraphWriter, Shape, OPSET};

use sha2::{Digest, Sha256};

/// Errors in the protobuf bytes.
#[derive(Debug, thiserror::Error)]
#[error("malformed ONNX protobuf: {0}")]
pub struct GraphError(&'static str);

type Result<T> = std::result::Result<T, GraphError>;

/// The metadata key naming the space a model's embeddings live in. Two models of one space
/// give comparable embeddings (a student trained into its teacher's space shares it).
pub const EMBEDDING_SPACE_KEY: &str = "maskid.embedding_space";

/// What a model file says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// A readable name (the file stem).
    pub id: String,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// The model's metadata properties, in file order.
    pub metadata: Vec<(String, String)>,
    /// The [`EMBEDDING_SPACE_KEY`] property, where the file has one.
    pub embedding_space: Option<String>,
}

impl ModelInfo {
    /// Reads the model `id` from its bytes.
    pub fn from_bytes(id: &str, model: &[u8]) -> Result<Self> {
        let mut metadata = Vec::new();
        for f in wire::fields(model)? {
            if f.number == wire::MODEL_METADATA_PROPS && f.wire == 2 {
                let key = wire::string_field(f.payload, wire::STRING_ENTRY_KEY)?.unwrap_or_default();
                let value = wire::string_field(f.payload, wire::STRING_ENTRY_VALUE)?.unwrap_or_default();
                metadata.push((key.to_owned(), value.to_owned()));
            }
        }
        let embedding_space = metadata.iter().find(|(k, _)| k == EMBEDDING_SPACE_KEY).map(|(_, v)| v.clone());
        Ok(Self { id: id.to_owned(), sha256: hex::encode(Sha256::digest(model)), metadata, embedding_space })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_student_names_its_space_and_garbage_is_an_error() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/g2d-student.onnx");
        let info = ModelInfo::from_bytes("g2d-student", &std::fs::read(path).unwrap()).unwrap();
        assert_eq!(info.embedding_space.as_deref(), Some("sface-2021dec"));
        assert!(info.metadata.iter().any(|(k, _)| k == "maskid.config"));
        assert_eq!(info.sha256.len(), 64);
        // The unmask model has no space: it makes pictures, not embeddings.
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/g2d-small-unmask.onnx");
        let info = ModelInfo::from_bytes("unmask", &std::fs::read(path).unwrap()).unwrap();
        assert_eq!(info.embedding_space, None);
        assert!(ModelInfo::from_bytes("x", b"\xff\xff\xff").is_err());
    }
}
