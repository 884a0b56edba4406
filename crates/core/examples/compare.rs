//! The shared types in a few lines: embeddings compared by cosine, face boxes by overlap, and
//! the similarity transform that alignment is built on.
//!
//! ```sh
//! cargo run -p maskid-core --example compare
//! ```

use maskid_core::{similarity_transform, BBox, Embedding, ALIGNMENT_TEMPLATE};

fn main() -> Result<(), maskid_core::LengthMismatch> {
    let a = Embedding::normalized(vec![3.0, 4.0, 0.0]);
    let b = Embedding::normalized(vec![4.0, 3.0, 0.0]);
    println!("unit length: {:?}; cosine of a and b: {:.3}", a.values(), a.cosine(&b)?);

    let detected = BBox { x: 10.0, y: 10.0, width: 100.0, height: 120.0 };
    let truth = BBox { x: 20.0, y: 15.0, width: 100.0, height: 120.0 };
    println!("box overlap (IoU): {:.3}", detected.iou(&truth));

    // Five landmarks twice as far apart as the template and shifted: alignment maps them back.
    let seen = ALIGNMENT_TEMPLATE.map(|[x, y]| [2.0 * x + 30.0, 2.0 * y + 40.0]);
    let to_template = similarity_transform(&seen, &ALIGNMENT_TEMPLATE).expect("five distinct points");
    let nose = to_template.apply([f64::from(seen[2][0]), f64::from(seen[2][1])]);
    println!("nose tip {:?} -> {:.2?} (template {:?})", seen[2], nose, ALIGNMENT_TEMPLATE[2]);
    Ok(())
}
