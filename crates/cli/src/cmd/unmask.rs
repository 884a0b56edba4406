//! `maskid unmask PHOTO... -o DIR [--run RUN]`: what the inpainting decoder sees behind the
//! mask, with the shipped inpainter or a run's. Each face is written as one PNG: the aligned
//! input, then the decoder's reconstruction (and, with `--add-mask`, the clean face first, so
//! the three can be compared).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use image::RgbImage;
use maskid_assets::G2D_INPAINTER;
use maskid_core::{AlignedFace, ALIGNED_SIZE_PX};
use maskid_face::{FacePolicy, FaceRestorer, Parallelism};
use maskid_mask::{image_seed, mask_face, Coverage, MaskSpec, MaskStyle};
use maskid_pipeline::landmarks_in_crop;

use crate::common::{photo_files, run_batch, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Photos, or folders searched recursively for photos.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created).
    #[arg(short, long)]
    output: PathBuf,
    /// Run folder with a finished inpaint or encoder stage (default: the shipped inpainter,
    /// `models/g2d-small-unmask.onnx`).
    #[arg(long)]
    run: Option<PathBuf>,
    /// Put a synthetic mask on each face first: surgical, n95, cloth, gaiter, respirator, hand
    /// or random (for photos of unmasked faces).
    #[arg(long)]
    add_mask: Option<String>,
    /// Seed of the added masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Which faces of a photo: largest, center, all, require-one.
    #[arg(long, default_value = "largest")]
    face: FacePolicy,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = photo_files(&args.inputs)?;
    let style = args.add_mask.as_deref().map(MaskStyle::choice).transpose().map_err(anyhow::Error::msg)?;
    let models = global.models(Parallelism::Throughput)?;
    // (After the models: they load ONNX Runtime, which the shipped inpainter runs on.)
    let restorer = match &args.run {
        Some(run) => {
            let device = maskid_g2d::Device::flex();
            Restorer::Trained(Box::new(maskid_g2d::load_trained_inpainter(run, &device)?), device)
        }
        None => {
            let model = G2D_INPAINTER.file(global.assets().home())?;
            Restorer::Shipped(FaceRestorer::new(&model, Parallelism::Throughput).context("loading the G2D inpainter")?)
        }
    };
    std::fs::create_dir_all(&args.output).with_context(|| format!("creating {}", args.output.display()))?;
    let summary = run_batch(global, "unmask", &photos, |photo, stem| {
        let (_, faces) = models.photo_faces(photo, args.face)?;
        let many = faces.len() > 1;
        for (i, (detection, face)) in faces.iter().enumerate() {
            let mut panels = vec![face.clone()];
            if let Some(style) = args.add_mask.as_ref().map(|_| style.flatten()) {
                let spec = MaskSpec::from_seed(image_seed(&stem.to_string_lossy(), args.seed), style, Coverage::Random);
                panels.push(mask_face(face, &landmarks_in_crop(&detection.landmarks), &spec)?.0);
            }
            let input = panels.last().expect("BUG: one panel").clone();
            panels.extend(restorer.restore(&[input])?);
            let name = if many { format!("{}_{i}.png", stem.display()) } else { format!("{}.png", stem.display()) };
            let path = args.output.join(name);
            std::fs::create_dir_all(path.parent().unwrap_or(&args.output))?;
            side_by_side(&panels).save(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(faces.len())
    });
    summary.report(args.json, &args.output)
}

/// The inpainter: a run's (burn) or the shipped export (ONNX Runtime).
enum Restorer {
    Trained(Box<maskid_g2d::model::Inpainter>, maskid_g2d::Device),
    Shipped(FaceRestorer),
}

impl Restorer {
    fn restore(&self, faces: &[AlignedFace]) -> anyhow::Result<Vec<AlignedFace>> {
        Ok(match self {
            Restorer::Trained(inpainter, device) => maskid_g2d::stage::restore_faces(inpainter, faces, device)?,
            Restorer::Shipped(restorer) => restorer.restore(faces)?,
        })
    }
}

/// Faces in a row, 4 px apart on white.
fn side_by_side(faces: &[AlignedFace]) -> RgbImage {
    let size = ALIGNED_SIZE_PX as u32;
    let gap = 4;
    let mut sheet = RgbImage::from_pixel(faces.len() as u32 * (size + gap) - gap, size, image::Rgb([255, 255, 255]));
    for (k, face) in faces.iter().enumerate() {
        let tile = RgbImage::from_raw(size, size, face.rgb().to_vec()).expect("BUG: 112x112 RGB");
        image::imageops::replace(&mut sheet, &tile, i64::from(k as u32 * (size + gap)), 0);
    }
    sheet
}
