//! The backbone (encoder up to the descriptor, then the reformer) and the inpainter (encoder,
//! then decoder) as ONNX files that ONNX Runtime runs, and checks that ONNX Runtime's outputs
//! match burn's.
//!
//! burn has no ONNX writer, so this writes the protobuf itself: a handful of standard
//! operators (Conv, ConvTranspose, Relu, Tanh, Add, BatchNormalization, GlobalAveragePool,
//! Flatten, Gemm, LpNormalization), opset 17, weights as float32 initialisers, input
//! `faces [batch, 3, 112, 112]` in [-1, 1] RGB; outputs `embedding [batch, D]`, L2-normalised
//! (backbone) or `restored [batch, 3, 112, 112]` in [-1, 1] (inpainter).

use std::path::Path;

use burn::nn::conv::{Conv2d, ConvTranspose2d};
use burn::nn::{BatchNorm, Linear, PRelu, PaddingConfig2d};
use burn::prelude::*;
use maskid_core::{AlignedFace, ALIGNED_SIZE_PX};
use maskid_face::onnx_graph::{replace_conv_weights, ConvWeights};
use maskid_face::{Detector, DetectorConfig, EmbedderConfig, FaceEmbedder, FaceRestorer, Parallelism};

use crate::data::faces_tensor;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::model::{
    Backbone, Decoder, Encoder, FaceNetwork, Inpainter, Reformer, ResBlock, Student, StudentInput, YuNet,
};
use crate::stage::embed_faces;
use crate::{Error, Result};

/// ONNX opset of the exported graph.
const OPSET: i64 = 17;

/// Writes `backbone` to `path` (atomically); `metadata` goes into the model's properties.
pub fn export_onnx(backbone: &Backbone, path: &Path, metadata: &[(&str, String)]) -> Result<()> {
    let mut graph = Graph::default();
    let mut x = graph.encoder(&backbone.encoder)?;
    let reformer = &backbone.reformer;
    x = graph.conv(&x, &reformer.stem)?;
    x = graph.batch_norm(&x, &reformer.stem_bn)?;
    x = graph.op("Relu", &[&x], vec![]);
    for block in &reformer.blocks {
        let h = graph.conv(&x, &block.conv1)?;
        let h = graph.batch_norm(&h, &block.bn1)?;
        let h = graph.op("Relu", &[&h], vec![]);
        let h = graph.conv(&h, &block.conv2)?;
        let h = graph.batch_norm(&h, &block.bn2)?;
        let skip = match &block.shortcut {
            Some((conv, bn)) => {
                let s = graph.conv(&x, conv)?;
                graph.batch_norm(&s, bn)?
            }
            None => x.clone(),
        };
        let sum = graph.op("Add", &[&h, &skip], vec![]);
        x = graph.op("Relu", &[&sum], vec![]);
    }
    x = graph.op("GlobalAveragePool", &[&x], vec![]);
    x = graph.op("Flatten", &[&x], vec![attr_int("axis", 1)]);
    x = graph.gemm(&x, &reformer.fc)?;
    let embedding_dim = reformer.fc.weight.dims()[1];
    graph.output_node("LpNormalization", &[&x], "embedding", vec![attr_int("axis", 1), attr_int("p", 2)]);
    let bytes = graph.model("maskid_g2d_backbone", &[Some(embedding_dim)], "embedding", metadata);
    write(path, &bytes)
}

/// Writes the teacher-initialised `student` to `path` (atomically): encoder and adapter (when
/// the descriptor is used) beside the teacher's units, their sum, the upper units, the FC and
/// the L2 normalisation; output `embedding [batch, 128]`.
pub fn export_student_onnx(student: &Student, path: &Path, metadata: &[(&str, String)]) -> Result<()> {
    let mut graph = Graph::default();
    let adapted = match (&student.encoder, &student.adapter) {
        (Some(encoder), Some(adapter)) => {
            let mut x = graph.encoder(encoder)?;
            for (conv, prelu) in &adapter.hidden {
                x = graph.conv(&x, conv)?;
                x = graph.prelu(&x, prelu)?;
            }
            Some(graph.conv(&x, &adapter.out)?)
        }
        _ => None,
    };
    let units = &student.sface.units;
    let mut x = "faces".to_string();
    if student.input != StudentInput::Descriptor {
        for unit in &units[..student.entry] {
            x = graph.conv(&x, &unit.conv)?;
            x = graph.prelu(&x, &unit.prelu)?;
        }
    }
    x = match (student.input, adapted) {
        (StudentInput::Descriptor, Some(a)) => a,
        (_, Some(a)) => graph.op("Add", &[&x, &a], vec![]),
        (_, None) => x,
    };
    for unit in &units[student.entry..] {
        x = graph.conv(&x, &unit.conv)?;
        x = graph.prelu(&x, &unit.prelu)?;
    }
    x = graph.op("Flatten", &[&x], vec![attr_int("axis", 1)]);
    x = graph.gemm(&x, &student.sface.fc)?;
    let embedding_dim = student.sface.fc.weight.dims()[1];
    graph.output_node("LpNormalization", &[&x], "embedding", vec![attr_int("axis", 1), attr_int("p", 2)]);
    let bytes = graph.model("maskid_g2d_student", &[Some(embedding_dim)], "embedding", metadata);
    write(path, &bytes)
}

