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
use maskid_face::{Detector, DetectorConfig, EmbedderConfig, FaceEmbedder, FaceRestorer, Parallelism};
use maskid_onnx::{replace_conv_weights, Attribute, ConvWeights, GraphWriter, Shape};

use crate::data::faces_tensor;
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::model::{
    embed_faces, Backbone, Decoder, Encoder, FaceNetwork, Inpainter, Reformer, ResBlock, Student, StudentInput, YuNet,
};

use crate::{Error, Result};

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
    x = graph.op("Flatten", &[&x], vec![Attribute::int("axis", 1)]);
    x = graph.gemm(&x, &reformer.fc)?;
    let embedding_dim = reformer.fc.weight.dims()[1];
    graph.node("LpNormalization", &[&x], "embedding", vec![Attribute::int("axis", 1), Attribute::int("p", 2)]);
    let bytes = graph.model("maskid_g2d_backbone", ("embedding", &[None, Some(embedding_dim)]), metadata);
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
    x = graph.op("Flatten", &[&x], vec![Attribute::int("axis", 1)]);
    x = graph.gemm(&x, &student.sface.fc)?;
    let embedding_dim = student.sface.fc.weight.dims()[1];
    graph.node("LpNormalization", &[&x], "embedding", vec![Attribute::int("axis", 1), Attribute::int("p", 2)]);
    let bytes = graph.model("maskid_g2d_student", ("embedding", &[None, Some(embedding_dim)]), metadata);
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
    graph.node("Tanh", &[&x], "restored", vec![]);
    let size = Some(ALIGNED_SIZE_PX);
    let bytes = graph.model("maskid_g2d_inpainter", ("restored", &[None, Some(3), size, size]), metadata);
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

pub(crate) fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    maskid_assets::write_atomic(path, bytes).map_err(|e| Error::Export(maskid_core::error_message(&e)))
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

/// A graph of burn modules being written: [`GraphWriter`] with a method per module kind.
#[derive(Default)]
pub(crate) struct Graph(GraphWriter);

impl std::ops::Deref for Graph {
    type Target = GraphWriter;
    fn deref(&self) -> &GraphWriter {
        &self.0
    }
}

impl std::ops::DerefMut for Graph {
    fn deref_mut(&mut self) -> &mut GraphWriter {
        &mut self.0
    }
}

impl Graph {
    /// The model's bytes: input `faces [batch, 3, 112, 112]`, one output.
    pub(crate) fn model(self, name: &str, output: (&str, Shape), metadata: &[(&str, String)]) -> Vec<u8> {
        let size = Some(ALIGNED_SIZE_PX);
        self.0.model(name, ("faces", &[None, Some(3), size, size]), output, metadata)
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
        let w = self.weight(&format!("{prefix}_w"), &dims, &floats(kernel.reshape([dims.iter().product::<usize>()]))?);
        let mut inputs = vec![x.to_string(), w];
        if let Some(b) = bias {
            let len = b.dims()[0];
            inputs.push(self.weight(&format!("{prefix}_b"), &[len], &floats(b)?));
        }
        Ok(inputs)
    }

    pub(crate) fn conv(&mut self, x: &str, conv: &Conv2d) -> Result<String> {
        let inputs = self.kernel_inputs(x, "conv", conv.weight.val(), conv.bias.as_ref().map(|b| b.val()))?;
        let pads = match conv.padding {
            PaddingConfig2d::Explicit(top, left, bottom, right) => [top, left, bottom, right],
            PaddingConfig2d::Valid => [0; 4],
            _ => return Err(Error::Export("only explicit or no padding can be exported".into())),
        };
        let attributes = vec![
            Attribute::ints("kernel_shape", &conv.kernel_size),
            Attribute::ints("strides", &conv.stride),
            Attribute::ints("dilations", &conv.dilation),
            Attribute::ints("pads", &pads),
            Attribute::int("group", conv.groups as i64),
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
            Attribute::ints("kernel_shape", &conv.kernel_size),
            Attribute::ints("strides", &conv.stride),
            Attribute::ints("dilations", &conv.dilation),
            Attribute::ints("pads", &[ph, pw, ph, pw]),
            Attribute::ints("output_padding", &conv.padding_out),
            Attribute::int("group", conv.groups as i64),
        ];
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("ConvTranspose", &refs, attributes))
    }

    fn prelu(&mut self, x: &str, prelu: &PRelu) -> Result<String> {
        let n = prelu.alpha.dims()[0];
        // [C, 1, 1] broadcasts over [batch, C, H, W] as burn's per-channel slope does.
        let slope = self.weight("prelu_slope", &[n, 1, 1], &floats(prelu.alpha.val())?);
        Ok(self.op("PRelu", &[x, &slope], vec![]))
    }

    pub(crate) fn batch_norm(&mut self, x: &str, bn: &BatchNorm) -> Result<String> {
        let n = bn.gamma.dims()[0];
        let scale = self.weight("bn_scale", &[n], &floats(bn.gamma.val())?);
        let bias = self.weight("bn_bias", &[n], &floats(bn.beta.val())?);
        let mean = self.weight("bn_mean", &[n], &floats(bn.running_mean.value())?);
        let var = self.weight("bn_var", &[n], &floats(bn.running_var.value())?);
        Ok(self.op(
            "BatchNormalization",
            &[x, &scale, &bias, &mean, &var],
            vec![Attribute::float("epsilon", bn.epsilon as f32)],
        ))
    }

    pub(crate) fn gemm(&mut self, x: &str, linear: &Linear) -> Result<String> {
        let weight = linear.weight.val(); // [in, out], as Gemm's B without transposition
        let dims = weight.dims();
        let w = self.weight("fc_w", &dims, &floats(weight.reshape([dims[0] * dims[1]]))?);
        let mut inputs = vec![x.to_string(), w];
        if let Some(bias) = &linear.bias {
            inputs.push(self.weight("fc_b", &[dims[1]], &floats(bias.val())?));
        }
        let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        Ok(self.op("Gemm", &refs, vec![]))
    }
}
