//! `maskid verify PHOTO_A PHOTO_B`: are the two largest faces the same person?

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::{FacePolicy, Parallelism};
use serde::Serialize;

use crate::common::{embed_photo, embedder, print_json, threshold, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// First photo.
    a: PathBuf,
    /// Second photo.
    b: PathBuf,
    /// Cosine similarity needed for "same person" (default: the model's, see README).
    #[arg(long)]
    threshold: Option<f32>,
    /// teacher (SFace), g2d (the shipped G2D model) or an exported backbone (FILE.onnx).
    #[arg(long, default_value = "teacher")]
    model: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Verdict {
    similarity: f32,
    threshold: f32,
    same_person: bool,
    model: String,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let threshold = threshold(&args.model, args.threshold)?;
    let models = global.models(Parallelism::Latency)?;
    let mut slot = None;
    let embedder = embedder(global, &models, &args.model, &mut slot)?;
    let a = embed_photo(&models, embedder, &args.a, FacePolicy::Largest)?.remove(0).embedding;
    let b = embed_photo(&models, embedder, &args.b, FacePolicy::Largest)?.remove(0).embedding;
    let similarity = a.cosine(&b);
    let verdict =
        Verdict { similarity, threshold, same_person: similarity >= threshold, model: embedder.model_id().into() };
    if args.json {
        print_json(&verdict)?;
    } else {
        let word = if verdict.same_person { "same person" } else { "different people" };
        println!("{word}: similarity {similarity:.3} (threshold {threshold:.3}, model {})", verdict.model);
    }
    Ok(if verdict.same_person { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
