//! SFace, the teacher recogniser (Zhong et al., "SFace: Sigmoid-constrained hypersphere loss
//! for robust face recognition", TIP 2021; OpenCV Zoo's `face_recognition_sface_2021dec`), as a
//! burn network built from the ONNX file that `maskid models fetch` brings. Nothing is copied
//! by hand: the layer list, kernel sizes, strides, groups and weights are read from the graph,
//! and its int8 block-quantised weights (`DequantizeLinear`) are dequantised to f32 at load.
//!
//! The graph is a MobileNet-style stack: a 3x3 stem, 13 depthwise + pointwise pairs up to
//! 1,024 channels at 7x7, each convolution followed by batch norm and PReLU; then batch norm,
//! dropout, a 50,176 -> 128 fully-connected layer and a final batch norm. Inputs are 0-255 RGB
//! shifted and scaled inside the graph.
//!
//! Batch norm is folded at load: into the convolution before it (weights and a bias), and the
//! two around the FC into the FC. The network therefore always uses the teacher's statistics,
//! in training too (batches of 32 on a CPU estimate them worse than the millions of faces
//! the teacher saw). The input scaling is folded into the stem, so the network reads faces in
//! [-1, 1] like every maskid backbone. Dropout is an identity at inference and left out.

use std::collections::HashMap;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PRelu, PReluConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::TensorData;
use maskid_onnx::{read_graph, ConstTensor, GraphNode};

use crate::{Error, Result};

/// One convolution (batch norm folded in) and its PReLU.
#[derive(Module, Debug)]
pub struct ConvUnit {
    pub(crate) conv: Conv2d,
    pub(crate) prelu: PRelu,
}

impl ConvUnit {
    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.prelu.forward(self.conv.forward(x))
    }

    /// Output channels.
    pub fn channels(&self) -> usize {
        self.conv.weight.dims()[0]
    }

    /// Stride of the convolution.
    pub fn stride(&self) -> usize {
        self.conv.stride[0]
    }
}

/// The teacher's network.
#[derive(Module, Debug)]
pub struct SFace {
    /// The stem, then depthwise and pointwise units alternating (27 in SFace).
    pub(crate) units: Vec<ConvUnit>,
    /// Flattened `[1024 x 7 x 7]` -> 128, with both batch norms folded in.
    pub(crate) fc: Linear,
}

impl SFace {
    /// Number of convolution units.
    pub fn depth(&self) -> usize {
        self.units.len()
    }

    /// Channels and side of the feature map after `units` units (`[3, 112]` for 0).
    pub fn feature_shape(&self, units: usize) -> [usize; 2] {
        let side = self.units[..units].iter().fold(112usize, |s, u| s.div_ceil(u.stride()));
        let channels = if units == 0 { 3 } else { self.units[units - 1].channels() };
        [channels, side]
    }

    /// Runs units `from..to` on a feature map.
    ///
    /// # Shapes
    /// `[batch, C_from, S, S]` -> `[batch, C_to, S', S']`
    pub fn features(&self, mut x: Tensor<4>, from: usize, to: usize) -> Tensor<4> {
        for unit in &self.units[from..to] {
            x = unit.forward(x);
        }
        x
    }

    /// The FC head on the last feature map.
    ///
    /// # Shapes
    /// `[batch, 1024, 7, 7]` -> `[batch, 128]`, not normalised (as the teacher's file outputs).
    pub fn head(&self, features: Tensor<4>) -> Tensor<2> {
        let [batch, c, h, w] = features.dims();
        self.fc.forward(features.reshape([batch, c * h * w]))
    }

    /// The teacher's embedding of aligned faces.
    ///
    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] RGB -> `[batch, 128]`, not normalised.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<2> {
        self.head(self.features(faces, 0, self.units.len()))
    }

    /// Builds the network from the bytes of SFace's ONNX file.
    pub fn from_onnx(model: &[u8], device: &Device) -> Result<Self> {
        let bad = |what: String| Error::Config(format!("the SFace ONNX file: {what}"));
        let (consts, data_nodes) = fold_weights(model).map_err(bad)?;
        Builder { consts: &consts, nodes: &data_nodes, at: 0, device }.build().map_err(bad)
    }
}

