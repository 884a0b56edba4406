//! `maskid`: masked-face recognition from the command line. Each subcommand lives in
//! `cmd/<name>.rs`: it parses its arguments, calls the library crates and prints text or
//! `--json`.

mod cmd;
mod common;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Recognise people whose faces are partly covered by masks.
#[derive(Parser)]
#[command(name = "maskid", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: common::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample photos, clean and masked, decided by the teacher and the shipped G2D model; an HTML report.
    Demo(cmd::demo::Args),
    /// Fetch or list the pinned model files and ONNX Runtime.
    Models(cmd::models::Args),
    /// Detect faces and print boxes, landmarks and scores.
    Detect(cmd::detect::Args),
    /// Detect and align faces, writing 112x112 crops.
    Align(cmd::align::Args),
    /// Draw synthetic masks on photos or aligned crops, with occlusion maps.
    Mask(cmd::mask::Args),
    /// Detect and align a whole data set once into the cache.
    Prepare(cmd::prepare::Args),
    /// Evaluate a model on a protocol of protocols.md.
    Eval(cmd::eval::Args),
    /// Train the G2D stages: inpaint, encoder, reformer, classifier.
    Train(cmd::train::Args),
    /// Export a trained backbone as ONNX, checked against burn.
    Export(cmd::export::Args),
    /// Show the inpainting decoder's reconstruction of covered faces.
    Unmask(cmd::unmask::Args),
    /// Add a person's photos to a gallery.
    Enroll(cmd::enroll::Args),
    /// Find the enrolled people most like each photo.
    Identify(cmd::identify::Args),
    /// Are two photos the same person?
    Verify(cmd::verify::Args),
    /// The gallery: list, show or remove subjects; check, export, import or re-embed it.
    Gallery(cmd::gallery::Args),
    /// Measure: photo -> embedding latency, throughput, training, search, the service (load,
    /// soak) and face detection over a folder.
    Bench(cmd::bench::Args),
    /// Run the HTTP service over a gallery.
    Serve(cmd::serve::Args),
    /// Create, list or revoke the service's API keys.
    Keys(cmd::keys::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(&cli.global, args),
        Command::Models(args) => cmd::models::run(&cli.global, args),
        Command::Detect(args) => cmd::detect::run(&cli.global, args),
        Command::Align(args) => cmd::align::run(&cli.global, args),
        Command::Mask(args) => cmd::mask::run(&cli.global, args),
        Command::Prepare(args) => cmd::prepare::run(&cli.global, args),
        Command::Eval(args) => cmd::eval::run(&cli.global, args),
        Command::Train(args) => cmd::train::run(&cli.global, args),
        Command::Export(args) => cmd::export::run(&cli.global, args),
        Command::Unmask(args) => cmd::unmask::run(&cli.global, args),
        Command::Enroll(args) => cmd::enroll::run(&cli.global, args),
        Command::Identify(args) => cmd::identify::run(&cli.global, args),
        Command::Verify(args) => cmd::verify::run(&cli.global, args),
        Command::Gallery(args) => cmd::gallery::run(&cli.global, args),
        Command::Bench(args) => cmd::bench::run(&cli.global, args),
        Command::Serve(args) => cmd::serve::run(&cli.global, args),
        Command::Keys(args) => cmd::keys::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maskid: error: {}", common::error_text(&e));
            ExitCode::from(2)
        }
    }
}
