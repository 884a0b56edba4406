//! YuNet as a burn network (built from its ONNX file, to be tuned on masked faces) against
//! ONNX Runtime on real photos.

mod common;

use maskid_assets::{Assets, ONNXRUNTIME_LIB, YUNET};
use maskid_face::{init_runtime, load_image, yunet_input, Detector, DetectorConfig, Parallelism, DEFAULT_MAX_PIXELS};
use maskid_g2d::model::{YuNet, HEAD_OUTPUTS};
use maskid_g2d::Device;
use maskid_mask::{render_mask, Coverage, MaskSpec, RgbImageMut};
use maskid_pipeline::{Models, ModelsConfig};

#[test]
fn burn_yunet_matches_onnx_runtime_on_real_photos() {
    let assets = Assets::from_env();
    init_runtime(&assets.get(&ONNXRUNTIME_LIB).unwrap()).unwrap();
    let model = assets.get(&YUNET).unwrap();
    let detector = Detector::new(&model, DetectorConfig::default(), Parallelism::Latency).unwrap();
    let device = Device::flex();
    let network = YuNet::from_onnx(&std::fs::read(&model).unwrap(), &device).expect("YuNet builds from its ONNX file");
    for name in ["person_a_1.jpg", "impostor_2.jpg"] {
        let image = load_image(&common::sample(name), DEFAULT_MAX_PIXELS).unwrap();
        let image = image::imageops::thumbnail(&image, 300, 300 * image.height() / image.width());
        let (input, w, h) = yunet_input(&image);
        let onnx = detector.head_outputs(&input, w, h).unwrap();
        let maps = network.head_outputs(input, w, h, &device).unwrap();
        for (i, (got, expected)) in maps.iter().zip(&onnx).enumerate() {
            assert_eq!(got.len(), expected.len(), "{name} {}", HEAD_OUTPUTS[i]);
            let worst = got.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            let scale = expected.iter().map(|v| v.abs()).fold(0f32, f32::max);
            eprintln!("{name} {}: largest difference {worst} (largest value {scale})", HEAD_OUTPUTS[i]);
            assert!(
                worst <= 1e-3 * scale.max(1.0),
                "{name} {}: burn and ONNX Runtime differ by {worst}",
                HEAD_OUTPUTS[i]
            );
        }
    }
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn the_detector_stage_stops_resumes_and_exports_a_yunet_that_onnx_runtime_runs() {
    let lfw = common::lfw("the_detector_stage_stops_resumes_and_exports_a_yunet_that_onnx_runtime_runs");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("detector.toml");
    std::fs::write(
        &config,
        "name = \"detector-test\"\nvalidation_views = 8\n\
         [schedule]\nsteps = 2\nbatch_size = 4\ncheckpoint_every = 1\nvalidate_every = 1\n",
    )
    .unwrap();
    let run = dir.path().join("run");
    let train = |extra: &[&str]| {
        let mut args = vec!["train", "--stage", "detector", "--data", lfw.to_str().unwrap(), "--max-people", "40"];
        args.extend(["--config", config.to_str().unwrap(), "--run", run.to_str().unwrap(), "--json"]);
        args.extend(extra);
        common::stdout_json(&common::maskid(&args))
    };
    let first = train(&["--stop-after", "1"]);
    assert_eq!(first[0]["stage"], "detector");
    assert_eq!(first[0]["steps"], 1);
    assert_eq!(first[0]["finished"], false);
    // Exporting an unfinished stage is refused with the way out.
    let output = dir.path().join("tuned.onnx");
    let refused =
        common::maskid(&["export", "--run", run.to_str().unwrap(), "--detector", "-o", output.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(common::stderr(&refused).contains("--resume"), "{}", common::stderr(&refused));
    let second = train(&["--resume"]);
    assert_eq!(second[0]["steps"], 2);
    assert_eq!(second[0]["steps_this_session"], 1);
    assert_eq!(second[0]["finished"], true);
    let summary = common::stdout_json(&common::maskid(&[
        "export",
        "--run",
        run.to_str().unwrap(),
        "--detector",
        "-o",
        output.to_str().unwrap(),
        "--json",
    ]));
    assert!(summary["max_abs_difference"].as_f64().unwrap() <= 1e-4, "{summary}");
    // The file is a YuNet: the detector loads it and finds the face YuNet finds in a photo.
    let assets = Assets::from_env();
    init_runtime(&assets.get(&ONNXRUNTIME_LIB).unwrap()).unwrap();
    let plain = Detector::new(&assets.get(&YUNET).unwrap(), DetectorConfig::default(), Parallelism::Latency).unwrap();
    let tuned = Detector::new(&output, DetectorConfig::default(), Parallelism::Latency).unwrap();
    let image = load_image(&common::sample("person_b_1.jpg"), DEFAULT_MAX_PIXELS).unwrap();
    let face = plain.detect(&image).unwrap()[0];
    assert!(tuned.detect(&image).unwrap().iter().any(|f| f.bbox.iou(&face.bbox) > 0.5));
}

/// The masked-face pass on tight crops of the sample photos, masked by maskid's renderer and
/// behind dark glasses: it finds faces that YuNet's own passes miss, where they are.
#[test]
fn the_masked_face_pass_finds_tight_masked_crops_that_yunet_alone_misses() {
    let assets = Assets::from_env();
    let models = Models::load(&assets, ModelsConfig::default()).unwrap();
    let plain = Detector::new(&assets.get(&YUNET).unwrap(), DetectorConfig::default(), Parallelism::Latency).unwrap();
    let (mut tried, mut plain_found, mut found) = (0, 0, 0);
    for photo in maskid_assets::SAMPLE_PHOTOS.iter() {
        let image = load_image(&assets.get(photo).unwrap(), DEFAULT_MAX_PIXELS).unwrap();
        let face = models.detector.detect(&image).unwrap()[0];
        let [re, le, _, rm, lm] = face.landmarks.0;
        let d = le[0] - re[0];
        for seed in 0..4u64 {
            let mut masked = image.clone();
            let (w, h) = masked.dimensions();
            let mut target = RgbImageMut::new(w as usize, h as usize, &mut masked).unwrap();
            render_mask(&mut target, &face.landmarks, &MaskSpec::from_seed(seed, None, Coverage::Random)).unwrap();
            // Dark glasses: two lenses over the eyes.
            for (x, y, p) in masked.enumerate_pixels_mut() {
                let (x, y) = (x as f32 + 0.5, y as f32 + 0.5);
                if [re, le].iter().any(|e| ((x - e[0]) / (0.33 * d)).powi(2) + ((y - e[1]) / (0.24 * d)).powi(2) <= 1.0)
                {
                    p.0 = [25, 25, 30];
                }
            }
            // From the eyebrows to the chin: how many real masked photos are cut.
            let top = (re[1] + le[1]) / 2.0 - d * (0.3 + 0.1 * seed as f32);
            let bottom = (rm[1] + lm[1]) / 2.0 + d * 0.9;
            let (left, right) = (re[0] - d * 0.6, le[0] + d * 0.6);
            let crop = image::imageops::crop_imm(
                &masked,
                left.max(0.0) as u32,
                top.max(0.0) as u32,
                (right - left) as u32,
                (bottom - top) as u32,
            )
            .to_image();
            // Where the face is in the crop: between the eyes and the mouth.
            let centre = [(re[0] + le[0]) / 2.0 - left.max(0.0), (re[1] + rm[1]) / 2.0 - top.max(0.0)];
            let right_place = |faces: Vec<maskid_core::Detection>| {
                faces.iter().any(|f| {
                    let c = [f.bbox.x + f.bbox.width / 2.0, f.bbox.y + f.bbox.height / 2.0];
                    ((c[0] - centre[0]).powi(2) + (c[1] - centre[1]).powi(2)).sqrt() <= 0.5 * d
                })
            };
            tried += 1;
            plain_found += usize::from(right_place(plain.detect(&crop).unwrap()));
            found += usize::from(right_place(models.detector.detect(&crop).unwrap()));
        }
    }
    eprintln!("tight masked crops: YuNet's passes found {plain_found} of {tried}, with the masked-face pass {found}");
    assert!(found >= plain_found + 4, "the masked-face pass added {} faces", found - plain_found);
    assert!(found >= tried - 2, "{found} of {tried} found");
}
