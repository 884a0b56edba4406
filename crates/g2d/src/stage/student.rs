//! Stage 2 with a teacher-initialised student (model/student.rs): the teacher (cached ONNX
//! Runtime embeddings) sees each face clean, the student a masked view of it, and the student
//! learns to put its embedding where the teacher's is (feature approximation, cosine) and to
//! relate the batch's faces as the teacher does (pairwise similarity). It starts as the
//! teacher, so training only has to take away what masks do.
//!
//! Units below `model.student.train_from_unit` and the inpainting encoder run on the base
//! device without a graph; only the upper units, the FC and the adapter are differentiated.
//!
//! Validation: on the dense validation pairs when the caller gives them (maskid: the
//! `lfw-devtrain-holdout-dense` pairs of DevTrain people held out of training), the mean of
//! TAR at FAR 1e-3 over clean, mask-probe and mask-both pairs; otherwise 10-fold accuracy on
//! the validation pairs, probes masked.

use std::path::Path;

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Bytes;

use super::reformer::DistillationData;
use super::{
    dense_verification, load_inpainter, verification_accuracy, StageLoop, StepLoss, TrainData, TrainOptions, Trained,
    DENSE_METRIC,
};
use crate::config::{G2dConfig, Stage};
use crate::loss::relation_loss;
use crate::model::{Encoder, SFace, Student, StudentConfig, StudentInput};
use crate::run::{load_module, module_bytes, RunState, StageDir};
use crate::{Error, Result};

pub(crate) struct StudentDistillation<'a> {
    student: Trained<Student>,
    shared: DistillationData<'a>,
    /// The teacher's network and its share in the validated student.
    teacher: SFace,
    teacher_share: f64,
}

/// The student of `config` at step 0: the teacher's network from `teacher_onnx` and, when the
/// descriptor is used, the encoder of the G2D checkpoint `encoder_weights` (a safetensors file
/// of `maskid export --checkpoint`, e.g. `models/g2d-small.safetensors`) or, without one, of
/// the run's own encoder stage.
pub fn initial_student(
    config: &G2dConfig,
    student: &StudentConfig,
    teacher_onnx: &Path,
    encoder_weights: Option<&Path>,
    run: &Path,
    device: &Device,
) -> Result<Student> {
    let encoder = match (student.input, encoder_weights) {
        (StudentInput::Pixels, _) => None,
        (_, Some(path)) => Some(crate::export::load_weights(config, path, device)?.encoder),
        (_, None) => Some(
            load_inpainter(config, run, Stage::Reformer.previous(), device)
                .map_err(|e| {
                    Error::Checkpoint(format!(
                        "the student reads the G2D descriptor, so it needs an encoder: give --encoder-weights FILE \
                         (e.g. models/g2d-small.safetensors) or train this run's encoder stage first ({e})"
                    ))
                })?
                .encoder,
        ),
    };
    student_network(config, student, teacher_onnx, encoder, device)
}

/// The student network of `config`'s shape around the teacher's weights and `encoder`.
fn student_network(
    config: &G2dConfig,
    student: &StudentConfig,
    teacher_onnx: &Path,
    encoder: Option<Encoder>,
    device: &Device,
) -> Result<Student> {
    let bytes =
        std::fs::read(teacher_onnx).map_err(|source| Error::Io { path: teacher_onnx.display().to_string(), source })?;
    let sface = SFace::from_onnx(&bytes, device)?;
    if student.train_from_unit >= sface.depth() {
        return Err(Error::Config(format!(
            "model.student.train_from_unit = {}: the teacher has {} units (0..{})",
            student.train_from_unit,
            sface.depth(),
            sface.depth() - 1
        )));
    }
    device.seed(config.seed);
    // The encoder halves 112 twice: the descriptor is [width, 28, 28].
    let encoder = encoder.map(|e| (e, [config.model.encoder.width, 28]));
    Ok(Student::new(student, sface, encoder, device))
}

/// The best student of `run`'s reformer stage (`last`: its last checkpoint instead), moved
/// toward the teacher by its config's `teacher_share` or by `teacher_share` when given (which
/// then replaces the config's), and the config.
fn load_student(
    run: &Path,
    teacher_onnx: &Path,
    teacher_share: Option<f64>,
    last: bool,
    device: &Device,
) -> Result<(Student, G2dConfig)> {
    let (dir, state) = StageDir::finished(run, Stage::Reformer.name())?;
    let mut config = dir.config::<G2dConfig>()?;
    let student = config.model.student.as_mut().ok_or_else(|| {
        Error::Checkpoint(format!(
            "{}: the reformer stage trained no teacher-initialised student",
            dir.path().display()
        ))
    })?;
    if let Some(share) = teacher_share {
        student.teacher_share = share;
    }
    let student = student.clone();
    check_share(student.teacher_share)?;
    let encoder = (student.input != StudentInput::Pixels).then(|| config.model.encoder.init(device).encoder);
    let fresh = student_network(&config, &student, teacher_onnx, encoder, device)?;
    let teacher = fresh.sface.clone();
    let trained = match last {
        true => load_module(fresh, dir.load_part(&state, "model")?, &dir.path().display().to_string())?,
        false => dir.load_best(&state, fresh)?,
    };
    Ok((trained.toward_teacher(&teacher, student.teacher_share), config))
}

