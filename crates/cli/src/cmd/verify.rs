//! `maskid verify PHOTO_A PHOTO_B`: are the two faces (the largest of each photo, unless
//! `--face` says otherwise) the same person?

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::{FacePolicy, Parallelism};
use serde::Serialize;

use crate::common::{embed_photo, embedder, exit_status, photo_error_text, print_json, threshold, warn, GlobalArgs};

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
    /// Which face of each photo: largest, center or require-one.
    #[arg(long, default_value = "largest", value_parser = FacePolicy::parse_one)]
    face: FacePolicy,
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
    // A photo that cannot be used is a failed input (exit 3), not an error of the command.
    let embed = |photo| embed_photo(&models, embedder, photo, args.face).map(|mut f| f.remove(0).embedding);
    let (a, b) = match (embed(&args.a), embed(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for (photo, e) in [(&args.a, a.err()), (&args.b, b.err())] {
                if let Some(e) = e {
                    warn(&photo_error_text(photo, &e));
                }
            }
            return Ok(exit_status(true, false));
        }
    };
    let similarity = a.cosine(&b);
    let verdict =
        Verdict { similarity, threshold, same_person: similarity >= threshold, model: embedder.model_id().into() };
    if args.json {
        print_json(&verdict)?;
    } else {
        let word = if verdict.same_person { "same person" } else { "different people" };
        println!("{word}: similarity {similarity:.3} (threshold {threshold:.3}, model {})", verdict.model);
    }
    Ok(exit_status(false, !verdict.same_person))
}