/// Writes `inpainter` (masked face -> restored face) to `path` (atomically).
pub fn export_inpainter_onnx(inpainter: &Inpainter, path: &Path, metadata: &[(&str, String)]) -> Result<()> {
    let mut graph = Graph::default();
    let mut x = graph.encoder(&inpainter.encoder)?;
    let decoder = &inpainter.decoder;
    for block in &decoder.blocks {
        x = graph.res_block(&x, block)?;
    }
    for up in [&decoder.up1, &decoder.up2] {
        x = graph.conv_transpose(&x, up)?;
        x = graph.op("Relu", &[&x], vec![]);
    }
    x = graph.conv(&x, &decoder.out)?;
    graph.output_node("Tanh", &[&x], "restored", vec![]);
    let size = Some(ALIGNED_SIZE_PX);
    let bytes = graph.model("maskid_g2d_inpainter", &[Some(3), size, size], "restored", metadata);
    write(path, &bytes)
}

/// Every trained weight of the G2D network: the encoder (to the descriptor), the rest of the
/// inpainting decoder, and the reformer. The checkpoint shipped beside the ONNX files.
#[derive(Module, Debug)]
pub struct G2dWeights {
    /// Face -> descriptor (stage 1).
    pub encoder: Encoder,
    /// Descriptor -> restored face (stage 0, frozen after).
    pub decoder: Decoder,
    /// Descriptor -> identity vector (stage 2).
    pub reformer: Reformer,
}

/// Writes `weights` as safetensors (atomically: burn-store writes a scratch file and renames
/// it), with `metadata`, then reads the file back into a fresh network of `config`'s shape and
/// refuses a file that does not fill every tensor.
pub fn export_safetensors(
    weights: &G2dWeights,
    config: &crate::G2dConfig,
    path: &Path,
    metadata: &[(&str, String)],
) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path).overwrite(true);
    for (key, value) in metadata {
        store = store.metadata(*key, value.clone());
    }
    weights.save_into(&mut store).map_err(|e| Error::Export(format!("writing {}: {e}", path.display())))?;
    load_weights(config, path, &Device::flex()).map(drop)
}

/// Reads a safetensors checkpoint of [`export_safetensors`] into a network of `config`'s
/// shape; a file that does not fill every tensor is refused.
pub fn load_weights(config: &crate::G2dConfig, path: &Path, device: &Device) -> Result<G2dWeights> {
    let inpainter = config.model.encoder.init(device);
    let mut fresh = G2dWeights {
        encoder: inpainter.encoder,
        decoder: inpainter.decoder,
        reformer: config.model.reformer.init(config.model.encoder.width, device),
    };
    if !path.is_file() {
        return Err(Error::Checkpoint(format!("{}: no such G2D checkpoint", path.display())));
    }
    let applied = fresh
        .load_from(&mut SafetensorsStore::from_file(path))
        .map_err(|e| Error::Checkpoint(format!("reading {}: {e}", path.display())))?;
    if !applied.missing.is_empty() || !applied.errors.is_empty() {
        return Err(Error::Checkpoint(format!(
            "{} does not fit the config's network: {} tensors missing, {} errors",
            path.display(),
            applied.missing.len(),
            applied.errors.len()
        )));
    }
    Ok(fresh)
}

