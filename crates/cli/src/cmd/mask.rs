//! `maskid mask IN... -o DIR`: synthetic masks on the faces of photos (found by detection) or
//! on aligned crops, with their occlusion maps; `--contact-sheet` shows every style.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use image::RgbImage;
use maskid_core::{Landmarks5, OcclusionMap, ALIGNED_SIZE_PX, ALIGNMENT_TEMPLATE};
use maskid_face::{FacePolicy, Parallelism};
use maskid_mask::{image_seed, occlude, render_mask, Coverage, MaskSpec, MaskStyle, OcclusionMix, RgbImageMut};

use crate::common::{choices, counted, photo_files, run_batch, GlobalArgs};
use crate::label::{draw_text, text_width, LINE_PX};

#[derive(clap::Args)]
pub struct Args {
    /// Photos, or folders searched recursively for photos.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output folder (created); folder inputs keep their structure below it.
    #[arg(short, long, required_unless_present = "contact_sheet")]
    output: Option<PathBuf>,
    /// surgical, n95, cloth, gaiter, respirator, hand, or random.
    #[arg(long, default_value = "random", value_parser = choices::style())]
    style: String,
    /// Seed; each face's mask is a function of (its path, this seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// random, nose or below-nose.
    #[arg(long, default_value = "random")]
    coverage: Coverage,
    /// Also write the occlusion map of each photo (`NAME.map.png`, white = covered).
    #[arg(long)]
    also_map: bool,
    /// The inputs are aligned 112x112 crops: no detection.
    #[arg(long)]
    aligned: bool,
    /// Which faces of a photo get a mask: largest, center, all, require-one.
    #[arg(long, default_value = "all")]
    face: FacePolicy,
    /// Instead: write one PNG showing each input's aligned face clean, in every style, with
    /// strokes and blocks, and the occlusion maps.
    #[arg(long)]
    contact_sheet: Option<PathBuf>,
    /// With --contact-sheet: below the renders, rows of real masked faces from this folder
    /// (e.g. ../shared/datasets/masked-wild/photos), aligned the same way, for comparison. Such a
    /// sheet holds the photos' pixels: keep it wherever their terms allow.
    #[arg(long, value_name = "DIR", requires = "contact_sheet")]
    real: Option<PathBuf>,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

/// Photo -> the photo and the landmarks of the faces to mask.
type FacesOf<'a> = dyn Fn(&Path) -> anyhow::Result<(RgbImage, Vec<Landmarks5>)> + 'a;

/// Masks every face of one photo in place; the union of their occlusion maps.
fn mask_photo(
    image: &mut RgbImage,
    faces: &[Landmarks5],
    key: &str,
    forced: Option<MaskStyle>,
    args: &Args,
) -> anyhow::Result<OcclusionMap> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let mut union = OcclusionMap::empty(w, h);
    for (i, landmarks) in faces.iter().enumerate() {
        let spec = MaskSpec::from_seed(image_seed(&format!("{key}#{i}"), args.seed), forced, args.coverage);
        let map = render_mask(&mut RgbImageMut::new(w, h, image.as_mut())?, landmarks, &spec)?;
        union.coverage.iter_mut().zip(&map.coverage).for_each(|(u, c)| *u = u.max(*c));
    }
    Ok(union)
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let forced = MaskStyle::choice(&args.style).map_err(anyhow::Error::msg)?;
    let photos = photo_files(&args.inputs)?;
    let models = if args.aligned && args.real.is_none() { None } else { Some(global.models(Parallelism::Throughput)?) };
    let faces_of = |photo: &Path| -> anyhow::Result<(RgbImage, Vec<Landmarks5>)> {
        match &models {
            Some(models) if !args.aligned => {
                let (image, faces) = models.photo_faces(photo, args.face)?;
                Ok((image, faces.into_iter().map(|(d, _)| d.landmarks).collect()))
            }
            _ => {
                let image = maskid_face::load_image(photo, u64::MAX)?;
                let size = ALIGNED_SIZE_PX as u32;
                anyhow::ensure!(
                    image.dimensions() == (size, size),
                    "{}: --aligned wants 112x112 crops",
                    photo.display()
                );
                Ok((image, vec![Landmarks5(ALIGNMENT_TEMPLATE)]))
            }
        }
    };
    if let Some(sheet) = &args.contact_sheet {
        let real = match (&args.real, &models) {
            (Some(dir), Some(models)) => real_faces(models, dir, args.seed)?,
            _ => Vec::new(),
        };
        return contact_sheet(&photos, sheet, &args, &faces_of, &real);
    }
    let output = args.output.clone().expect("BUG: clap requires --output");
    let summary = run_batch(global, "mask", &photos, |photo, stem| {
        let (mut image, faces) = faces_of(photo)?;
        let map = mask_photo(&mut image, &faces, &stem.to_string_lossy(), forced, &args)?;
        let ext = photo.extension().and_then(|e| e.to_str()).unwrap_or("png").to_ascii_lowercase();
        let out = output.join(stem).with_extension(if ext == "jpeg" || ext == "jpg" { "jpg" } else { "png" });
        std::fs::create_dir_all(out.parent().unwrap_or(&output))?;
        image.save(&out).with_context(|| format!("writing {}", out.display()))?;
        if !args.also_map {
            return Ok(1);
        }
        let grey = image::GrayImage::from_raw(image.width(), image.height(), map.to_grey()).expect("BUG: sized");
        grey.save(output.join(stem).with_extension("map.png"))?;
        Ok(2)
    });
    summary.report(args.json, &output)
}

