//! Every mask style drawn on an aligned face, with the share of the face each covers; the
//! same seed always draws the same mask.
//!
//! ```sh
//! cargo run --release -p maskid-mask --example styles -- [aligned-112x112.png]
//! ```
//! Without a crop it draws on a plain skin-coloured square.

use maskid_core::{AlignedFace, Landmarks5, ALIGNMENT_TEMPLATE};
use maskid_mask::{mask_face, Coverage, MaskSpec, MaskStyle};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rgb = match std::env::args().nth(1) {
        Some(path) => image::open(path)?.to_rgb8().into_raw(),
        None => [196u8, 152, 128].repeat(112 * 112),
    };
    let face = AlignedFace::from_rgb(rgb).ok_or("the crop must be 112x112")?;
    let landmarks = Landmarks5(ALIGNMENT_TEMPLATE);
    for style in MaskStyle::ALL {
        let spec = MaskSpec::from_seed(7, Some(style), Coverage::Random);
        let (masked, map) = mask_face(&face, &landmarks, &spec)?;
        let again = mask_face(&face, &landmarks, &spec)?.0;
        println!(
            "{:<10} covers {:>4.1}% of the crop; seeded: {}",
            style.name(),
            100.0 * map.covered_fraction(),
            if masked == again { "same mask twice" } else { "DIFFERENT" }
        );
    }
    Ok(())
}
