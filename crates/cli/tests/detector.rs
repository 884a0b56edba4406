//! YuNet as a burn network (built from its ONNX file, to be tuned on masked faces) against
//! ONNX Runtime on real photos.

mod common;

use maskid_assets::{Assets, ONNXRUNTIME_LIB, YUNET};
use maskid_face::{init_runtime, load_image, yunet_input, Detector, DetectorConfig, Parallelism, DEFAULT_MAX_PIXELS};
use maskid_g2d::model::{YuNet, HEAD_OUTPUTS};
use maskid_g2d::Device;

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
            assert!(worst <= 1e-3 * scale.max(1.0), "{name} {}: burn and ONNX Runtime differ by {worst}", HEAD_OUTPUTS[i]);
        }
    }
}
