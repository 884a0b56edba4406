//! A gallery in a temporary file: enrol three people's (made-up, 3-d) embeddings, identify a
//! probe, remove someone, identify again. The search index follows every change by itself.
//!
//! ```sh
//! cargo run -p maskid-gallery --example identify
//! ```

use maskid_core::Embedding;
use maskid_gallery::{Gallery, ModelRef, NewFace};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let gallery = Gallery::open(dir.path().join("people.db"))?;
    let model = ModelRef::new("example.onnx", "0".repeat(64), None);
    for (name, values) in [("ann", [1.0, 0.1, 0.0]), ("bob", [0.0, 1.0, 0.2]), ("cyd", [0.1, 0.0, 1.0])] {
        let face = NewFace {
            embedding: Embedding::normalized(values.to_vec()),
            model: model.clone(),
            source_sha256: format!("photo of {name}"),
            score: 0.9,
            crop: None,
            mask: None,
        };
        let enrolled = gallery.enroll(name, &serde_json::json!({ "example": true }), &face)?;
        println!("enrolled {name} as face {}", enrolled.face_id);
    }
    let probe = Embedding::normalized(vec![0.9, 0.3, 0.0]);
    for c in gallery.identify(&probe, &model, 2, 0.8)? {
        println!("  {:<4} similarity {:.3}{}", c.name, c.similarity, if c.matched { "  match" } else { "" });
    }
    gallery.remove_subject("ann")?;
    let best = &gallery.identify(&probe, &model, 1, 0.8)?[0];
    println!("without ann: best {} ({:.3}, matched: {})", best.name, best.similarity, best.matched);
    Ok(())
}
