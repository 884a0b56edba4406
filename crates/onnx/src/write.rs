//! Writing a new model: nodes of standard operators, float32 initialisers, one input and one
//! output of float tensors, metadata. burn has no ONNX writer; maskid's exports build their
//! graphs with this.

use crate::wire::*;

/// ONNX opset of the models written here.
pub const OPSET: i64 = 17;
/// ONNX IR version of the models written here (the one that goes with opset 17).
const IR_VERSION: i64 = 8;

/// A graph being written: nodes and initialisers in the order added, with generated value
/// names (`prefix_N`).
#[derive(Default)]
pub struct GraphWriter {
    nodes: Vec<Vec<u8>>,
    initializers: Vec<Vec<u8>>,
    count: usize,
}

/// An attribute of a node, encoded.
pub struct Attribute(Vec<u8>);

impl Attribute {
    /// An integer attribute.
    pub fn int(name: &str, value: i64) -> Self {
        let mut a = Vec::new();
        write_bytes_field(&mut a, ATTRIBUTE_NAME, name.as_bytes());
        write_int_field(&mut a, ATTRIBUTE_INT, value);
        write_int_field(&mut a, ATTRIBUTE_TYPE, 2); // INT
        Self(a)
    }

    /// A float attribute.
    pub fn float(name: &str, value: f32) -> Self {
        let mut a = Vec::new();
        write_bytes_field(&mut a, ATTRIBUTE_NAME, name.as_bytes());
        write_varint(&mut a, (ATTRIBUTE_FLOAT << 3) | 5); // fixed 32-bit
        a.extend_from_slice(&value.to_le_bytes());
        write_int_field(&mut a, ATTRIBUTE_TYPE, 1); // FLOAT
        Self(a)
    }

    /// An integer-list attribute.
    pub fn ints(name: &str, values: &[usize]) -> Self {
        let mut a = Vec::new();
        write_bytes_field(&mut a, ATTRIBUTE_NAME, name.as_bytes());
        for &v in values {
            write_int_field(&mut a, ATTRIBUTE_INTS, v as i64);
        }
        write_int_field(&mut a, ATTRIBUTE_TYPE, 7); // INTS
        Self(a)
    }
}

/// A float tensor's declared shape: `None` is the symbolic batch dimension.
pub type Shape<'a> = &'a [Option<usize>];

impl GraphWriter {
    fn name(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}_{}", self.count)
    }

    /// Adds a float32 initialiser of `dims` (row-major `values`); returns its name.
    pub fn weight(&mut self, prefix: &str, dims: &[usize], values: &[f32]) -> String {
        let name = self.name(prefix);
        self.initializers.push(float_tensor(&name, dims, values));
        name
    }

    /// Adds a node of operator `op` writing `output`.
    pub fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Attribute>) {
        let mut n = Vec::new();
        for i in inputs {
            write_bytes_field(&mut n, NODE_INPUT, i.as_bytes());
        }
        write_bytes_field(&mut n, NODE_OUTPUT, output.as_bytes());
        write_bytes_field(&mut n, NODE_NAME, output.as_bytes());
        write_bytes_field(&mut n, NODE_OP_TYPE, op.as_bytes());
        for a in attributes {
            write_bytes_field(&mut n, NODE_ATTRIBUTE, &a.0);
        }
        self.nodes.push(n);
    }

    /// Adds a node of operator `op` with a generated output name; returns it.
    pub fn op(&mut self, op: &str, inputs: &[&str], attributes: Vec<Attribute>) -> String {
        let output = self.name(&op.to_lowercase());
        self.node(op, inputs, &output, attributes);
        output
    }

    /// The model's bytes: graph `name` from input `input` to output `output`, with
    /// `metadata` in its properties.
    pub fn model(
        self,
        name: &str,
        input: (&str, Shape),
        output: (&str, Shape),
        metadata: &[(&str, String)],
    ) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in &self.nodes {
            write_bytes_field(&mut graph, GRAPH_NODE, n);
        }
        write_bytes_field(&mut graph, GRAPH_NAME, name.as_bytes());
        for t in &self.initializers {
            write_bytes_field(&mut graph, GRAPH_INITIALIZER, t);
        }
        write_bytes_field(&mut graph, GRAPH_INPUT, &value_info(input.0, input.1));
        write_bytes_field(&mut graph, GRAPH_OUTPUT, &value_info(output.0, output.1));
        let mut model = Vec::new();
        write_int_field(&mut model, MODEL_IR_VERSION, IR_VERSION);
        write_bytes_field(&mut model, MODEL_PRODUCER_NAME, b"maskid");
        write_bytes_field(&mut model, MODEL_PRODUCER_VERSION, env!("CARGO_PKG_VERSION").as_bytes());
        write_bytes_field(&mut model, MODEL_GRAPH, &graph);
        let mut opset = Vec::new();
        write_bytes_field(&mut opset, OPSET_DOMAIN, b"");
        write_int_field(&mut opset, OPSET_VERSION, OPSET);
        write_bytes_field(&mut model, MODEL_OPSET_IMPORT, &opset);
        for (key, value) in metadata {
            metadata_entry(&mut model, key, value);
        }
        model
    }
}

/// A float tensor's name, type and shape.
pub(crate) fn value_info(name: &str, dims: Shape) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => write_int_field(&mut dim, DIM_VALUE, *v as i64),
            None => write_bytes_field(&mut dim, DIM_PARAM, b"batch"),
        }
        write_bytes_field(&mut shape, SHAPE_DIM, &dim);
    }
    let mut tensor = Vec::new();
    write_int_field(&mut tensor, TENSOR_ELEM_TYPE, FLOAT as i64);
    write_bytes_field(&mut tensor, TENSOR_TYPE_SHAPE, &shape);
    let mut ty = Vec::new();
    write_bytes_field(&mut ty, TYPE_TENSOR, &tensor);
    let mut info = Vec::new();
    write_bytes_field(&mut info, VALUE_INFO_NAME, name.as_bytes());
    write_bytes_field(&mut info, VALUE_INFO_TYPE, &ty);
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_graph, ModelInfo};

    #[test]
    fn a_written_model_reads_back_with_its_nodes_weights_and_metadata() {
        let mut graph = GraphWriter::default();
        let w = graph.weight("w", &[2, 1], &[0.5, -1.5]);
        let y = graph.op("MatMul", &["x", &w], vec![Attribute::int("axis", 1), Attribute::ints("pads", &[1, 2])]);
        graph.node("Relu", &[&y], "y", vec![Attribute::float("alpha", 0.25)]);
        let bytes = graph.model(
            "test",
            ("x", &[None, Some(2)]),
            ("y", &[None, Some(1)]),
            &[("maskid.embedding_space", "s".into())],
        );
        let contents = read_graph(&bytes).unwrap();
        assert_eq!(contents.nodes.len(), 2);
        assert_eq!(contents.nodes[0].op_type, "MatMul");
        assert_eq!(contents.nodes[0].inputs, ["x", w.as_str()]);
        assert_eq!(contents.nodes[0].int("axis", 0), Ok(1));
        assert_eq!(contents.nodes[0].ints["pads"], [1, 2]);
        assert_eq!(contents.nodes[1].floats["alpha"], 0.25);
        assert_eq!(contents.initializers[&w].dims, [2, 1]);
        assert_eq!(contents.initializers[&w].values, [0.5, -1.5]);
        let info = ModelInfo::from_bytes("test", &bytes).unwrap();
        assert_eq!(info.embedding_space.as_deref(), Some("s"));
    }
}
