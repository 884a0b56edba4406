//! Helpers of the end-to-end tests: run the binary, read its JSON, find LFW and the samples.
#![allow(dead_code)] // each test file uses its own subset

pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub fn maskid(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_maskid")).args(args).arg("--quiet").output().expect("run maskid")
}

pub fn stdout_json(out: &Output) -> Value {
    assert!(out.status.success(), "maskid failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// LFW at `../shared/datasets/lfw` from the project root (or `$MASKID_LFW`). The tests that
/// read it are the data tier, `#[ignore]`d: `cargo test` lists them as ignored, and
/// `--include-ignored` (scripts/test, when the data is there; CI always) runs them, failing
/// loudly if the data is missing.
pub fn lfw(test: &str) -> PathBuf {
    shared_set(test, "lfw", "MASKID_LFW", "images_deepfunneled")
}

/// rmfrd-dev (real masked faces of 11 people, LFW layout) at `../shared/datasets/rmfrd-dev`
/// (or `$MASKID_RMFRD`), in the data tier as [`lfw`] is.
pub fn rmfrd(test: &str) -> PathBuf {
    shared_set(test, "rmfrd-dev", "MASKID_RMFRD", "images_deepfunneled")
}

/// masked-wild (real masked photos of people in no other set) at
/// `../shared/datasets/masked-wild` (or `$MASKID_MASKED_WILD`), in the data tier as [`lfw`] is.
pub fn masked_wild(test: &str) -> PathBuf {
    shared_set(test, "masked-wild", "MASKID_MASKED_WILD", "photos")
}

fn shared_set(test: &str, name: &str, variable: &str, inside: &str) -> PathBuf {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets").join(name));
    assert!(
        path.join(inside).is_dir(),
        "{test} needs {name} at {} (set {variable}), or leave out --include-ignored to skip the data tier",
        path.display()
    );
    path
}

/// Paths of the six sample photos, fetched by `maskid models fetch`.
pub fn sample(name: &str) -> PathBuf {
    let rows = stdout_json(&maskid(&["models", "fetch", "--json"]));
    let row = rows.as_array().unwrap().iter().find(|r| r["file"] == name).expect("sample listed");
    PathBuf::from(row["path"].as_str().unwrap())
}

/// A large photo of noise: slow to decode and detect, so requests are still at work when
/// their clients hang up.
pub fn noise_jpeg(side: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let image = image::RgbImage::from_fn(side, side, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
    out.into_inner()
}