/// The graph of an ONNX file split in two: its weights, with every weight-side node
/// (dequantisation, reshapes of constants) evaluated, and the nodes that touch data, in order.
pub(crate) type FoldedGraph = (HashMap<String, ConstTensor>, Vec<GraphNode>);

/// Reads `model` and folds its weight-side nodes (see [`FoldedGraph`]).
pub(crate) fn fold_weights(model: &[u8]) -> std::result::Result<FoldedGraph, String> {
    let graph = read_graph(model).map_err(|e| e.to_string())?;
    let mut consts = graph.initializers;
    let mut data_nodes = Vec::new();
    for node in graph.nodes {
        match node.op_type.as_str() {
            "DequantizeLinear" | "Reshape" | "Constant" if node.inputs.iter().all(|i| consts.contains_key(i)) => {
                let value = fold_constant(&node, &consts)?;
                consts.insert(node.output()?.to_string(), value);
            }
            _ => data_nodes.push(node),
        }
    }
    Ok((consts, data_nodes))
}

/// Evaluates a weight-side node.
fn fold_constant(node: &GraphNode, consts: &HashMap<String, ConstTensor>) -> std::result::Result<ConstTensor, String> {
    let input = |i: usize| {
        let name = node.input(i)?;
        consts.get(name).ok_or_else(|| format!("{} input '{name}' is not a constant", node.op_type))
    };
    match node.op_type.as_str() {
        "Constant" => node.tensors.get("value").cloned().ok_or_else(|| "a Constant without a tensor value".into()),
        "Reshape" => {
            let (x, shape) = (input(0)?, input(1)?);
            let dims: Vec<usize> = shape.values.iter().map(|&d| d as usize).collect();
            if dims.iter().product::<usize>() != x.values.len() {
                return Err(format!("Reshape of {:?} to {dims:?}", x.dims));
            }
            Ok(ConstTensor { dims, values: x.values.clone() })
        }
        _ => dequantize(node, input(0)?, input(1)?, if node.inputs.len() > 2 { Some(input(2)?) } else { None }),
    }
}

/// `DequantizeLinear`: `(x - zero_point) * scale`, per tensor, per axis or per block along
/// `axis` (ONNX opset 21).
fn dequantize(
    node: &GraphNode,
    x: &ConstTensor,
    scale: &ConstTensor,
    zero: Option<&ConstTensor>,
) -> std::result::Result<ConstTensor, String> {
    let rank = x.dims.len();
    let axis = node.int("axis", 1)?;
    let axis = if axis < 0 { axis + rank as i64 } else { axis } as usize;
    let block = usize::try_from(node.int("block_size", 0)?).map_err(|_| "a negative block_size")?;
    let per_tensor = scale.values.len() == 1;
    if !per_tensor && axis >= rank {
        return Err(format!("DequantizeLinear axis {axis} of a rank-{rank} tensor"));
    }
    if !per_tensor && block > 0 && scale.dims.len() != rank {
        return Err("a blocked DequantizeLinear whose scale has another rank".into());
    }
    // Per axis is blocks of 1 along the axis, with the scale's other dimensions 1.
    let (block, scale_dims): (usize, Vec<usize>) = match block {
        0 => (1, (0..rank).map(|d| if d == axis { x.dims[d] } else { 1 }).collect()),
        b => (b, scale.dims.clone()),
    };
    let scales: usize = scale_dims.iter().product();
    if !per_tensor && (scale.values.len() != scales || zero.is_some_and(|z| z.values.len() != scales)) {
        return Err(format!("DequantizeLinear of {:?} with {} scales", x.dims, scale.values.len()));
    }
    let strides: Vec<usize> = (0..rank).map(|d| x.dims[d + 1..].iter().product()).collect();
    let values = (0..x.values.len())
        .map(|i| {
            // The same coordinates in the scale, the axis one divided by the block.
            let mut s = 0;
            if !per_tensor {
                for (d, (&stride, &dim)) in strides.iter().zip(&x.dims).enumerate() {
                    let c = (i / stride) % dim;
                    let c = if d == axis {
                        c / block
                    } else if scale_dims[d] == 1 {
                        0
                    } else {
                        c
                    };
                    s = s * scale_dims[d] + c;
                }
            }
            let z = zero.map_or(0.0, |z| z.values[s]);
            ((x.values[i] - z) as f32 * scale.values[s] as f32) as f64
        })
        .collect();
    Ok(ConstTensor { dims: x.dims.clone(), values })
}

