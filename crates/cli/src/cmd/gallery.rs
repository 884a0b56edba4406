//! `maskid gallery list|show|remove|check --gallery FILE`: what the gallery holds.

use std::process::ExitCode;

use maskid_gallery::Gallery;

use crate::common::{print_json, GalleryFile, GlobalArgs};

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
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let path = args.file.path()?;
    anyhow::ensure!(path.is_file(), "{}: no such gallery", path.display());
    let gallery = Gallery::open(path)?;
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
                    println!("  {:<30} {} faces, since {}", s.name, s.faces, s.created);
                }
            }
        }
        Action::Show { name } => {
            let subject = gallery.subject(&name)?;
            if args.file.json {
                print_json(&subject)?;
            } else {
                println!(
                    "{}: {} faces, enrolled {}, metadata {}",
                    subject.name, subject.faces, subject.created, subject.metadata
                );
            }
        }
        Action::Check => {
            let integrity = gallery.integrity_check()?;
            let (subjects, faces) = (gallery.subjects()?.len(), gallery.embeddings()?.len());
            if args.file.json {
                print_json(&serde_json::json!({ "integrity": integrity, "subjects": subjects, "faces": faces }))?;
            } else {
                println!("integrity {integrity}; {subjects} subjects, {faces} faces");
            }
            if integrity != "ok" {
                return Ok(ExitCode::from(1));
            }
        }
        Action::Remove { name } => {
            gallery.remove_subject(&name)?;
            if !args.file.json {
                println!("removed {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
