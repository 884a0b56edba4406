//! `maskid eval-mask`: how often the mask classifier is right, on real photos with and
//! without masks and on the coverage of maskid's masks drawn on photos (models/README.md,
//! "Mask state"), with Wilson 95% intervals; and what it adds to photo -> embedding time.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use maskid_face::{MaskClassifier, Parallelism};
use maskid_pipeline::{test_mask_state, MaskTestSources};

use crate::common::{print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// LFW root: the photos of pairsDevTest.txt, unmasked and masked on the photo.
    #[arg(long)]
    lfw: PathBuf,
    /// masked-wild's photos: its test part (a fifth, by file name; never trained on).
    #[arg(long)]
    masked_wild: PathBuf,
    /// rmfrd-dev root: its unmasked and real masked photos (validation: with them, a table of
    /// the thresholds the mask state could be decided at).
    #[arg(long)]
    rmfrd: Option<PathBuf>,
    /// A mask classifier's ONNX file (`maskid train --stage mask`); default: the shipped one.
    #[arg(long)]
    classifier: Option<PathBuf>,
    /// Print the rows as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    let models = global.models(Parallelism::Throughput)?;
    let loaded = match &args.classifier {
        Some(path) => Some(MaskClassifier::new(path, Parallelism::Throughput)?),
        None => None,
    };
    let classifier = loaded.as_ref().unwrap_or(&models.mask);
    let sources = MaskTestSources { lfw: &args.lfw, masked_wild: &args.masked_wild, rmfrd: args.rmfrd.as_deref() };
    let test = test_mask_state(&models, classifier, &sources, &global.progress())?;
    if args.json {
        print_json(&test)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!("masked from P(mask) >= {}\n", test.masked_at);
    println!("| faces | right answer | right | % | 95% interval |");
    println!("|---|---|---|---|---|");
    for r in &test.rows {
        println!(
            "| {} | {} | {} / {} | {:.2} | {:.2} - {:.2} |",
            r.faces, r.expected, r.right, r.of, r.percent, r.interval.0, r.interval.1
        );
    }
    if !test.thresholds.is_empty() {
        println!("\nchoosing the threshold on the validation faces (rmfrd-dev; masked-wild's validation tenth):\n");
        println!("| masked from | unmasked called masked, % | masked called unmasked, % | mean of the two, % |");
        println!("|---|---|---|---|");
        for t in &test.thresholds {
            println!(
                "| {:.2} | {:.2} | {:.2} | {:.2} |",
                t.masked_at, t.unmasked_wrong, t.masked_wrong, t.balanced_wrong
            );
        }
    }
    // What the classifier costs beside the embedding, one face at a time (batch 1).
    let face = maskid_core::AlignedFace::from_rgb(vec![128; maskid_core::AlignedFace::BYTES]).expect("BUG: a crop");
    let time = |f: &dyn Fn() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        f()?;
        let start = Instant::now();
        for _ in 0..200 {
            f()?;
        }
        Ok(start.elapsed().as_secs_f64() * 1000.0 / 200.0)
    };
    let classify_ms = time(&|| Ok(classifier.classify(std::slice::from_ref(&face)).map(|_| ())?))?;
    let embed_ms = time(&|| Ok(models.teacher.embed(std::slice::from_ref(&face)).map(|_| ())?))?;
    println!("\nbatch 1: mask classifier {classify_ms:.3} ms a face, the teacher's embedding {embed_ms:.2} ms");
    Ok(ExitCode::SUCCESS)
}
