//! YuNet, the face detector (Wu et al., "YuNet: A tiny millisecond-level face detector",
//! 2023; OpenCV Zoo's `face_detection_yunet_2023mar`), as a burn network built from the ONNX
//! file that `maskid models fetch` brings, so that it can be fine-tuned on masked faces
//! (detector.rs) and written back (export.rs).
//!
//! Nothing is copied by hand: the network is the file's own graph, replayed. Its 53
//! convolutions (int8 block-quantised weights dequantised to f32 at load) become burn
//! convolutions; ReLU, 2x2 max pooling, nearest 2x upsampling and additions connect them as
//! the graph says. The graph's tail (transpose, reshape, sigmoid) is left to the caller: the
//! network returns each head's map, `[batch, channels, H / stride, W / stride]`, with the
//! scores as logits.

use std::collections::HashMap;

use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::TensorData;
use maskid_onnx::ConstTensor;

use super::sface::{fold_weights, onnx_conv};
use crate::{Error, Result};

/// The outputs of YuNet's file, in the order maskid's detector reads them.
pub const HEAD_OUTPUTS: [&str; 12] = [
    "cls_8", "cls_16", "cls_32", "obj_8", "obj_16", "obj_32", "bbox_8", "bbox_16", "bbox_32", "kps_8", "kps_16",
    "kps_32",
];

/// One operation of the replayed graph; values are numbered 0 (the input), then one per step.
#[derive(Clone, Debug)]
enum Op {
    /// Convolution `convs[i]` of a value.
    Conv(usize, usize),
    Relu(usize),
    MaxPool(usize),
    /// Nearest-neighbour upsampling by 2.
    Upsample(usize),
    Add(usize, usize),
}

/// The detector's network.
#[derive(Module, Debug)]
pub struct YuNet {
    convs: Vec<Conv2d>,
    pool: MaxPool2d,
    #[module(skip)]
    steps: Vec<Op>,
    /// For each of [`HEAD_OUTPUTS`], the value it comes from.
    #[module(skip)]
    heads: Vec<usize>,
}

impl YuNet {
    /// The head maps of `images`, in the order of [`HEAD_OUTPUTS`]; scores as logits.
    ///
    /// # Shapes
    /// `[batch, 3, H, W]` BGR 0..255 (as OpenCV feeds YuNet), H and W multiples of 32 ->
    /// `[batch, C, H / s, W / s]` for C = 1 (cls, obj), 4 (bbox), 10 (kps), s = 8, 16, 32.
    pub fn forward(&self, images: Tensor<4>) -> Vec<Tensor<4>> {
        let mut values: Vec<Tensor<4>> = vec![images];
        for op in self.steps.iter() {
            let v = |i: &usize| values[*i].clone();
            let out = match op {
                Op::Conv(conv, x) => self.convs[*conv].forward(v(x)),
                Op::Relu(x) => relu(v(x)),
                Op::MaxPool(x) => self.pool.forward(v(x)),
                Op::Upsample(x) => upsample2(v(x)),
                Op::Add(a, b) => v(a) + v(b),
            };
            values.push(out);
        }
        self.heads.iter().map(|&i| values[i].clone()).collect()
    }

    /// The twelve outputs of YuNet's file for one input of `maskid_face::yunet_input`
    /// (`width` x `height`): `[cells, channels]` rows, scores through the sigmoid.
    pub fn head_outputs(&self, input: Vec<f32>, width: u32, height: u32, device: &Device) -> Result<Vec<Vec<f32>>> {
        let images = Tensor::from_data(TensorData::new(input, [1, 3, height as usize, width as usize]), device);
        file_layout(&self.forward(images), 0)
    }

    /// Keeps convolutions `0..first` as they are in training (no gradients, so no backward pass
    /// through them either).
    pub fn freeze_before(&mut self, first: usize) {
        for conv in self.convs.iter_mut().take(first) {
            *conv = conv.clone().no_grad();
        }
    }

    /// Every convolution, in the file's order (the export writes them back in this order).
    pub fn convs(&self) -> &[Conv2d] {
        &self.convs
    }

    /// Builds the network from the bytes of YuNet's ONNX file.
    pub fn from_onnx(model: &[u8], device: &Device) -> Result<Self> {
        let bad = |what: String| Error::Config(format!("the YuNet ONNX file: {what}"));
        let (consts, nodes) = fold_weights(model).map_err(bad)?;
        build(&consts, &nodes, device).map_err(bad)
    }
}

