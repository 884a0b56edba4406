//! `maskid identify --gallery FILE PHOTO...`: the enrolled people most like each photo's face,
//! with the similarity, the threshold and the decision.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::{escaped_name, Candidate, Gallery, IndexKind, Location};
use maskid_pipeline::ModelChoice;
use serde::Serialize;

use crate::common::{exit_status, photo_error_text, photo_paths, print_json, warn, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// The gallery: an SQLite file or a PostgreSQL database,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (docs/postgres.md).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Location,
    /// Photos to identify (folders: every photo under them).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Which face of each photo: largest, center or require-one.
    #[arg(long, default_value = "largest", value_parser = FacePolicy::parse_one)]
    face: FacePolicy,
    /// How many people to list per photo.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Cosine similarity needed for a match (default: the model's, see docs/cli.md).
    #[arg(long)]
    threshold: Option<f32>,
    /// The model the gallery was enrolled with: teacher, g2d or FILE.onnx.
    #[arg(long, default_value = "teacher")]
    model: ModelChoice,
    /// Gallery search: exact, sketch (approximate: sign sketches in a file, HNSW on
    /// PostgreSQL) or auto (approximate from 20,000 faces on).
    #[arg(long, default_value = "auto")]
    index: IndexKind,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Identified {
    photo: String,
    threshold: f32,
    candidates: Vec<Candidate>,
    error: Option<String>,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.top > 0, "--top must be at least 1");
    let gallery = Gallery::open_existing(&args.gallery)?.with_index(args.index);
    let recognizer = global.recognizer(&args.model, Parallelism::Latency)?;
    let threshold = recognizer.threshold(args.threshold)?;
    gallery.check_model(&recognizer.model())?;
    let mut results = Vec::new();
    for photo in &photo_paths(&args.photos)? {
        let outcome = recognizer
            .open_photo(photo)
            .and_then(|p| recognizer.identify(&gallery, &p, args.face, args.top, Some(threshold)));
        let (candidates, error) = match outcome {
            Ok(found) => (found.candidates, None),
            Err(e) => (Vec::new(), Some(photo_error_text(photo, &e.into()))),
        };
        results.push(Identified { photo: photo.display().to_string(), threshold, candidates, error });
    }
    if args.json {
        print_json(&results)?;
    } else {
        for r in &results {
            match (&r.error, r.candidates.first()) {
                (Some(e), _) => warn(e),
                (None, None) => println!("{}: the gallery is empty", r.photo),
                (None, Some(best)) => {
                    let verdict =
                        if best.matched { format!("is {}", escaped_name(&best.name)) } else { "matches nobody".into() };
                    println!(
                        "{}: {verdict} (similarity {:.3}, threshold {:.3})",
                        r.photo, best.similarity, r.threshold
                    );
                    for c in &r.candidates {
                        println!(
                            "    {:<30} {:.3}{}",
                            escaped_name(&c.name),
                            c.similarity,
                            if c.matched { "  match" } else { "" }
                        );
                    }
                }
            }
        }
    }
    let failed = results.iter().any(|r| r.error.is_some());
    let unmatched = results.iter().any(|r| r.error.is_none() && !r.candidates.first().is_some_and(|c| c.matched));
    Ok(exit_status(failed, unmatched))
}
