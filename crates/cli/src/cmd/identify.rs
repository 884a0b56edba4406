//! `maskid identify --gallery FILE PHOTO...`: the enrolled people most like each photo's face,
//! with the similarity, the threshold and the decision.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_core::{BBox, FaceMask, Landmarks5};
use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::{escaped_name, Candidate, Gallery, IndexKind, Location};
use maskid_pipeline::{Decision, ModelChoice, DEFAULT_FPIR};
use serde::Serialize;

use crate::common::{exit_status, gallery_model, photo_error_text, photo_paths, print_json, warn, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// The gallery: an SQLite file or a PostgreSQL database,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (docs/postgres.md).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Location,
    /// Photos to identify (folders: every photo under them).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Which face of each photo: largest, center, require-one, or all (every face of a group
    /// photo answered on its own).
    #[arg(long, default_value = "largest")]
    face: FacePolicy,
    /// How many people to list per photo.
    #[arg(long, default_value_t = 3)]
    top: usize,
    /// Share of people not enrolled to be taken for someone (false-positive identification
    /// rate): the threshold is the one that keeps it for this gallery's size, from the
    /// model's impostor-score calibration (docs/cli.md).
    #[arg(long, default_value_t = DEFAULT_FPIR, conflicts_with = "threshold")]
    fpir: f64,
    /// Cosine similarity needed for a match, instead of a target FPIR.
    #[arg(long)]
    threshold: Option<f32>,
    /// teacher, g2d, auto or FILE.onnx (default: the model the gallery's faces were enrolled with;
    /// any model of their embedding space searches them).
    #[arg(long)]
    model: Option<ModelChoice>,
    /// Gallery search: exact, sketch (approximate: sign sketches in a file, HNSW on
    /// PostgreSQL) or auto (approximate from 20,000 faces on).
    #[arg(long, default_value = "auto")]
    index: IndexKind,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One photo's answer: the chosen face's candidates, and with `--face all` every face's.
#[derive(Serialize)]
struct Identified {
    photo: String,
    /// The model that embedded the probe.
    model: String,
    threshold: f32,
    /// The share of strangers the threshold lets through for this gallery, when known.
    fpir: Option<f64>,
    gallery_faces: usize,
    candidates: Vec<Candidate>,
    faces: Vec<FaceIdentified>,
    error: Option<String>,
}

/// One face of a photo and the people most like it.
#[derive(Serialize)]
struct FaceIdentified {
    #[serde(rename = "box")]
    bbox: BBox,
    score: f32,
    landmarks: Landmarks5,
    mask: FaceMask,
    /// This face's threshold: by FPIR, its condition's (clean or masked).
    threshold: f32,
    candidates: Vec<Candidate>,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.top > 0, "--top must be at least 1");
    let gallery = Gallery::open_existing(&args.gallery)?.with_index(args.index);
    let model = gallery_model(&gallery, args.model.clone())?;
    let recognizer = global.recognizer(&model, Parallelism::Latency)?;
    let decision = args.threshold.map_or(Decision::Fpir(args.fpir), Decision::Threshold);
    gallery.check_model(&recognizer.model())?;
    // The gallery does not grow while it is searched, so one threshold serves every photo.
    let decided_by = recognizer.open_set_threshold(&gallery, decision)?;
    let mut results = Vec::new();
    for photo in &photo_paths(&args.photos)? {
        let outcome = recognizer
            .open_photo(photo)
            .and_then(|p| recognizer.identify_at(&gallery, &p, args.face, args.top, decided_by));
        let (faces, error) = match outcome {
            Ok(found) => (
                found
                    .into_iter()
                    .map(|f| {
                        let d = f.face.detection;
                        FaceIdentified {
                            bbox: d.bbox,
                            score: d.score,
                            landmarks: d.landmarks,
                            mask: f.face.mask,
                            threshold: f.decided_by.threshold,
                            candidates: f.candidates,
                        }
                    })
                    .collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(photo_error_text(photo, &e.into()))),
        };
        let candidates = faces.first().map(|f: &FaceIdentified| f.candidates.clone()).unwrap_or_default();
        results.push(Identified {
            photo: photo.display().to_string(),
            model: model.to_string(),
            // The first face's (its condition's, by FPIR), as `candidates` are its.
            threshold: faces.first().map_or(decided_by.threshold, |f| f.threshold),
            fpir: decided_by.fpir,
            gallery_faces: decided_by.gallery_faces,
            candidates,
            faces,
            error,
        });
    }
    if args.json {
        print_json(&results)?;
    } else {
        let rule = |face: &FaceIdentified| match decided_by.fpir {
            Some(fpir) => {
                format!("threshold {:.3}: FPIR {fpir:.0e} over {} faces", face.threshold, decided_by.gallery_faces)
            }
            None => format!("threshold {:.3}", face.threshold),
        };
        for r in &results {
            if let Some(e) = &r.error {
                warn(e);
                continue;
            }
            let photo = escaped_name(&r.photo);
            for (i, face) in r.faces.iter().enumerate() {
                // One line per face; a group photo's faces are told apart by their boxes.
                let shown = match r.faces.len() {
                    1 => photo.clone(),
                    _ => format!("{photo} face {} at ({:.0}, {:.0})", i + 1, face.bbox.x, face.bbox.y),
                };
                let Some(best) = face.candidates.first() else {
                    println!("{shown}: the gallery is empty");
                    continue;
                };
                let verdict =
                    if best.matched { format!("is {}", escaped_name(&best.name)) } else { "matches nobody".into() };
                println!("{shown}: {verdict} (similarity {:.3}, {}, {})", best.similarity, rule(face), face.mask);
                for c in &face.candidates {
                    let mark = if c.matched { "  match" } else { "" };
                    println!("    {:<30} {:.3}{mark}", escaped_name(&c.name), c.similarity);
                }
            }
        }
    }
    let failed = results.iter().any(|r| r.error.is_some());
    // A negative answer: a photo none of whose faces matched anyone.
    let matched = |r: &Identified| r.faces.iter().any(|f| f.candidates.first().is_some_and(|c| c.matched));
    let unmatched = results.iter().any(|r| r.error.is_none() && !matched(r));
    Ok(exit_status(failed, unmatched))
}
