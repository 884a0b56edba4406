//! Are two photos the same person? The `Recognizer` the CLI, the service and the Python
//! bindings use: detect, align, embed with one model, compare at its threshold.
//!
//! ```sh
//! cargo run --release -p maskid-pipeline --example verify -- a.jpg b.jpg [teacher|g2d|FILE.onnx]
//! ```

use maskid_assets::Assets;
use maskid_face::FacePolicy;
use maskid_pipeline::{ModelChoice, ModelsConfig, Recognizer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [a, b, rest @ ..] = args.as_slice() else { return Err("usage: verify PHOTO_A PHOTO_B [MODEL]".into()) };
    let model: ModelChoice = rest.first().map_or("teacher", String::as_str).parse()?;
    let recognizer = Recognizer::load(&Assets::from_env(), ModelsConfig::default(), model)?;
    let (a, b) = (recognizer.open_photo(a.as_ref())?, recognizer.open_photo(b.as_ref())?);
    let v = recognizer.verify(&a, &b, FacePolicy::Largest, None)?;
    let verdict = if v.same_person { "same person" } else { "different people" };
    println!("{verdict}: similarity {:.3}, threshold {:.3} ({})", v.similarity, v.threshold, recognizer.model().id);
    Ok(())
}
