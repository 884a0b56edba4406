//! `maskid enroll --gallery FILE --name NAME PHOTO...`: adds a person's faces to the gallery
//! (the subject is created on first use); `--people DIR` adds everyone of a folder with one
//! subfolder per person. Each photo must show one face.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::{escaped_name, Gallery, Location};
use maskid_pipeline::{EnrolOptions, ModelChoice};
use serde::Serialize;

use crate::common::{exit_status, photo_error_text, photo_paths, print_json, warn, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// The gallery: an SQLite file (created if missing) or a PostgreSQL database,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (docs/postgres.md).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Location,
    /// The person's name (unique in the gallery).
    #[arg(long, required_unless_present = "people", conflicts_with = "people")]
    name: Option<String>,
    /// A folder with one subfolder per person, named as the person, holding their photos:
    /// everyone is enrolled (instead of --name and photos).
    #[arg(long, value_name = "DIR")]
    people: Option<PathBuf>,
    /// JSON metadata for a new subject.
    #[arg(long, default_value = "{}")]
    metadata: String,
    /// Photos of the person (folders: every photo under them), one face each.
    #[arg(required_unless_present = "people", conflicts_with = "people")]
    photos: Vec<PathBuf>,
    /// Which face of each photo: require-one (a photo with several faces is refused),
    /// largest or center.
    #[arg(long, default_value = "require-one", value_parser = FacePolicy::parse_one)]
    face: FacePolicy,
    /// teacher (SFace), g2d (the shipped G2D model), auto (G2D for masked faces, the teacher for
    /// unmasked ones) or an exported backbone (FILE.onnx); a
    /// gallery holds the embeddings of one model, or of models of one embedding space
    /// (teacher and g2d).
    #[arg(long, default_value = "teacher")]
    model: ModelChoice,
    /// Keep each face's aligned crop in the gallery (biometric data; off by default): lets
    /// `maskid gallery reembed` move the gallery to another model without the photos.
    #[arg(long)]
    keep_crops: bool,
    /// Enrol faces that would make poor references all the same (turned past 55 degrees,
    /// tilted past 45, blurred, eyes under 12 px apart; docs/cli.md, Enrolment quality).
    #[arg(long)]
    allow_poor: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct Enrolled {
    name: String,
    photo: String,
    face_id: Option<i64>,
    /// The face's quality as a reference (pose, sharpness, size), when it was found.
    quality: Option<maskid_face::FaceQuality>,
    /// Whether the face wears a mask, when it was found.
    mask: Option<maskid_core::FaceMask>,
    /// Its shortfalls: warnings, and with --allow-poor the ones that would have refused it.
    notes: Vec<String>,
    error: Option<String>,
}

/// (person, photo) pairs to enrol: `--name` with its photos, or each subfolder of `--people`.
fn to_enrol(args: &Args) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let Some(root) = &args.people else {
        let name = args.name.as_deref().expect("clap: --name or --people");
        // Refuse a bad name before any model work.
        let name = maskid_gallery::subject_name(name).context("--name")?;
        return Ok(photo_paths(&args.photos)?.into_iter().map(|p| (name.clone(), p)).collect());
    };
    // One folder per person, as every folder data set of maskid (`demo --data`, `train --data`).
    let photos = maskid_eval::folder_dataset(root).with_context(|| format!("--people {}", root.display()))?;
    let mut pairs = Vec::with_capacity(photos.len());
    for photo in photos {
        let name = maskid_gallery::subject_name(&photo.identity)
            .with_context(|| format!("folder {}", root.join(&photo.identity).display()))?;
        pairs.push((name, root.join(photo.path)));
    }
    Ok(pairs)
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let metadata: serde_json::Value = serde_json::from_str(&args.metadata).context("--metadata is not JSON")?;
    let pairs = to_enrol(&args)?;
    let gallery = Gallery::open(&args.gallery)?;
    let recognizer = global.recognizer(&args.model, Parallelism::Latency)?;
    let progress = global.progress();
    let mut results = Vec::new();
    let options = EnrolOptions { keep_crop: args.keep_crops, allow_poor: args.allow_poor };
    for (i, (name, photo)) in pairs.iter().enumerate() {
        let outcome = (|| -> anyhow::Result<maskid_pipeline::Enrolled> {
            let photo = recognizer.open_photo(photo)?;
            Ok(recognizer.enroll(&gallery, name, &metadata, &photo, args.face, options)?)
        })();
        match &outcome {
            Err(e) => warn(&photo_error_text(photo, e)),
            Ok(enrolled) => {
                for note in &enrolled.notes {
                    let shown = escaped_name(&photo.display().to_string());
                    warn(&format!(
                        "{shown}: {} reference: {}",
                        if note.poor { "a poor" } else { "a weak" },
                        note.problem
                    ));
                }
            }
        }
        progress(maskid_pipeline::Progress { stage: "enrol", done: i + 1, total: pairs.len() });
        let (face_id, quality, mask, notes) = match &outcome {
            Ok(e) => (
                Some(e.enrolment.face_id),
                Some(e.quality),
                Some(e.face.mask),
                e.notes.iter().map(|n| n.problem.clone()).collect(),
            ),
            Err(_) => (None, None, None, Vec::new()),
        };
        results.push(Enrolled {
            name: name.clone(),
            photo: photo.display().to_string(),
            face_id,
            quality,
            mask,
            notes,
            error: outcome.err().map(|e| photo_error_text(photo, &e)),
        });
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        print_json(&results)?;
    } else {
        let people: std::collections::BTreeSet<&str> = results.iter().map(|r| r.name.as_str()).collect();
        let who = match people.len() {
            1 => escaped_name(people.first().expect("one")),
            n => format!("{n} people"),
        };
        println!("{who}: {} of {} photos enrolled in {}", results.len() - failed, results.len(), args.gallery);
    }
    Ok(exit_status(failed > 0, false))
}