/// Per-channel `a * x + b` of a batch norm in inference mode.
struct Affine {
    a: Vec<f64>,
    b: Vec<f64>,
}

struct Builder<'a> {
    consts: &'a HashMap<String, ConstTensor>,
    nodes: &'a [GraphNode],
    at: usize,
    device: &'a Device,
}

impl<'a> Builder<'a> {
    fn next(&mut self, op: &str) -> std::result::Result<&'a GraphNode, String> {
        let nodes = self.nodes;
        let node = nodes.get(self.at).ok_or_else(|| format!("the graph ends where a {op} was expected"))?;
        if node.op_type != op {
            return Err(format!("expected {op} at data node {}, found {}", self.at, node.op_type));
        }
        self.at += 1;
        Ok(node)
    }

    fn peek(&self) -> Option<&str> {
        self.nodes.get(self.at).map(|n| n.op_type.as_str())
    }

    fn constant(&self, node: &GraphNode, input: usize) -> std::result::Result<&'a ConstTensor, String> {
        let consts = self.consts;
        let name = node.inputs.get(input).ok_or_else(|| format!("{} without input {input}", node.op_type))?;
        consts.get(name).ok_or_else(|| format!("{} input '{name}' is not a constant", node.op_type))
    }

    fn scalar(&self, node: &GraphNode) -> std::result::Result<f64, String> {
        let c = self.constant(node, 1)?;
        match c.values.as_slice() {
            [v] => Ok(*v),
            _ => Err(format!("{} by a non-scalar", node.op_type)),
        }
    }

    fn batch_norm(&mut self) -> std::result::Result<Affine, String> {
        let node = self.next("BatchNormalization")?;
        let eps = f64::from(node.floats.get("epsilon").copied().unwrap_or(1e-5));
        let [gamma, beta, mean, var] = [1, 2, 3, 4].map(|i| self.constant(node, i));
        let (gamma, beta, mean, var) = (gamma?, beta?, mean?, var?);
        let a: Vec<f64> = gamma.values.iter().zip(&var.values).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let b = beta.values.iter().zip(&mean.values).zip(&a).map(|((beta, m), a)| beta - m * a).collect();
        Ok(Affine { a, b })
    }

    fn build(mut self) -> std::result::Result<SFace, String> {
        // (x - shift) * scale on 0-255 pixels; maskid feeds v in [-1, 1], pixel = (v + 1) * 127.5.
        let shift = self.scalar(self.nodes.first().filter(|n| n.op_type == "Sub").ok_or("no input Sub")?)?;
        self.at = 1;
        let mul = self.next("Mul")?;
        let scale = self.scalar(mul)?;
        if (shift - 127.5).abs() > 1e-9 {
            return Err(format!("input shift {shift}: only 127.5 folds into the stem exactly"));
        }
        let mut input_scale = 127.5 * scale;
        let mut units = Vec::new();
        while self.peek() == Some("Conv") {
            units.push(self.conv_unit(input_scale)?);
            input_scale = 1.0;
        }
        let pre = self.batch_norm()?;
        if self.peek() == Some("Dropout") {
            self.at += 1;
        }
        self.next("Flatten")?;
        let gemm = self.next("Gemm")?;
        if gemm.int("transB", 0)? != 1 {
            return Err("Gemm without transB = 1".into());
        }
        let (weight, bias) = (self.constant(gemm, 1)?, self.constant(gemm, 2)?);
        let post = self.batch_norm()?;
        if self.at != self.nodes.len() {
            return Err(format!("{} unexpected nodes after the last batch norm", self.nodes.len() - self.at));
        }
        let [out, inputs] = <[usize; 2]>::try_from(weight.dims.as_slice())
            .map_err(|_| format!("an FC weight of shape {:?}", weight.dims))?;
        let channels = pre.a.len();
        if units.last().map(ConvUnit::channels) != Some(channels) || !inputs.is_multiple_of(channels) {
            return Err("the FC does not match the last feature map".into());
        }
        let per_channel = inputs / channels;
        // W'[o, j] = post.a[o] * W[o, j] * pre.a[c(j)];
        // b'[o] = post.a[o] * (bias[o] + sum_j W[o, j] * pre.b[c(j)]) + post.b[o].
        let mut w = vec![0f32; inputs * out]; // burn's layout: [in, out]
        let mut b = vec![0f32; out];
        for o in 0..out {
            let mut shift = bias.values[o];
            for j in 0..inputs {
                let c = j / per_channel;
                let v = weight.values[o * inputs + j];
                w[j * out + o] = (post.a[o] * v * pre.a[c]) as f32;
                shift += v * pre.b[c];
            }
            b[o] = (post.a[o] * shift + post.b[o]) as f32;
        }
        let mut fc = LinearConfig::new(inputs, out).init(self.device);
        fc.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [inputs, out]), self.device));
        fc.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [out]), self.device)));
        Ok(SFace { units, fc })
    }

    fn conv_unit(&mut self, input_scale: f64) -> std::result::Result<ConvUnit, String> {
        let node = self.next("Conv")?;
        let weight = self.constant(node, 1)?;
        let out = weight.dims.first().copied().unwrap_or(0);
        let bias = match node.inputs.get(2) {
            Some(_) => self.constant(node, 2)?.values.clone(),
            None => vec![0.0; out],
        };
        let bn = self.batch_norm()?;
        let prelu = self.next("PRelu")?;
        let alpha = self.constant(prelu, 1)?;
        if alpha.values.len() != out {
            return Err(format!("PReLU with {} slopes after a {out}-channel Conv", alpha.values.len()));
        }
        if bias.len() != out {
            return Err(format!("a bias of {} values for {out} channels", bias.len()));
        }
        let per_filter = weight.values.len() / out.max(1);
        let w: Vec<f32> =
            weight.values.iter().enumerate().map(|(i, v)| (v * input_scale * bn.a[i / per_filter]) as f32).collect();
        let b: Vec<f32> = (0..out).map(|o| (bias[o] * bn.a[o] + bn.b[o]) as f32).collect();
        let conv = onnx_conv(node, &weight.dims, w, b, self.device)?;
        let mut act = PReluConfig::new().with_num_parameters(out).init(self.device);
        let slopes: Vec<f32> = alpha.values.iter().map(|&v| v as f32).collect();
        act.alpha = Param::from_tensor(Tensor::from_data(TensorData::new(slopes, [out]), self.device));
        Ok(ConvUnit { conv, prelu: act })
    }
}

