//! `maskid detect PHOTO...`: faces with boxes, five landmarks and scores.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_core::{AlignedFace, Detection, FaceMask};
use maskid_face::{FacePolicy, Parallelism};
use maskid_gallery::escaped_name;
use serde::Serialize;

use crate::common::{exit_status, photo_error_text, photo_paths, print_json, warn, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Photos to scan (folders: every photo under them).
    #[arg(required = true)]
    photos: Vec<PathBuf>,
    /// Which faces to report: largest, center, all, require-one.
    #[arg(long, default_value = "all")]
    face: FacePolicy,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PhotoFaces {
    photo: String,
    width: u32,
    height: u32,
    faces: Vec<DetectedFace>,
    error: Option<String>,
}

/// A face found, and whether it wears a mask.
#[derive(Serialize)]
struct DetectedFace {
    #[serde(flatten)]
    detection: Detection,
    mask: FaceMask,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let models = global.models(Parallelism::Latency)?;
    let mut results = Vec::new();
    for photo in &photo_paths(&args.photos)? {
        let mut entry =
            PhotoFaces { photo: photo.display().to_string(), width: 0, height: 0, faces: vec![], error: None };
        match models.photo_faces(photo, args.face) {
            Ok((image, faces)) => {
                (entry.width, entry.height) = image.dimensions();
                let crops: Vec<AlignedFace> = faces.iter().map(|(_, crop)| crop.clone()).collect();
                let masks = models.mask.classify(&crops)?;
                entry.faces = faces
                    .into_iter()
                    .zip(masks)
                    .map(|((detection, _), mask)| DetectedFace { detection, mask })
                    .collect();
            }
            // No face is an answer, not a failure.
            Err(maskid_pipeline::Error::Face(maskid_face::Error::NoFace { .. })) => {
                (entry.width, entry.height) = image::image_dimensions(photo).unwrap_or_default();
            }
            Err(e) => entry.error = Some(photo_error_text(photo, &e.into())),
        }
        results.push(entry);
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    if args.json {
        print_json(&results)?;
    } else {
        for r in &results {
            match &r.error {
                Some(e) => warn(e),
                None => {
                    println!("{} ({}x{}): {} face(s)", escaped_name(&r.photo), r.width, r.height, r.faces.len());
                    for (i, DetectedFace { detection: f, mask }) in r.faces.iter().enumerate() {
                        let b = f.bbox;
                        let lm: Vec<String> =
                            f.landmarks.0.iter().map(|p| format!("({:.0},{:.0})", p[0], p[1])).collect();
                        println!(
                            "  #{i} score {:.3} box {:.0},{:.0} {:.0}x{:.0} landmarks {} {mask}",
                            f.score,
                            b.x,
                            b.y,
                            b.width,
                            b.height,
                            lm.join(" ")
                        );
                    }
                }
            }
        }
    }
    let faceless = results.iter().any(|r| r.error.is_none() && r.faces.is_empty());
    Ok(exit_status(failed > 0, faceless))
}
