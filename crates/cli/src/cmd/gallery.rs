//! `maskid gallery list|show|remove|check|export|import|reembed --gallery FILE`: what the
//! gallery holds, moving it between files, and moving it to another model.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_face::Parallelism;
use maskid_gallery::{escaped_name, Gallery};
use maskid_pipeline::ModelChoice;

use crate::common::{counted, print_json, GalleryFile, GlobalArgs};

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
        /// teacher, g2d, auto or FILE.onnx.
        #[arg(long)]
        model: ModelChoice,
    },
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let location = args.file.location()?;
    let gallery = match args.action {
        Action::Import { .. } => Gallery::open(location)?,
        _ => Gallery::open_existing(location)?,
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
                    let mask = f.mask.map_or("mask not recorded", |m| m.name());
                    println!("  face {} ({}, score {:.3}, mask {mask}, {})", f.id, f.model_id, f.score, f.created);
                }
            }
        }
        Action::Check => {
            let check = gallery.check()?;
            if args.file.json {
                print_json(&check)?;
            } else {
                let (subjects, faces) = (counted(check.subjects, "subject"), counted(check.faces, "face"));
                println!("integrity {}; {subjects}, {faces}", check.integrity);
            }
            if check.integrity != "ok" {
                return Ok(ExitCode::from(1));
            }
        }
        Action::Export { output } => {
            let (subjects, faces) = gallery.export(&output)?;
            println!("{}, {} written to {}", counted(subjects, "subject"), counted(faces, "face"), output.display());
        }
        Action::Import { input } => {
            let (added, skipped) = gallery.import(&input)?;
            println!("{} added, {skipped} already there, from {}", counted(added, "face"), input.display());
        }
        Action::Reembed { model } => {
            // Fail before loading a model when crops are missing.
            let faces = global.recognizer(&model, Parallelism::Throughput)?.reembed(&gallery)?;
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
