use burn::prelude::*;
use burn::tensor::TensorData;
use maskid_g2d::model::YuNet;
use maskid_g2d::Device;
use std::time::Instant;
fn main() {
    let path = maskid_assets::Assets::from_env().get(&maskid_assets::YUNET).unwrap();
    let bytes = std::fs::read(path).unwrap();
    let base = Device::flex();
    let dev = base.clone().autodiff();
    let teacher = YuNet::from_onnx(&bytes, &base).unwrap();
    let student = YuNet::from_onnx(&bytes, &dev).unwrap();
    for side in [320usize, 224] {
        let n = 16;
        let x: Vec<f32> = (0..n * 3 * side * side).map(|i| (i % 251) as f32).collect();
        for _ in 0..2 {
            let t = Instant::now();
            let tm = teacher.forward(Tensor::from_data(TensorData::new(x.clone(), [n, 3, side, side]), &base));
            let _ = tm[0].clone().into_data();
            let t1 = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let sm = student.forward(Tensor::from_data(TensorData::new(x.clone(), [n, 3, side, side]), &dev));
            let tm: Vec<Tensor<4>> = tm.into_iter().map(|m| Tensor::from_data(m.into_data(), &dev)).collect();
            let (loss, _) = maskid_g2d::stage::detector_distillation_loss(&sm, &tm, 1.0);
            let t2 = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let g = loss.backward();
            drop(g);
            let t3 = t.elapsed().as_secs_f64();
            println!("side {side}: teacher fwd {t1:.2}s student fwd+loss {t2:.2}s backward {t3:.2}s");
        }
    }
}
