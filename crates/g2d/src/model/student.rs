//! The teacher-initialised student: SFace's own network, with the teacher's weights, reading
//! the masked face; the inpainting encoder's descriptor of the same masked face enters it
//! through an adapter. Training (stage/student.rs) teaches it only what masks take away, and
//! its embedding stays in the teacher's 128-d space.
//!
//! Three ways in (ablation): `pixels` (plain distillation, no descriptor); `pixels+descriptor`
//! (G2D: the adapter's output is added to the teacher's feature map where training starts,
//! and its last layer starts at zero, so at step 0 the student equals the teacher); and
//! `descriptor` (closest to the paper: the adapter replaces the teacher's layers below that
//! point, so the descriptor alone reaches the upper layers).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::nn::conv::Conv2d;
use burn::nn::{PRelu, PReluConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use super::{conv, l2_normalize, Encoder, SFace};
use crate::{Error, Result};

/// How the masked face reaches the student.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StudentInput {
    /// Pixels only: the teacher's network fine-tuned on masked faces.
    #[serde(rename = "pixels")]
    Pixels,
    /// Pixels, plus the descriptor added through a zero-initialised adapter (G2D).
    #[serde(rename = "pixels+descriptor")]
    PixelsAndDescriptor,
    /// The descriptor alone, entering the teacher's network midway (paper-like).
    #[serde(rename = "descriptor")]
    Descriptor,
}

/// Shape of the student.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StudentConfig {
    /// How the masked face enters.
    pub input: StudentInput,
    /// The first of the teacher's convolution units that trains (0 = the stem; SFace has 27:
    /// the stem, then depthwise and pointwise units alternating). Units below it keep the
    /// teacher's weights and run without gradients; the descriptor enters here.
    pub train_from_unit: usize,
    /// Channels of the adapter's hidden convolutions.
    pub adapter_width: usize,
    /// Keep the final FC (and the batch norms folded into it) as the teacher has it.
    pub freeze_fc: bool,
    /// Share of the teacher in the finished student's weights, 0..1 (WiSE-FT, Wortsman et
    /// al. 2022): each weight of the teacher's network becomes `(1 - s) * trained + s *
    /// teacher` and the adapter's output is scaled by `1 - s`, so 0 is the trained student
    /// and 1 the teacher. Validation and export see the blended student; training does not.
    pub teacher_share: f64,
}

impl Default for StudentConfig {
    fn default() -> Self {
        Self {
            input: StudentInput::PixelsAndDescriptor,
            train_from_unit: 25,
            adapter_width: 256,
            freeze_fc: false,
            teacher_share: 0.0,
        }
    }
}

/// Descriptor -> a feature map of the teacher's network: 3x3 convolutions with PReLU (stride 2
/// until the resolution matches), then a 1x1 convolution to the teacher's width.
#[derive(Module, Debug)]
pub struct Adapter {
    pub(crate) hidden: Vec<(Conv2d, PRelu)>,
    pub(crate) out: Conv2d,
}

impl Adapter {
    /// An adapter from `[C_d, S_d, S_d]` to `[C, S, S]`; `zero_output` makes its last layer
    /// (weights and bias) zero.
    pub fn new(descriptor: [usize; 2], target: [usize; 2], width: usize, zero_output: bool, device: &Device) -> Self {
        let [mut channels, mut side] = descriptor;
        let mut hidden = Vec::new();
        loop {
            let stride = if side > target[1] { 2 } else { 1 };
            hidden.push((conv([channels, width], 3, stride, 1, 1, device), PReluConfig::new().init(device)));
            channels = width;
            side = side.div_ceil(stride);
            if side <= target[1] {
                break;
            }
        }
        let mut out = conv([channels, target[0]], 1, 1, 1, 0, device);
        if zero_output {
            out.weight = Param::from_tensor(out.weight.val().zeros_like());
            out.bias = out.bias.map(|b| Param::from_tensor(b.val().zeros_like()));
        }
        Self { hidden, out }
    }

    /// # Shapes
    /// `[batch, C_d, S_d, S_d]` -> `[batch, C, S, S]`
    pub fn forward(&self, mut x: Tensor<4>) -> Tensor<4> {
        for (conv, act) in &self.hidden {
            x = act.forward(conv.forward(x));
        }
        self.out.forward(x)
    }
}

/// The student network.
#[derive(Module, Debug)]
pub struct Student {
    /// The teacher's network with its weights; units below `entry` stay frozen.
    pub sface: SFace,
    /// The generative encoder (frozen), when the descriptor is used.
    pub encoder: Option<Encoder>,
    /// Descriptor -> the feature map at `entry`.
    pub adapter: Option<Adapter>,
    /// The unit where training starts and the descriptor enters.
    #[module(skip)]
    pub entry: usize,
    /// How the masked face enters.
    #[module(skip)]
    pub input: StudentInput,
}

impl Student {
    /// The student of `config` around the teacher's network and, unless the input is
    /// pixels only, the trained encoder whose descriptor has `descriptor` = `[C, S]`.
    pub fn new(config: &StudentConfig, sface: SFace, encoder: Option<(Encoder, [usize; 2])>, device: &Device) -> Self {
        let entry = config.train_from_unit;
        let (encoder, adapter) = match (config.input, encoder) {
            (StudentInput::Pixels, _) | (_, None) => (None, None),
            (input, Some((encoder, descriptor))) => {
                let target = sface.feature_shape(entry);
                let zero = input == StudentInput::PixelsAndDescriptor;
                (Some(encoder), Some(Adapter::new(descriptor, target, config.adapter_width, zero, device)))
            }
        };
        Self { sface, encoder, adapter, entry, input: config.input }
    }

