//! What maskid runs and where it comes from: every pinned file, its PyPI package and hash, and
//! whether a verified copy is already in the cache (this example never downloads).
//!
//! ```sh
//! cargo run -p maskid-assets --example pinned
//! ```

use maskid_assets::{Assets, ONNXRUNTIME_LIB, SAMPLE_PHOTOS, SFACE, YUNET};

fn main() {
    let assets = Assets::from_env();
    println!("cache: {}", assets.home().display());
    for file in [&YUNET, &SFACE, &ONNXRUNTIME_LIB].into_iter().chain(SAMPLE_PHOTOS.iter()) {
        let state = match assets.get_cached(file) {
            Some(path) => format!("cached at {}", path.display()),
            None => "not fetched yet (`maskid models fetch`)".into(),
        };
        println!(
            "{} from {}=={}, sha256 {}…: {state}",
            file.name,
            file.package.name,
            file.package.version,
            &file.sha256[..12]
        );
    }
}