/// Writes the tuned `detector` to `path` (atomically): YuNet's own file, `original`, with the
/// weights of its convolutions replaced (float32) and `metadata` added, so the tuned file
/// has the same inputs, outputs and operators as the one it came from.
pub fn export_detector_onnx(detector: &YuNet, original: &[u8], path: &Path, metadata: &[(&str, String)]) -> Result<()> {
    let convs = detector
        .convs()
        .iter()
        .map(|conv| {
            let kernel = conv.weight.val();
            let dims = kernel.dims();
            let bias =
                conv.bias.as_ref().ok_or_else(|| Error::Export("a detector convolution without a bias".into()))?;
            Ok(ConvWeights {
                dims,
                kernel: floats(kernel.reshape([dims.iter().product::<usize>()]))?,
                bias: floats(bias.val())?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let bytes = replace_conv_weights(original, &convs, metadata).map_err(|e| Error::Export(e.to_string()))?;
    write(path, &bytes)
}

/// Runs canvases of `maskid_face::yunet_input` (planes, width, height) through burn's
/// `detector` and through ONNX Runtime on the exported file; returns the largest absolute
/// difference of their outputs (scores after the sigmoid).
pub fn detector_parity(detector: &YuNet, onnx: &Path, inputs: &[(Vec<f32>, u32, u32)], device: &Device) -> Result<f32> {
    let runtime = Detector::new(onnx, DetectorConfig::default(), Parallelism::Latency)
        .map_err(|e| Error::Export(format!("ONNX Runtime cannot load {}: {e}", onnx.display())))?;
    let mut max = 0f32;
    for (input, width, height) in inputs {
        let ort_out = runtime
            .head_outputs(input, *width, *height)
            .map_err(|e| Error::Export(format!("ONNX Runtime on {}: {e}", onnx.display())))?;
        let burn_out = detector.head_outputs(input.clone(), *width, *height, device)?;
        for (a, b) in burn_out.iter().zip(&ort_out) {
            if a.len() != b.len() {
                return Err(Error::Export(format!("burn gives {} values, ONNX Runtime {}", a.len(), b.len())));
            }
            max = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(max, f32::max);
        }
    }
    Ok(max)
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    maskid_assets::write_atomic(path, bytes).map_err(|e| Error::Export(format!("writing {}: {e}", path.display())))
}

/// Runs `faces` through burn and through ONNX Runtime on the exported file; returns the largest
/// absolute difference between the two embeddings.
pub fn parity(network: &impl FaceNetwork, onnx: &Path, faces: &[AlignedFace], device: &Device) -> Result<f32> {
    let burn_out = embed_faces(network, &faces.iter().collect::<Vec<_>>(), device)?;
    let embedder = FaceEmbedder::new(onnx, EmbedderConfig::g2d(), Parallelism::Latency)
        .map_err(|e| Error::Export(format!("ONNX Runtime cannot load {}: {e}", onnx.display())))?;
    let ort_out =
        embedder.embed(faces).map_err(|e| Error::Export(format!("ONNX Runtime on {}: {e}", onnx.display())))?;
    let mut max = 0f32;
    for (a, b) in burn_out.iter().zip(&ort_out) {
        if a.len() != b.values().len() {
            return Err(Error::Export(format!("burn gives {} values, ONNX Runtime {}", a.len(), b.values().len())));
        }
        for (x, y) in a.iter().zip(b.values()) {
            max = max.max((x - y).abs());
        }
    }
    Ok(max)
}

/// Runs `faces` through burn's inpainter and through ONNX Runtime on the exported file;
/// returns the largest absolute difference of the restored faces, in [-1, 1] units.
pub fn inpainter_parity(inpainter: &Inpainter, onnx: &Path, faces: &[AlignedFace], device: &Device) -> Result<f32> {
    let rgb: Vec<&[u8]> = faces.iter().map(|f| f.rgb()).collect();
    let burn_out = floats(inpainter.forward(faces_tensor(&rgb, device)).flatten(0, 3))?;
    let restorer = FaceRestorer::new(onnx, Parallelism::Latency)
        .map_err(|e| Error::Export(format!("ONNX Runtime cannot load {}: {e}", onnx.display())))?;
    let ort_out = restorer
        .restore_values(faces)
        .map_err(|e| Error::Export(format!("ONNX Runtime on {}: {e}", onnx.display())))?;
    if burn_out.len() != ort_out.len() {
        return Err(Error::Export(format!("burn gives {} values, ONNX Runtime {}", burn_out.len(), ort_out.len())));
    }
    Ok(burn_out.iter().zip(&ort_out).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max))
}

fn floats(tensor: Tensor<1>) -> Result<Vec<f32>> {
    tensor.into_data().try_into_vec::<f32>().map_err(|e| Error::Export(format!("reading weights: {e:?}")))
}

/// Nodes and initialisers, with generated value names.
#[derive(Default)]
struct Graph {
    nodes: Vec<Vec<u8>>,
    initializers: Vec<Vec<u8>>,
    count: usize,
}

impl Graph {
    fn name(&mut self, prefix: &str) -> String {
        self.count += 1;
        format!("{prefix}_{}", self.count)
    }

    fn weight(&mut self, prefix: &str, dims: &[usize], values: Vec<f32>) -> String {
        let name = self.name(prefix);
        let mut t = Vec::new();
        for &d in dims {
            int_field(&mut t, 1, d as i64);
        }
        int_field(&mut t, 2, 1); // FLOAT
        bytes_field(&mut t, 8, name.as_bytes());
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        bytes_field(&mut t, 9, &raw);
        self.initializers.push(t);
        name
    }

    fn node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Vec<u8>>) {
        let mut n = Vec::new();
        for i in inputs {
            bytes_field(&mut n, 1, i.as_bytes());
        }
        bytes_field(&mut n, 2, output.as_bytes());
        bytes_field(&mut n, 3, output.as_bytes());
        bytes_field(&mut n, 4, op.as_bytes());
        for a in attributes {
            bytes_field(&mut n, 5, &a);
        }
        self.nodes.push(n);
    }

    fn op(&mut self, op: &str, inputs: &[&str], attributes: Vec<Vec<u8>>) -> String {
        let output = self.name(&op.to_lowercase());
        self.node(op, inputs, &output, attributes);
        output
    }

    fn output_node(&mut self, op: &str, inputs: &[&str], output: &str, attributes: Vec<Vec<u8>>) {
        self.node(op, inputs, output, attributes);
    }

    /// The inputs of a (transposed) convolution: `x`, the kernel and the bias if any.
    fn kernel_inputs(
        &mut self,
        x: &str,
        prefix: &str,
        kernel: Tensor<4>,
        bias: Option<Tensor<1>>,
    ) -> Result<Vec<String>> {
        let dims = kernel.dims();
        let w = self.weight(&format!("{prefix}_w"), &dims, floats(kernel.reshape([dims.iter().product::<usize>()]))?);
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            let len = b.dims()[0];
            inputs.push(self.weight(&format!("{prefix}_b"), &[len], floats(b)?));
        }
        Ok(inputs)
    }

    fn conv(&mut self, x: &str, conv: &Conv2d) -> Result<String> {
        let inputs = self.kernel_inputs(x, "conv", conv.weight.val(), conv.bias.as_ref().map(|b| b.val()))?;
        let pads = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Valid => [0; 4],
            _ => return Err(Error::Export("only explicit or no padding can be exported".into())),
        };
        let attributes = vec![
            attr_ints("kernel_shape", &conv.kernel_size),
            attr_ints("strides", &conv.stride),
            attr_ints("dilations", &conv.dilation),
            attr_ints("pads", &pads),
            attr_int("group", conv.groups as i64),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("Conv", &refs, attributes))
    }

    /// Stem, two strided convolutions and the encoder's residual blocks; returns the descriptor.
    fn encoder(&mut self, encoder: &Encoder) -> Result<String> {
        let mut x = "faces".to_string();
        for conv in [&encoder.stem, &encoder.down1, &encoder.down2] {
            x = self.conv(&x, conv)?;
            x = self.op("Relu", &[&x], vec![]);
        }
        for block in &encoder.blocks {
            x = self.res_block(&x, block)?;
        }
        Ok(x)
    }

    fn res_block(&mut self, x: &str, block: &ResBlock) -> Result<String> {
        let [dilated, conv] = block.convs();
        let h = self.conv(x, dilated)?;
        let h = self.op("Relu", &[&h], vec![]);
        let h = self.conv(&h, conv)?;
        Ok(self.op("Add", &[x, &h], vec![]))
    }

    fn conv_transpose(&mut self, x: &str, conv: &ConvTranspose2d) -> Result<String> {
        // burn's weight is [in, out / groups, kh, kw], ONNX's layout too.
        let inputs = self.kernel_inputs(x, "deconv", conv.weight.val(), conv.bias.as_ref().map(|b| b.val()))?;
        let [ph, pw] = conv.padding;
        let attributes = vec![
            attr_ints("kernel_shape", &conv.kernel_size),
            attr_ints("strides", &conv.stride),
            attr_ints("dilations", &conv.dilation),
            attr_ints("pads", &[ph, pw, ph, pw]),
            attr_ints("output_padding", &conv.padding_out),
            attr_int("group", conv.groups as i64),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("ConvTranspose", &refs, attributes))
    }

    fn prelu(&mut self, x: &str, prelu: &PRelu) -> Result<String> {
        let n = prelu.alpha.dims()[0];
        // [C, 1, 1] broadcasts over [batch, C, H, W] as burn's per-channel slope does.
        let slope = self.weight("prelu_slope", &[n, 1, 1], floats(prelu.alpha.val())?);
        Ok(self.op("PRelu", &[x, &slope], vec![]))
    }

    fn batch_norm(&mut self, x: &str, bn: &BatchNorm) -> Result<String> {
        let n = bn.gamma.dims()[0];
        let scale = self.weight("bn_scale", &[n], floats(bn.gamma.val())?);
        let bias = self.weight("bn_bias", &[n], floats(bn.beta.val())?);
        let mean = self.weight("bn_mean", &[n], floats(bn.running_mean.value())?);
        let var = self.weight("bn_var", &[n], floats(bn.running_var.value())?);
        Ok(self.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![attr_float("epsilon", bn.epsilon as f32)],
        ))
    }

    fn gemm(&mut self, x: &str, linear: &Linear) -> Result<String> {
        let weight = linear.weight.val(); // [in, out], as Gemm's B without transposition
        let dims = weight.dims();
        let w = self.weight("fc_w", &dims, floats(weight.reshape([dims[0] * dims[1]]))?);
        let mut inputs = vec![x.to_string(), w];
        if let Some(bias) = &linear.bias {
            inputs.push(self.weight("fc_b", &[dims[1]], floats(bias.val())?));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("Gemm", &refs, vec![]))
    }

    /// The model: input `faces [batch, 3, 112, 112]`, one output of `[batch, output_dims...]`.
    fn model(self, name: &str, output_dims: &[Option<usize>], output: &str, metadata: &[(&str, String)]) -> Vec<u8> {
        let mut graph = Vec::new();
        for n in &self.nodes {
            bytes_field(&mut graph, 1, n);
        }
        bytes_field(&mut graph, 2, name.as_bytes());
        for t in &self.initializers {
            bytes_field(&mut graph, 5, t);
        }
        let size = Some(ALIGNED_SIZE_PX);
        bytes_field(&mut graph, 11, &value_info("faces", &[None, Some(3), size, size]));
        let dims: Vec<Option<usize>> = std::iter::once(None).chain(output_dims.iter().copied()).collect();
        bytes_field(&mut graph, 12, &value_info(output, &dims));
        let mut model = Vec::new();
        int_field(&mut model, 1, 8); // IR version 8
        bytes_field(&mut model, 2, b"maskid");
        bytes_field(&mut model, 3, env!("CARGO_PKG_VERSION").as_bytes());
        bytes_field(&mut model, 7, &graph);
        let mut opset = Vec::new();
        bytes_field(&mut opset, 1, b"");
        int_field(&mut opset, 2, OPSET);
        bytes_field(&mut model, 8, &opset);
        for (key, value) in metadata {
            let mut entry = Vec::new();
            bytes_field(&mut entry, 1, key.as_bytes());
            bytes_field(&mut entry, 2, value.as_bytes());
            bytes_field(&mut model, 14, &entry);
        }
        model
    }
}

