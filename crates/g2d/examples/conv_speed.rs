use burn::nn::conv::Conv2dConfig;
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use maskid_g2d::Device;
use std::time::Instant;
fn main() {
    let dev = Device::flex().autodiff();
    let n = 16;
    for (name, cin, cout, k, s, groups, side) in [
        ("stem 3x3 s2 3->16 @320", 3, 16, 3, 2, 1, 320),
        ("1x1 16->16 @160", 16, 16, 1, 1, 1, 160),
        ("dw 3x3 16 @160", 16, 16, 3, 1, 16, 160),
        ("1x1 32->64 @80", 32, 64, 1, 1, 1, 80),
        ("dw 3x3 64 @80", 64, 64, 3, 1, 64, 80),
        ("dw 3x3 64 @40", 64, 64, 3, 1, 64, 40),
        ("head 3x3 64->1 @40", 64, 1, 3, 1, 1, 40),
    ] {
        let conv = Conv2dConfig::new([cin, cout], [k, k]).with_stride([s, s]).with_groups(groups)
            .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2)).init(&dev);
        let x = Tensor::<4>::random([n, cin, side, side], burn::tensor::Distribution::Default, &dev).require_grad();
        for r in 0..2 {
            let t = Instant::now();
            let y = conv.forward(x.clone());
            let _ = y.clone().sum().into_data();
            let f = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let g = y.sum().backward();
            drop(g);
            let b = t.elapsed().as_secs_f64();
            if r == 1 { println!("{name}: fwd {:.3}s bwd {:.3}s", f, b); }
        }
    }
}