    /// What does not train: the teacher's units below `entry` on the pixels (skipped when
    /// only the descriptor enters) and the encoder's descriptor.
    ///
    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] -> (`[batch, C, S, S]` or none, descriptor or none)
    pub fn frozen_part(&self, faces: Tensor<4>) -> (Option<Tensor<4>>, Option<Tensor<4>>) {
        let descriptor = self.encoder.as_ref().map(|e| e.forward(faces.clone()));
        let features = (self.input != StudentInput::Descriptor).then(|| self.sface.features(faces, 0, self.entry));
        (features, descriptor)
    }

    /// What trains: adapter, the teacher's upper units and FC; L2-normalised embedding.
    ///
    /// # Shapes
    /// the two outputs of [`Student::frozen_part`] -> `[batch, 128]`
    pub fn trained_part(&self, features: Option<Tensor<4>>, descriptor: Option<Tensor<4>>) -> Tensor<2> {
        let adapted = self.adapter.as_ref().zip(descriptor).map(|(a, d)| a.forward(d));
        let x = match (features, adapted) {
            (Some(f), Some(a)) => f + a,
            (Some(f), None) => f,
            (None, Some(a)) => a,
            (None, None) => panic!("BUG: a student with neither pixels nor descriptor"),
        };
        let x = self.sface.features(x, self.entry, self.sface.depth());
        l2_normalize(self.sface.head(x))
    }

    /// The student with its weights moved toward the teacher's by `share` (see
    /// [`StudentConfig::teacher_share`]); `teacher` is the network it was initialised from.
    pub fn toward_teacher(self, teacher: &SFace, share: f64) -> Self {
        if share == 0.0 {
            return self;
        }
        let mut blend = Mix { own: 1.0 - share, others: vec![(Weights::of(teacher).0.into_iter(), share)] };
        let sface = self.sface.map(&mut blend);
        assert!(blend.others[0].0.next().is_none(), "BUG: the student's network has the teacher's shape");
        // The teacher has no adapter: its output, zero in the teacher, is scaled toward zero.
        let adapter = self.adapter.map(|mut a| {
            a.out = a.out.map(&mut Mix { own: 1.0 - share, others: Vec::new() });
            a
        });
        Self { sface, adapter, ..self }
    }

    /// The uniform average of the students' weights (a model soup, Wortsman et al. 2022):
    /// students fine-tuned from one teacher by runs that differ in their seeds stay in one
    /// basin, where the average is usually better than each. They must share one shape (one
    /// [`StudentConfig`]).
    pub fn average(mut students: Vec<Student>) -> Result<Self> {
        if students.is_empty() {
            return Err(Error::Config("a weight average needs at least one student".into()));
        }
        let first = students.remove(0);
        if students.is_empty() {
            return Ok(first);
        }
        let shape = |w: &Weights| w.0.iter().map(|t| t.dims()[0]).collect::<Vec<_>>();
        let expected = shape(&Weights::of(&first));
        let share = 1.0 / (students.len() + 1) as f64;
        let mut others = Vec::new();
        for (i, student) in students.iter().enumerate() {
            let weights = Weights::of(student);
            if shape(&weights) != expected || (student.entry, student.input) != (first.entry, first.input) {
                return Err(Error::Config(format!(
                    "student {} of the weight average has another shape than the first; only students of one \
                     network (one [model] config) can be averaged",
                    i + 2
                )));
            }
            others.push((weights.0.into_iter(), share));
        }
        Ok(first.map(&mut Mix { own: share, others }))
    }

    /// Length of the embedding (the teacher's: 128).
    pub fn embedding_dim(&self) -> usize {
        self.sface.fc.weight.dims()[1]
    }

    /// # Shapes
    /// `[batch, 3, 112, 112]` in [-1, 1] RGB -> `[batch, 128]`, L2-normalised, in the
    /// teacher's embedding space.
    pub fn forward(&self, faces: Tensor<4>) -> Tensor<2> {
        let (features, descriptor) = self.frozen_part(faces);
        self.trained_part(features, descriptor)
    }
}

/// A module's parameters, flattened, in the order burn visits them.
#[derive(Default)]
struct Weights(Vec<Tensor<1>>);

impl Weights {
    fn of<M: Module>(module: &M) -> Self {
        let mut weights = Self::default();
        module.visit(&mut weights);
        weights
    }
}

impl ModuleVisitor for Weights {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.0.push(value.reshape([n]));
    }
}

/// Replaces each parameter by `own` times itself plus, for each other module, its parameter
/// at the same place in the visiting order times that module's weight. A module with no
/// parameters left adds nothing.
struct Mix {
    own: f64,
    others: Vec<(std::vec::IntoIter<Tensor<1>>, f64)>,
}

impl ModuleMapper for Mix {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let others: Vec<(Tensor<1>, f64)> =
            self.others.iter_mut().filter_map(|(weights, share)| Some((weights.next()?, *share))).collect();
        let own = self.own;
        param.map(|value| {
            let shape = value.shape();
            let mixed = value.mul_scalar(own);
            others.into_iter().fold(mixed, |sum, (other, share)| sum + other.reshape(shape.clone()).mul_scalar(share))
        })
    }
}
