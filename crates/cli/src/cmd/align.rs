//! `maskid align IN... -o DIR`: detected faces warped onto the 112x112 template, as PNG.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use maskid_core::ALIGNED_SIZE_PX;
use maskid_eval::is_image_file;
use maskid_face::{FacePolicy, Parallelism};

use crate::common::{run_batch, GlobalArgs};

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

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = collect(&args.inputs)?;
    anyhow::ensure!(!photos.is_empty(), "no photos found in the inputs");
    let models = global.models(Parallelism::Throughput)?;
    let summary = run_batch(global, "align", &photos, |photo, stem| {
        let (_, faces) = models.photo_faces(photo, args.face)?;
        let many = faces.len() > 1;
        for (i, (_, face)) in faces.iter().enumerate() {
            let name = if many { format!("{}_{i}.png", stem.display()) } else { format!("{}.png", stem.display()) };
            let path = args.output.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(&args.output))?;
            let size = ALIGNED_SIZE_PX as u32;
            image::save_buffer(&path, face.rgb(), size, size, image::ExtendedColorType::Rgb8)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(faces.len())
    });
    summary.report(args.json, &args.output)
}
