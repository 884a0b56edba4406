use burn::prelude::*;
use maskid_g2d::model::SFace;
use std::time::Instant;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let freeze: usize = std::env::args().nth(2).map_or(0, |s| s.parse().unwrap());
    let bytes = std::fs::read(path).unwrap();
    let base = Device::flex();
    let t = Instant::now();
    let net = SFace::from_onnx(&bytes, &base).unwrap();
    println!("load {:?}", t.elapsed());
    let b = 32;
    let x = Tensor::<4>::random([b, 3, 112, 112], burn::tensor::Distribution::Uniform(-1.0, 1.0), &base);
    for _ in 0..2 {
        let t = Instant::now();
        let y = net.forward(x.clone());
        let _ = y.into_data();
        println!("fwd b{b}: {:?} -> {:.1} img/s", t.elapsed(), b as f64 / t.elapsed().as_secs_f64());
    }
    let ad = base.clone().autodiff();
    let student = SFace::from_onnx(&bytes, &ad).unwrap();
    for _ in 0..3 {
        let t = Instant::now();
        let f = net.features(x.clone(), 0, freeze);
        let f = Tensor::<4>::from_data(f.into_data(), &ad);
        let y = student.head(student.features(f, freeze, student.depth()));
        let loss = y.powf_scalar(2.0).mean();
        let g = loss.backward();
        let _ = g;
        println!("train b{b} freeze {freeze}: {:?} -> {:.1} img/s", t.elapsed(), b as f64 / t.elapsed().as_secs_f64());
    }
}
