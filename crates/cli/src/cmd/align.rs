//! `maskid align IN... -o DIR`: detected faces warped onto the 112x112 template, as PNG.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use maskid_core::ALIGNED_SIZE_PX;
use maskid_face::{FacePolicy, Parallelism};

use crate::common::{photo_files, run_batch, GlobalArgs};

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

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = photo_files(&args.inputs)?;
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
