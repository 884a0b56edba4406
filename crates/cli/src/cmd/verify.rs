//! `maskid verify PHOTO_A PHOTO_B`: are the two faces (the largest of each photo, unless
//! `--face` says otherwise) the same person?

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_core::FaceMask;
use maskid_face::{FacePolicy, Parallelism};
use serde::Serialize;

use maskid_pipeline::ModelChoice;

use crate::common::{exit_status, photo_error_text, print_json, warn, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// First photo.
    a: PathBuf,
    /// Second photo.
    b: PathBuf,
    /// Cosine similarity needed for "same person" (default: the model's, see docs/cli.md).
    #[arg(long)]
    threshold: Option<f32>,
    /// teacher (SFace), g2d (the shipped G2D model), auto (G2D for masked faces, the teacher for
    /// unmasked ones) or an exported backbone (FILE.onnx).
    #[arg(long, default_value = "teacher")]
    model: ModelChoice,
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
    /// Whether each face wears a mask: the first photo's, the second's.
    masks: [FaceMask; 2],
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let recognizer = global.recognizer(&args.model, Parallelism::Latency)?;
    recognizer.threshold(args.threshold)?;
    // A photo that cannot be used is a failed input (exit 3), not an error of the command.
    let embed = |photo| recognizer.open_photo(photo).and_then(|p| recognizer.face(&p, args.face));
    let (a, b) = match (embed(&args.a), embed(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (a, b) => {
            for (photo, e) in [(&args.a, a.err()), (&args.b, b.err())] {
                if let Some(e) = e {
                    warn(&photo_error_text(photo, &e.into()));
                }
            }
            return Ok(exit_status(true, false));
        }
    };
    let decision = recognizer.compare(&a.embedding, &b.embedding, args.threshold)?;
    let (similarity, threshold) = (decision.similarity, decision.threshold);
    let verdict = Verdict {
        similarity,
        threshold,
        same_person: decision.same_person,
        model: recognizer.model().id,
        masks: [a.mask, b.mask],
    };
    if args.json {
        print_json(&verdict)?;
    } else {
        let word = if verdict.same_person { "same person" } else { "different people" };
        println!("{word}: similarity {similarity:.3} (threshold {threshold:.3}, model {})", verdict.model);
        println!("  first face: {}; second face: {}", a.mask, b.mask);
    }
    Ok(exit_status(false, !verdict.same_person))
}
