//! `maskid`: masked-face recognition from the command line. Each subcommand lives in
//! `cmd/<name>.rs`: it parses its arguments, calls the library crates and prints text or
//! `--json`.

mod cmd;
mod common;
mod label;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Recognise people whose faces are partly covered by masks.
#[derive(Parser)]
#[command(name = "maskid", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    common: common::CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sample photos, clean and masked, decided by the teacher and the shipped G2D model; an HTML report.
    Demo {
        #[command(flatten)]
        args: cmd::demo::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Fetch or list the pinned model files and ONNX Runtime.
    Models(cmd::models::Args),
    /// Detect faces and print boxes, landmarks and scores.
    Detect {
        #[command(flatten)]
        args: cmd::detect::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Detect and align faces, writing 112x112 crops.
    Align {
        #[command(flatten)]
        args: cmd::align::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Draw synthetic masks on photos or aligned crops, with occlusion maps.
    Mask {
        #[command(flatten)]
        args: cmd::mask::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Detect and align a whole data set once into the cache.
    Prepare {
        #[command(flatten)]
        args: cmd::prepare::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Evaluate a model on a protocol of protocols.md.
    Eval {
        #[command(flatten)]
        args: cmd::eval::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Measure the mask classifier: real photos with and without masks, drawn masks' coverage.
    EvalMask {
        #[command(flatten)]
        args: cmd::eval_mask::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Measure a model's impostor scores for open-set decisions by FPIR (identify --fpir).
    Calibrate {
        #[command(flatten)]
        args: cmd::calibrate::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Train the G2D stages: inpaint, encoder, reformer, classifier.
    Train {
        #[command(flatten)]
        args: cmd::train::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Export a trained backbone as ONNX, checked against burn.
    Export {
        #[command(flatten)]
        args: cmd::export::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Show the inpainting decoder's reconstruction of covered faces.
    Unmask {
        #[command(flatten)]
        args: cmd::unmask::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Add a person's photos to a gallery.
    Enroll {
        #[command(flatten)]
        args: cmd::enroll::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Find the enrolled people most like each photo.
    Identify {
        #[command(flatten)]
        args: cmd::identify::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Are two photos the same person?
    Verify {
        #[command(flatten)]
        args: cmd::verify::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// The gallery: list, show or remove subjects; check, export, import or re-embed it.
    Gallery(cmd::gallery::Args),
    /// Measure: photo -> embedding latency, throughput, training, search, the service (load,
    /// soak) and face detection over a folder.
    Bench {
        #[command(flatten)]
        args: cmd::bench::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Faces in a video, a folder of frames, a stream or a camera: tracked and identified, one
    /// JSON line per event.
    Watch {
        #[command(flatten)]
        args: cmd::watch::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Run the HTTP service over a gallery.
    Serve {
        #[command(flatten)]
        args: cmd::serve::Args,
        #[command(flatten)]
        photo: common::PhotoArgs,
    },
    /// Create, list or revoke the service's API keys.
    Keys(cmd::keys::Args),
    /// A local PostgreSQL with pgvector (from PyPI) to try the PostgreSQL gallery: start, stop, url.
    Db(cmd::db::Args),
}

/// `maskid ... | head -1`: when the reader of stdout goes away, end quietly with the status
/// a shell gives a command killed by SIGPIPE (141), as Unix tools do, instead of a panic
/// message. SIGPIPE itself stays ignored (Rust's default): a socket whose peer hung up (an
/// HTTP client of `serve`, a PostgreSQL server) must give an error, not kill the process.
fn quiet_on_closed_stdout() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's message when `println!` meets a closed pipe.
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info)
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { args, photo } => cmd::demo::run(&cli.common.with(photo), args),
        Command::Models(args) => cmd::models::run(&cli.common.with(Default::default()), args),
        Command::Detect { args, photo } => cmd::detect::run(&cli.common.with(photo), args),
        Command::Align { args, photo } => cmd::align::run(&cli.common.with(photo), args),
        Command::Mask { args, photo } => cmd::mask::run(&cli.common.with(photo), args),
        Command::Prepare { args, photo } => cmd::prepare::run(&cli.common.with(photo), args),
        Command::Eval { args, photo } => cmd::eval::run(&cli.common.with(photo), args),
        Command::EvalMask { args, photo } => cmd::eval_mask::run(&cli.common.with(photo), args),
        Command::Calibrate { args, photo } => cmd::calibrate::run(&cli.common.with(photo), args),
        Command::Train { args, photo } => cmd::train::run(&cli.common.with(photo), args),
        Command::Export { args, photo } => cmd::export::run(&cli.common.with(photo), args),
        Command::Unmask { args, photo } => cmd::unmask::run(&cli.common.with(photo), args),
        Command::Enroll { args, photo } => cmd::enroll::run(&cli.common.with(photo), args),
        Command::Identify { args, photo } => cmd::identify::run(&cli.common.with(photo), args),
        Command::Verify { args, photo } => cmd::verify::run(&cli.common.with(photo), args),
        Command::Gallery(args) => cmd::gallery::run(&cli.common.with(Default::default()), args),
        Command::Bench { args, photo } => cmd::bench::run(&cli.common.with(photo), args),
        Command::Watch { args, photo } => cmd::watch::run(&cli.common.with(photo), args),
        Command::Serve { args, photo } => cmd::serve::run(&cli.common.with(photo), args),
        Command::Keys(args) => cmd::keys::run(args),
        Command::Db(args) => cmd::db::run(&cli.common.with(Default::default()), args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("maskid: error: {}", maskid_gallery::escaped_name(&common::error_text(&e)));
            ExitCode::from(2)
        }
    }
}
