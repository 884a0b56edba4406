//! `maskid align IN... -o DIR`: detected faces warped onto the 112x112 template, as PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

use maskid_core::ALIGNED_SIZE_PX;
use maskid_eval::is_image_file;
use maskid_face::{FacePolicy, Parallelism};
use maskid_pipeline::Progress;
use rayon::prelude::*;

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Photos, or folders searched recursively for photos.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created); folder inputs keep their structure below it.
    #[arg(short, long)]
    output: PathBuf,
    /// Which faces to align: largest, center, all, require-one.
    #[arg(long, default_value = "center")]
    face: FacePolicy,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// (photo, output stem relative to the output folder).
pub fn collect(inputs: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if is_image_file(&path) {
                let rel = path.strip_prefix(base).expect("BUG: walked under base").with_extension("");
                out.push((path, rel));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, input, &mut out)?;
        } else {
            let stem = input.file_stem().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("face"));
            out.push((input.clone(), stem));
        }
    }
    Ok(out)
}

#[derive(serde::Serialize, Default)]
struct Summary {
    photos: usize,
    crops_written: usize,
    failed: usize,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = collect(&args.inputs)?;
    anyhow::ensure!(!photos.is_empty(), "no photos found in the inputs");
    let models = global.models(Parallelism::Throughput)?;
    let progress = global.progress();
    let (written, failed, done) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));
    photos.par_iter().for_each(|(photo, stem)| {
        match models.photo_faces(photo, args.face) {
            Ok((_, faces)) => {
                let many = faces.len() > 1;
                for (i, (_, face)) in faces.iter().enumerate() {
                    let name =
                        if many { format!("{}_{i}.png", stem.display()) } else { format!("{}.png", stem.display()) };
                    let path = args.output.join(name);
                    let saved =
                        path.parent().map_or(Ok(()), std::fs::create_dir_all).map_err(|e| e.to_string()).and_then(
                            |_| {
                                let size = ALIGNED_SIZE_PX as u32;
                                image::save_buffer(&path, face.rgb(), size, size, image::ExtendedColorType::Rgb8)
                                    .map_err(|e| e.to_string())
                            },
                        );
                    match saved {
                        Ok(()) => drop(written.fetch_add(1, Ordering::Relaxed)),
                        Err(e) => {
                            eprintln!("maskid: {}: {e}", path.display());
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Err(e) => {
                eprintln!("maskid: {e}");
                failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        let n = done.fetch_add(1, Ordering::Relaxed) + 1;
        progress(Progress { stage: "align", done: n, total: photos.len() });
    });
    let summary = Summary { photos: photos.len(), crops_written: written.into_inner(), failed: failed.into_inner() };
    if args.json {
        print_json(&summary)?;
    } else {
        println!(
            "{} photos, {} crops written to {}, {} failed",
            summary.photos,
            summary.crops_written,
            args.output.display(),
            summary.failed
        );
    }
    Ok(if summary.failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