/// The weight average ([`Student::average`]) of the students of `runs` (of one run: its
/// student), each loaded as [`load_student`] loads it, and their configs in the order of
/// `runs`. The runs must have trained one network: their `[model]` sections must be equal
/// (seeds and names may differ).
pub fn load_average_student(
    runs: &[&Path],
    teacher_onnx: &Path,
    teacher_share: Option<f64>,
    last: bool,
    device: &Device,
) -> Result<(Student, Vec<G2dConfig>)> {
    let mut students = Vec::new();
    let mut configs: Vec<G2dConfig> = Vec::new();
    for run in runs {
        let (student, config) = load_student(run, teacher_onnx, teacher_share, last, device)?;
        if let Some(first) = configs.first() {
            if first.model != config.model {
                return Err(Error::Config(format!(
                    "{} and {} trained different networks (their [model] sections differ); a weight average \
                     needs runs of one network",
                    runs[0].display(),
                    run.display()
                )));
            }
        }
        students.push(student);
        configs.push(config);
    }
    Ok((Student::average(students)?, configs))
}

fn check_share(share: f64) -> Result<()> {
    if (0.0..=1.0).contains(&share) {
        Ok(())
    } else {
        Err(Error::Config(format!("model.student.teacher_share = {share}: must be between 0 and 1")))
    }
}

impl<'a> StudentDistillation<'a> {
    pub(crate) fn new(
        config: &G2dConfig,
        student: &StudentConfig,
        data: &TrainData<'a>,
        options: &TrainOptions<'_>,
    ) -> Result<Self> {
        let teacher_onnx = data.teacher_onnx.ok_or_else(|| {
            Error::Data("the teacher-initialised student needs the teacher's ONNX file (maskid models fetch)".into())
        })?;
        check_share(student.teacher_share)?;
        let shared = DistillationData::new(config, data, options)?;
        let mut model =
            initial_student(config, student, teacher_onnx, data.encoder_weights, options.run, &shared.device)?;
        let teacher = model.sface.valid();
        if student.freeze_fc {
            model.sface.fc = model.sface.fc.no_grad();
        }
        Ok(Self {
            student: Trained::new(model, &config.reformer.schedule),
            shared,
            teacher,
            teacher_share: student.teacher_share,
        })
    }
}

impl StageLoop for StudentDistillation<'_> {
    fn metric(&self) -> &'static str {
        match self.shared.dense_validation {
            Some(_) => DENSE_METRIC,
            None => "mask_probe_accuracy",
        }
    }

    const VALIDATE_AT_START: bool = true;

    fn parts(&self) -> Result<Vec<(&'static str, Bytes)>> {
        self.student.parts()
    }

    fn restore(&mut self, dir: &StageDir, state: &RunState) -> Result<()> {
        self.student.restore(dir, state)
    }

    fn step(&mut self, step: usize) -> Result<StepLoss> {
        let batch = self.shared.batch(step)?;
        // The frozen part runs without a graph; its outputs enter the differentiated part.
        let (features, descriptor) = self.student.model.valid().frozen_part(batch.masked);
        let to_graph = |t| self.shared.to_graph(t);
        let student = self.student.model.trained_part(features.map(to_graph), descriptor.map(to_graph)); // [b, 128]
        let teacher = self.shared.to_graph(batch.teacher);
        // The student lives in the teacher's space: the feature term compares it directly.
        let (total, terms) =
            relation_loss(student.clone(), Some(student), teacher, batch.identities, &self.shared.config.relation);
        let grads = GradientsParams::from_grads(total.backward(), &self.student.model);
        self.student.step(self.shared.config.schedule.lr_at(step), grads);
        Ok(StepLoss::read(total, terms))
    }

    fn validate(&mut self) -> Result<(f64, serde_json::Value)> {
        // The student as it will be exported: moved toward the teacher by its share.
        let student = self.student.model.valid().toward_teacher(&self.teacher, self.teacher_share);
        match self.shared.dense_validation {
            Some(dense) => dense_verification(&student, dense, &self.shared.base),
            None => verification_accuracy(&student, self.shared.validation, &self.shared.base),
        }
    }

    fn best(&self) -> Result<Bytes> {
        module_bytes(&self.student.model.valid())
    }
}
