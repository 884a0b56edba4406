//! `maskid keys create|list|remove --gallery FILE`: API keys of the HTTP service. A new key's
//! secret is printed once; the gallery keeps only its SHA-256.

use std::process::ExitCode;

use maskid_gallery::Gallery;
use maskid_service::auth::{new_secret, secret_sha256, Role};

use crate::common::{choices, print_json, GalleryFile};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    file: GalleryFile,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Create a key and print its secret (shown only now).
    Create {
        /// read (search), write (enrol, delete) or admin (also list keys).
        #[arg(long, value_parser = choices::role())]
        role: String,
        /// A name for the key (default: role and a number).
        #[arg(long)]
        name: Option<String>,
    },
    /// List keys (names and roles, never secrets).
    List,
    /// Revoke a key.
    Remove {
        /// The key's name.
        name: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let location = args.file.location()?;
    // A key may be made before the first enrolment; listing or revoking needs the gallery.
    let gallery = match args.action {
        Action::Create { .. } => Gallery::open(location)?,
        _ => Gallery::open_existing(location)?,
    };
    match args.action {
        Action::Create { role, name } => {
            let role: Role = role.parse().map_err(|e| anyhow::anyhow!("--role: {e}"))?;
            let name = name.unwrap_or_else(|| format!("{}-{}", role.name(), gallery.keys().map_or(0, |k| k.len()) + 1));
            let secret = new_secret().map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
            gallery.add_key(&name, role, &secret_sha256(&secret))?;
            if args.file.json {
                print_json(&serde_json::json!({ "name": name, "role": role.name(), "secret": secret }))?;
            } else {
                println!("{secret}");
                eprintln!("maskid: key '{name}' ({}) created; the secret above is not stored, keep it", role.name());
            }
        }
        Action::List => {
            let keys = gallery.keys()?;
            if args.file.json {
                print_json(&keys)?;
            } else {
                for k in keys {
                    println!("{:<24} {:<6} {}", k.name, k.role, k.created);
                }
            }
        }
        Action::Remove { name } => {
            gallery.remove_key(&name)?;
            println!("key '{name}' revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