/// Maps of batch item `item` in the layout of YuNet's file outputs (`[cells, channels]` rows,
/// scores through the sigmoid): what maskid's decoder reads.
pub fn file_layout(maps: &[Tensor<4>], item: usize) -> Result<Vec<Vec<f32>>> {
    maps.iter()
        .enumerate()
        .map(|(i, m)| {
            let [_, c, h, w] = m.dims();
            let one = m.clone().slice([item..item + 1, 0..c, 0..h, 0..w]);
            let one = if i < 6 { sigmoid(one) } else { one };
            one.permute([0, 2, 3, 1])
                .into_data()
                .try_into_vec::<f32>()
                .map_err(|e| Error::Data(format!("reading a head map: {e:?}")))
        })
        .collect()
}

/// `[b, c, h, w]` -> `[b, c, 2h, 2w]`, each value repeated (ONNX nearest Resize by 2).
fn upsample2(x: Tensor<4>) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let rows = x.unsqueeze_dim::<5>(3).repeat_dim(3, 2).reshape([b, c, 2 * h, w]);
    rows.unsqueeze_dim::<5>(4).repeat_dim(4, 2).reshape([b, c, 2 * h, 2 * w])
}

fn build(
    consts: &HashMap<String, ConstTensor>,
    nodes: &[maskid_onnx::GraphNode],
    device: &Device,
) -> std::result::Result<YuNet, String> {
    let mut value_of: HashMap<&str, usize> = HashMap::new();
    value_of.insert("input", 0);
    let mut steps = Vec::new();
    let mut convs = Vec::new();
    let mut heads: HashMap<&str, usize> = HashMap::new();
    for node in nodes {
        let input = |i: usize| -> std::result::Result<usize, String> {
            let name = node.input(i)?;
            value_of.get(name).copied().ok_or_else(|| format!("{} reads unknown value '{name}'", node.op_type))
        };
        let constant = |i: usize| -> std::result::Result<&ConstTensor, String> {
            let name = node.input(i)?;
            consts.get(name).ok_or_else(|| format!("{} input '{name}' is not a constant", node.op_type))
        };
        let ints = |name: &str| node.ints.get(name).cloned().unwrap_or_default();
        let op = match node.op_type.as_str() {
            "Conv" => {
                convs.push(conv(node, constant(1)?, node.inputs.get(2).map(|_| constant(2)).transpose()?, device)?);
                Some(Op::Conv(convs.len() - 1, input(0)?))
            }
            "Relu" => Some(Op::Relu(input(0)?)),
            "MaxPool" => {
                if ints("kernel_shape") != [2, 2] || ints("strides") != [2, 2] || ints("pads").iter().any(|&p| p != 0) {
                    return Err("a MaxPool other than 2x2, stride 2".into());
                }
                Some(Op::MaxPool(input(0)?))
            }
            "Resize" => {
                if constant(2)?.values != [1.0, 1.0, 2.0, 2.0] {
                    return Err("a Resize other than by 2".into());
                }
                Some(Op::Upsample(input(0)?))
            }
            "Add" => Some(Op::Add(input(0)?, input(1)?)),
            // The tail: the heads' maps only change layout (and sigmoid) on their way out.
            "Transpose" | "Reshape" | "Sigmoid" => {
                let source = input(0)?;
                let output = node.output()?;
                value_of.insert(output, source);
                if let Some(name) = HEAD_OUTPUTS.iter().find(|n| **n == output) {
                    heads.insert(name, source);
                }
                None
            }
            other => return Err(format!("unexpected operator {other}")),
        };
        if let Some(op) = op {
            steps.push(op);
            value_of.insert(node.output()?, steps.len());
        }
    }
    let heads = HEAD_OUTPUTS
        .iter()
        .map(|name| heads.get(name).copied().ok_or_else(|| format!("no output {name}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let pool = MaxPool2dConfig::new([2, 2]).init();
    Ok(YuNet { convs, pool, steps, heads })
}

fn conv(
    node: &maskid_onnx::GraphNode,
    weight: &ConstTensor,
    bias: Option<&ConstTensor>,
    device: &Device,
) -> std::result::Result<Conv2d, String> {
    let out = weight.dims.first().copied().unwrap_or(0);
    let w: Vec<f32> = weight.values.iter().map(|&v| v as f32).collect();
    let b: Vec<f32> = bias.map_or(vec![0.0; out], |b| b.values.iter().map(|&v| v as f32).collect());
    onnx_conv(node, &weight.dims, w, b, device)
}
