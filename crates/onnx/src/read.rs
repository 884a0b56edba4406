//! Reading a model's graph: its nodes with their attributes and its constant tensors, as
//! numbers, to rebuild a network from its file.

use std::collections::HashMap;

use crate::wire::*;
use crate::{GraphError, Result};

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
    pub ints: HashMap<String, Vec<i64>>,
    /// Float attributes.
    pub floats: HashMap<String, f32>,
    /// Tensor attributes (a `Constant`'s `value`).
    pub tensors: HashMap<String, ConstTensor>,
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
    pub initializers: HashMap<String, ConstTensor>,
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
            ints: HashMap::from([("strides".to_string(), Vec::new())]),
            floats: Default::default(),
            tensors: Default::default(),
        };
        assert_eq!(node.input(0), Ok("x"));
        assert_eq!(node.input(1), Err("Conv without input 1".to_string()));
        assert_eq!(node.output(), Err("Conv without an output".to_string()));
        assert_eq!(node.int("group", 1), Ok(1), "absent: the default");
        assert_eq!(node.int("strides", 1), Err("Conv attribute strides is empty".to_string()));
    }
}
