//! `maskid gallery list|show|remove --gallery FILE`: what the gallery holds.

use std::path::PathBuf;
use std::process::ExitCode;

use maskid_gallery::Gallery;

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// The gallery file.
    #[arg(long, global = true)]
    gallery: Option<PathBuf>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Every subject with its number of faces, and the gallery's model.
    List,
    /// One subject.
    Show { name: String },
    /// Remove a subject and its faces.
    Remove { name: String },
}

pub fn run(_global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let path = args.gallery.ok_or_else(|| anyhow::anyhow!("--gallery FILE is required"))?;
    anyhow::ensure!(path.is_file(), "{}: no such gallery", path.display());
    let gallery = Gallery::open(&path)?;
    match args.action {
        Action::List => {
            let subjects = gallery.subjects()?;
            let model = gallery.model()?;
            if args.json {
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
            if args.json {
                print_json(&subject)?;
            } else {
                println!(
                    "{}: {} faces, enrolled {}, metadata {}",
                    subject.name, subject.faces, subject.created, subject.metadata
                );
            }
        }
        Action::Remove { name } => {
            gallery.remove_subject(&name)?;
            if !args.json {
                println!("removed {name}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