/// The burn convolution of an ONNX `Conv` node whose kernel has `dims` (`[out, in / groups, kh,
/// kw]`), with kernel values `w` and bias `b` (as the caller computed them: folded or not).
pub(crate) fn onnx_conv(
    node: &GraphNode,
    dims: &[usize],
    w: Vec<f32>,
    b: Vec<f32>,
    device: &Device,
) -> std::result::Result<Conv2d, String> {
    let positive = |name: &str| match node.int(name, 1)? {
        v if v >= 1 => Ok(v as usize),
        v => Err(format!("a Conv with {name} {v}")),
    };
    let (groups, stride) = (positive("group")?, positive("strides")?);
    let pads = node.ints.get("pads").cloned().unwrap_or_default();
    let pad = pads.first().copied().unwrap_or(0);
    let dilations = node.ints.get("dilations").cloned().unwrap_or_default();
    if pad < 0 || pads.iter().any(|&p| p != pad) || dilations.iter().any(|&d| d != 1) {
        return Err("a Conv with uneven or negative padding, or dilation".into());
    }
    let pad = pad as usize;
    let [out, per_group, kh, kw] =
        <[usize; 4]>::try_from(dims).map_err(|_| format!("a Conv weight of shape {dims:?}"))?;
    if b.len() != out {
        return Err(format!("a bias of {} values for {out} channels", b.len()));
    }
    let mut conv = Conv2dConfig::new([per_group * groups, out], [kh, kw])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .init(device);
    conv.weight = Param::from_tensor(Tensor::from_data(TensorData::new(w, [out, per_group, kh, kw]), device));
    conv.bias = Some(Param::from_tensor(Tensor::from_data(TensorData::new(b, [out]), device)));
    Ok(conv)
}