/// A float tensor's name, type and shape; `None` is the symbolic batch dimension.
fn value_info(name: &str, dims: &[Option<usize>]) -> Vec<u8> {
    let mut shape = Vec::new();
    for d in dims {
        let mut dim = Vec::new();
        match d {
            Some(v) => int_field(&mut dim, 1, *v as i64),
            None => bytes_field(&mut dim, 2, b"batch"),
        }
        bytes_field(&mut shape, 1, &dim);
    }
    let mut tensor = Vec::new();
    int_field(&mut tensor, 1, 1); // FLOAT
    bytes_field(&mut tensor, 2, &shape);
    let mut ty = Vec::new();
    bytes_field(&mut ty, 1, &tensor);
    let mut info = Vec::new();
    bytes_field(&mut info, 1, name.as_bytes());
    bytes_field(&mut info, 2, &ty);
    info
}

fn attr_int(name: &str, value: i64) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    int_field(&mut a, 3, value);
    int_field(&mut a, 20, 2); // INT
    a
}

fn attr_float(name: &str, value: f32) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    key(&mut a, 2, 5);
    a.extend_from_slice(&value.to_le_bytes());
    int_field(&mut a, 20, 1); // FLOAT
    a
}

fn attr_ints(name: &str, values: &[usize]) -> Vec<u8> {
    let mut a = Vec::new();
    bytes_field(&mut a, 1, name.as_bytes());
    for &v in values {
        int_field(&mut a, 8, v as i64);
    }
    int_field(&mut a, 20, 7); // INTS
    a
}

fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn key(buf: &mut Vec<u8>, field: u32, wire: u8) {
    varint(buf, (u64::from(field) << 3) | u64::from(wire));
}

fn int_field(buf: &mut Vec<u8>, field: u32, value: i64) {
    key(buf, field, 0);
    varint(buf, value as u64);
}

fn bytes_field(buf: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(buf, field, 2);
    varint(buf, bytes.len() as u64);
    buf.extend_from_slice(bytes);
}
