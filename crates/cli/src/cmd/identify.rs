//! `maskid identify --gallery FILE PHOTO...`: the enrolled people most like each photo's face,
//! with the similarity, the threshold and the decision.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::{escaped_name, Candidate, IndexKind, SubjectIndex};
use serde::Serialize;

use crate::common::{
    embed_photo, embedder, existing_gallery, exit_status, photo_error_text, photo_paths, print_json, threshold, warn,
    GlobalArgs,
};

#[derive(clap::Args)]
pub struct Args {
    /// The gallery file.
    #[arg(long)]
    gallery: PathBuf,
    /// Photos to identify (folders: every photo under them).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Which face of each photo: largest, center or require-one.
    #[arg(long, default_value = "largest", value_parser = FacePolicy::parse_one)]
    face: FacePolicy,
    /// How many people to list per photo.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Cosine similarity needed for a match (default: the model's, see README).
    #[arg(long)]
    threshold: Option<f32>,
    /// The model the gallery was enrolled with: teacher, g2d or FILE.onnx.
    #[arg(long, default_value = "teacher")]
    model: String,
    /// Gallery search: exact, sketch (approximate, for large galleries) or auto (sketch from
    /// 20,000 faces on).
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
    let threshold = threshold(&args.model, args.threshold)?;
    let gallery = existing_gallery(&args.gallery)?;
    let models = global.models(Parallelism::Latency)?;
    let mut slot = None;
    let embedder = embedder(global, &models, &args.model, &mut slot)?;
    if let Some(model) = gallery.model()? {
        // A probe of another model of the same embedding space (the G2D student on a teacher
        // gallery) is comparable with the enrolled faces.
        let space = maskid_assets::embedding_space(&model.sha256);
        anyhow::ensure!(
            model.sha256 == embedder.model_sha256()
                || space.is_some() && space == maskid_assets::embedding_space(embedder.model_sha256()),
            "the gallery holds embeddings of {} ({}), not of --model {} nor of its embedding space; pass its model",
            model.id,
            model.sha256,
            args.model
        );
    }
    let index = SubjectIndex::load(&gallery, args.index)?;
    let mut results = Vec::new();
    for photo in &photo_paths(&args.photos)? {
        let outcome = embed_photo(&models, embedder, photo, args.face).map(|mut f| f.remove(0).embedding);
        let candidates = match &outcome {
            Ok(probe) => index.candidates(probe.values(), args.top, threshold),
            Err(_) => Vec::new(),
        };
        results.push(Identified {
            photo: photo.display().to_string(),
            threshold,
            candidates,
            error: outcome.err().map(|e| photo_error_text(photo, &e)),
        });
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