/// Columns of the contact sheet: the clean face, every mask style, strokes, blocks.
fn sheet_columns() -> Vec<&'static str> {
    std::iter::once("clean").chain(MaskStyle::ALL.map(MaskStyle::name)).chain(["strokes", "blocks"]).collect()
}

/// Aligned crops of real masked faces under `dir` for the contact sheet: the largest face of
/// photos spread evenly over the folder (the seed shifts the pick), as many as fill the
/// sheet's rows; photos without a face are passed over.
fn real_faces(models: &maskid_pipeline::Models, dir: &Path, seed: u64) -> anyhow::Result<Vec<RgbImage>> {
    let photos = photo_files(&[dir.to_path_buf()]).context("--real")?;
    let wanted = 3 * sheet_columns().len();
    let stride = (photos.len() / wanted).max(1);
    let s = ALIGNED_SIZE_PX as u32;
    let mut crops = Vec::with_capacity(wanted);
    for k in 0..photos.len() {
        let (photo, _) = &photos[(seed as usize % stride + k * stride + k / wanted) % photos.len()];
        if let Some(rgb) = models.largest_aligned_face(photo) {
            crops.push(RgbImage::from_raw(s, s, rgb).expect("BUG: sized"));
        }
        if crops.len() == wanted {
            break;
        }
    }
    Ok(crops)
}

/// Rows: one aligned face per input. Columns: clean, the six styles, strokes, blocks; a second
/// row per face shows the occlusion maps.
fn contact_sheet(
    photos: &[(PathBuf, PathBuf)],
    path: &Path,
    args: &Args,
    faces_of: &FacesOf<'_>,
    real: &[RgbImage],
) -> anyhow::Result<ExitCode> {
    let s = ALIGNED_SIZE_PX as u32;
    let names = sheet_columns();
    let columns = names.len() as u32;
    let rows: Vec<RgbImage> = photos
        .iter()
        .take(8)
        .map(|(photo, stem)| -> anyhow::Result<RgbImage> {
            let (image, faces) = faces_of(photo)?;
            let crop = if args.aligned {
                image
            } else {
                let landmarks = faces.first().context("no face")?;
                let face = maskid_face::align_face(&image, landmarks)?;
                RgbImage::from_raw(s, s, face.rgb().to_vec()).expect("BUG: sized")
            };
            let template = Landmarks5(ALIGNMENT_TEMPLATE);
            let mut row = RgbImage::new(s * columns, 2 * s);
            image::imageops::replace(&mut row, &crop, 0, 0);
            let seed = image_seed(&stem.to_string_lossy(), args.seed);
            let mixes = [
                OcclusionMix { mask: 0.0, strokes: 1.0, blocks: 0.0, clean: 0.0, real: 0.0, hold_out: None },
                OcclusionMix { mask: 0.0, strokes: 0.0, blocks: 1.0, clean: 0.0, real: 0.0, hold_out: None },
            ];
            for c in 1..columns {
                let mut face = crop.clone();
                let mut view = RgbImageMut::new(s as usize, s as usize, face.as_mut())?;
                let map = match MaskStyle::ALL.get(c as usize - 1) {
                    Some(style) => {
                        render_mask(&mut view, &template, &MaskSpec::from_seed(seed, Some(*style), args.coverage))?
                    }
                    None => occlude(&mut view, &template, seed, &mixes[c as usize - 1 - MaskStyle::ALL.len()], None)?.1,
                };
                image::imageops::replace(&mut row, &face, i64::from(c * s), 0);
                let grey = image::GrayImage::from_raw(s, s, map.to_grey()).expect("BUG: sized");
                image::imageops::replace(
                    &mut row,
                    &image::DynamicImage::ImageLuma8(grey).to_rgb8(),
                    i64::from(c * s),
                    i64::from(s),
                );
            }
            Ok(row)
        })
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!rows.is_empty(), "no faces for the contact sheet");
    // A label strip over the columns; real faces, if any, below the renders under their own.
    let strip = 2 * LINE_PX;
    let real_rows = real.len().div_ceil(columns as usize) as u32;
    let real_height = if real.is_empty() { 0 } else { strip + real_rows * s };
    let mut sheet = RgbImage::new(s * columns, strip + 2 * s * rows.len() as u32 + real_height);
    let white = image::Rgb([255, 255, 255]);
    for (c, name) in names.iter().enumerate() {
        let x = c as u32 * s + (s - text_width(name)) / 2;
        draw_text(&mut sheet, x, LINE_PX / 2, name, white);
    }
    for (i, row) in rows.iter().enumerate() {
        image::imageops::replace(&mut sheet, row, 0, i64::from(strip + 2 * s * i as u32));
    }
    if !real.is_empty() {
        let top = strip + 2 * s * rows.len() as u32;
        let folder = args.real.as_deref().map(Path::display).map(|d| d.to_string()).unwrap_or_default();
        draw_text(&mut sheet, 4, top + LINE_PX / 2, &format!("real masked faces: {folder}"), white);
        for (k, crop) in real.iter().enumerate() {
            let (col, row) = (k as u32 % columns, k as u32 / columns);
            image::imageops::replace(&mut sheet, crop, i64::from(col * s), i64::from(top + strip + row * s));
        }
    }
    sheet.save(path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "contact sheet {} ({}{}; columns: {})",
        path.display(),
        counted(rows.len(), "face"),
        if real.is_empty() { String::new() } else { format!(", {} real masked faces below", real.len()) },
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
