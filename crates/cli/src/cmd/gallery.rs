//! `maskid gallery list|show|remove|check|export|import|reembed --gallery FILE`: what the
//! gallery holds, moving it between files, and moving it to another model.

use std::process::ExitCode;

use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use maskid_core::{AlignedFace, Embedding};
use maskid_face::Parallelism;
use maskid_gallery::{escaped_name, Gallery, ModelRef, NewFace};
use serde_json::{json, Value};

use crate::common::{counted, embedder, existing_gallery, print_json, GalleryFile, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    file: GalleryFile,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every subject with its number of faces, and the gallery's model.
    List,
    /// One subject.
    Show { name: String },
    /// Remove a subject and its faces.
    Remove { name: String },
    /// SQLite's integrity check and the counts of subjects and faces.
    Check,
    /// Write every subject and face (embeddings, kept crops) to a JSON Lines file.
    Export {
        /// The file to write (atomically).
        output: PathBuf,
    },
    /// Add the subjects and faces of an exported file (same model; duplicates skipped).
    Import {
        /// A file written by `gallery export`.
        input: PathBuf,
    },
    /// Recompute every embedding with another model from the kept crops (`enroll
    /// --keep-crops`); all or nothing.
    Reembed {
        /// teacher, g2d or FILE.onnx.
        #[arg(long)]
        model: String,
    },
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let path = args.file.path()?;
    let mut gallery = match args.action {
        Action::Import { .. } => Gallery::open(path)?,
        _ => existing_gallery(path)?,
    };
    match args.action {
        Action::List => {
            let subjects = gallery.subjects()?;
            let model = gallery.model()?;
            if args.file.json {
                print_json(&serde_json::json!({ "model": model, "subjects": subjects }))?;
            } else {
                let shown =
                    model.map_or("none yet".into(), |m| format!("{} ({})", m.id, &m.sha256[..12.min(m.sha256.len())]));
                println!("{} subjects, model {shown}", subjects.len());
                for s in subjects {
                    println!("  {:<30} {}, since {}", escaped_name(&s.name), counted(s.faces, "face"), s.created);
                }
            }
        }
        Action::Show { name } => {
            let subject = gallery.subject(&name)?;
            // Face ids too: `DELETE /v1/faces/{id}` and `gallery` users need them.
            let faces = gallery.faces(&name)?;
            if args.file.json {
                let mut shown = serde_json::to_value(&subject)?;
                shown["face_list"] = serde_json::to_value(&faces)?;
                print_json(&shown)?;
            } else {
                println!(
                    "{}: {}, enrolled {}, metadata {}",
                    escaped_name(&subject.name),
                    counted(subject.faces, "face"),
                    subject.created,
                    subject.metadata
                );
                for f in &faces {
                    println!("  face {} ({}, score {:.3}, {})", f.id, f.model_id, f.score, f.created);
                }
            }
        }
        Action::Check => {
            let integrity = gallery.integrity_check()?;
            let (subjects, faces) = (gallery.subjects()?.len(), gallery.embeddings()?.len());
            if args.file.json {
                print_json(&serde_json::json!({ "integrity": integrity, "subjects": subjects, "faces": faces }))?;
            } else {
                println!("integrity {integrity}; {}, {}", counted(subjects, "subject"), counted(faces, "face"));
            }
            if integrity != "ok" {
                return Ok(ExitCode::from(1));
            }
        }
        Action::Export { output } => {
            let (subjects, faces) = export(&gallery, &output)?;
            println!("{}, {} written to {}", counted(subjects, "subject"), counted(faces, "face"), output.display());
        }
        Action::Import { input } => {
            let (added, skipped) = import(&mut gallery, &input)?;
            println!("{} added, {skipped} already there, from {}", counted(added, "face"), input.display());
        }
        Action::Reembed { model } => {
            let faces = reembed(global, &mut gallery, &model)?;
            println!("{} re-embedded with {model}", counted(faces, "face"));
        }
        Action::Remove { name } => {
            gallery.remove_subject(&name)?;
            if !args.file.json {
                println!("removed {}", escaped_name(&name));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

const FORMAT: &str = "maskid-gallery";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// JSON Lines: a header, one line per subject, one per face. Returns (subjects, faces).
fn export(gallery: &Gallery, output: &Path) -> anyhow::Result<(usize, usize)> {
    let subjects = gallery.subjects()?;
    let faces = gallery.export_faces()?;
    let mut lines = vec![json!({ "format": FORMAT, "version": 1, "model": gallery.model()? }).to_string()];
    for s in &subjects {
        lines.push(
            json!({ "kind": "subject", "name": s.name, "metadata": s.metadata, "created": s.created }).to_string(),
        );
    }
    for f in &faces {
        let embedding: Vec<u8> = f.embedding.iter().flat_map(|v| v.to_le_bytes()).collect();
        lines.push(
            json!({
                "kind": "face",
                "subject": f.subject,
                "embedding_base64": b64().encode(embedding),
                "model_id": f.model.id,
                "model_sha256": f.model.sha256,
                "source_sha256": f.source_sha256,
                "score": f.score,
                "created": f.created,
                "crop_base64": f.crop.as_ref().map(|c| b64().encode(c)),
            })
            .to_string(),
        );
    }
    maskid_assets::write_atomic(output, (lines.join("\n") + "\n").as_bytes())?;
    Ok((subjects.len(), faces.len()))
}

/// Adds an export's subjects and faces. Returns (faces added, faces already there).
fn import(gallery: &mut Gallery, input: &Path) -> anyhow::Result<(usize, usize)> {
    let text = std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let bad = |n: usize, what: &str| anyhow::anyhow!("{}:{}: {what}", input.display(), n + 1);
    let (_, header) = lines.next().ok_or_else(|| bad(0, "empty file"))?;
    let header: Value = serde_json::from_str(header).map_err(|e| bad(0, &format!("not JSON: {e}")))?;
    anyhow::ensure!(header["format"] == FORMAT, "{}: not a maskid gallery export", input.display());
    if let (Some(theirs), Some(ours)) = (header["model"]["sha256"].as_str(), gallery.model()?) {
        anyhow::ensure!(
            theirs == ours.sha256,
            "the export holds embeddings of {theirs}, this gallery of {} ({}); re-embed one of them first",
            ours.id,
            ours.sha256
        );
    }
    let (mut added, mut skipped) = (0, 0);
    for (n, line) in lines {
        let v: Value = serde_json::from_str(line).map_err(|e| bad(n, &format!("not JSON: {e}")))?;
        let text = |key: &str| v[key].as_str().map(str::to_string).ok_or_else(|| bad(n, &format!("no '{key}'")));
        match v["kind"].as_str() {
            Some("subject") => match gallery.add_subject(&text("name")?, &v["metadata"]) {
                Ok(_) | Err(maskid_gallery::Error::Duplicate(_)) => {}
                Err(e) => return Err(e.into()),
            },
            Some("face") => {
                let subject = gallery.subject(&text("subject")?)?.id;
                let embedding = b64().decode(text("embedding_base64")?).map_err(|e| bad(n, &e.to_string()))?;
                anyhow::ensure!(embedding.len() % 4 == 0 && !embedding.is_empty(), bad(n, "bad embedding"));
                let values = embedding.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                let crop = match v["crop_base64"].as_str() {
                    Some(c) => Some(b64().decode(c).map_err(|e| bad(n, &e.to_string()))?),
                    None => None,
                };
                let face = NewFace {
                    embedding: Embedding::from_unit(values),
                    model: ModelRef { id: text("model_id")?, sha256: text("model_sha256")? },
                    source_sha256: text("source_sha256")?,
                    score: v["score"].as_f64().unwrap_or(0.0) as f32,
                    crop,
                };
                match gallery.enroll(subject, &face) {
                    Ok(_) => added += 1,
                    Err(maskid_gallery::Error::Duplicate(_)) => skipped += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            _ => return Err(bad(n, "neither a subject nor a face")),
        }
    }
    Ok((added, skipped))
}

/// Re-embeds every face from its kept crop with `model`. Returns the number of faces.
fn reembed(global: &GlobalArgs, gallery: &mut Gallery, model: &str) -> anyhow::Result<usize> {
    let crops = gallery.crops()?;
    let missing = crops.iter().filter(|(_, c)| c.is_none()).count();
    anyhow::ensure!(
        missing == 0,
        "{missing} of {} faces have no kept crop (enrolled without --keep-crops): re-enrol them from their photos",
        crops.len()
    );
    let models = global.models(Parallelism::Throughput)?;
    let mut slot = None;
    let embedder = embedder(global, &models, model, &mut slot)?;
    let faces: Vec<AlignedFace> = crops
        .iter()
        .map(|(id, c)| {
            AlignedFace::from_rgb(c.clone().expect("checked above"))
                .ok_or_else(|| anyhow::anyhow!("face {id}: the kept crop is not 112x112 RGB"))
        })
        .collect::<anyhow::Result<_>>()?;
    let embeddings = embedder.embed(&faces)?;
    let target = ModelRef { id: embedder.model_id().into(), sha256: embedder.model_sha256().into() };
    let ids = crops.iter().map(|(id, _)| *id);
    gallery.reembed(&target, &ids.zip(embeddings).collect::<Vec<_>>())?;
    Ok(faces.len())
}
