//! `maskid prepare --data DIR`: detect and align a whole data set once, into the cache.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use maskid_eval::dataset_photos;
use maskid_face::Parallelism;

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Data set root: LFW (holding images_deepfunneled/) or one folder per person.
    #[arg(long)]
    data: PathBuf,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let photos = dataset_photos(&args.data)?;
    let models = global.models(Parallelism::Throughput)?;
    let start = Instant::now();
    let progress = global.progress();
    let (_, summary) = maskid_pipeline::prepare(global.assets().home(), &args.data, &photos, &models, &progress)?;
    let seconds = start.elapsed().as_secs_f64();
    if args.json {
        let mut value = serde_json::to_value(&summary)?;
        value["seconds"] = serde_json::json!(seconds);
        print_json(&value)?;
    } else {
        println!(
            "{} photos: {} already prepared, {} prepared now in {:.1} s; {} central-crop fallbacks, {} unreadable\ncache: {}",
            summary.total, summary.cached, summary.processed, seconds, summary.fallbacks, summary.unreadable,
            summary.cache_dir.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
