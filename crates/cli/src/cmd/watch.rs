//! `maskid watch SOURCE --gallery G`: faces in a video file, a folder of frames, a stream or a
//! camera, tracked and identified; one JSON line per event.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use maskid_face::Parallelism;
use maskid_gallery::{escaped_name, Gallery, Location};
use maskid_pipeline::{Decision, FaceResult, ModelChoice, DEFAULT_FPIR};
use maskid_video::{
    Annotator, Event, Frame, ReadOptions, TrackView, TrackerConfig, VideoSource, WatchOptions, WatchProgress,
    WatchReport, WatchSink, Watcher,
};

use crate::common::{gallery_model, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// A video file (mp4, mkv, avi, webm, ...), a folder of frames, a stream URL (rtsp://,
    /// http://, ...) or a camera (/dev/video0).
    source: String,
    /// The gallery: an SQLite file or a PostgreSQL database (docs/postgres.md).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Location,
    /// teacher, g2d, auto or FILE.onnx (default: the model the gallery was enrolled with).
    #[arg(long)]
    model: Option<ModelChoice>,
    /// Share of people not enrolled to be taken for someone, per track (docs/cli.md).
    #[arg(long, default_value_t = DEFAULT_FPIR, conflicts_with = "threshold")]
    fpir: f64,
    /// Cosine similarity needed for a match, instead of a target FPIR.
    #[arg(long)]
    threshold: Option<f32>,
    /// Detect faces on every k-th frame; tracks carry them in between.
    #[arg(long, default_value_t = 3)]
    detect_every: u64,
    /// Write the events to this file (one JSON line each, flushed as they happen) and print
    /// a line of text per event instead.
    #[arg(long, value_name = "FILE")]
    events: Option<PathBuf>,
    /// Also write the video with each track's box, name, similarity and mask state drawn on
    /// it (.mp4, .mkv, .mov: H.264; .webm: VP9).
    #[arg(long, value_name = "FILE")]
    annotate: Option<PathBuf>,
    /// Also write a page with a timeline of the tracks and the best frame of each into DIR.
    #[arg(long, value_name = "DIR")]
    report: Option<PathBuf>,
    /// Frames a second of a folder of frames.
    #[arg(long, default_value_t = 25.0)]
    fps: f64,
    /// A track no face has matched for this many seconds ends.
    #[arg(long, default_value_t = TrackerConfig::default().max_gap_s)]
    max_gap: f64,
    /// Faces each track is identified from: its best so far.
    #[arg(long, default_value_t = 5)]
    evidence: usize,
    /// A stream silent this many seconds is reconnected.
    #[arg(long, default_value_t = 10.0)]
    stall: f64,
    /// A stream is given up after this many seconds without a frame (reconnecting with
    /// backoff meanwhile).
    #[arg(long, default_value_t = 60.0)]
    reconnect_for: f64,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    for (name, value) in [("--fps", args.fps), ("--max-gap", args.max_gap), ("--stall", args.stall)] {
        anyhow::ensure!(value > 0.0 && value.is_finite(), "{name} must be positive, got {value}");
    }
    anyhow::ensure!(args.reconnect_for >= 0.0, "--reconnect-for must not be negative");
    let source = VideoSource::parse(&args.source)?;
    let gallery = Gallery::open_existing(&args.gallery)?;
    let model = gallery_model(&gallery, args.model.clone())?;
    let recognizer = global.recognizer(&model, Parallelism::Latency)?;
    let decision = args.threshold.map_or(Decision::Fpir(args.fpir), Decision::Threshold);
    let options = WatchOptions {
        detect_every: args.detect_every,
        decided_by: recognizer.open_set_threshold(&gallery, decision)?,
        tracker: TrackerConfig { max_gap_s: args.max_gap, ..TrackerConfig::default() },
        evidence: args.evidence,
        read: ReadOptions {
            frames_fps: args.fps,
            stall: Duration::from_secs_f64(args.stall),
            reconnect_for: Duration::from_secs_f64(args.reconnect_for),
        },
    };
    let watcher = Watcher::new(&recognizer, &gallery, options)?;

    // Ctrl-C or a termination request stops the watch between frames: the tracks end, the
    // events are flushed, and the summary is written.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))?;
    }
    let mut sink = Outputs {
        events: EventSink::open(args.events.as_ref())?,
        annotated: None,
        annotate: args.annotate.clone(),
        report: args.report.is_some().then(WatchReport::new),
        progress: ProgressLine::new(global.quiet),
        fps: LIVE_ANNOTATED_FPS,
    };
    let outcome = watcher.run(&source, &stop, &mut sink);
    sink.progress.clear();
    // The outputs are closed whatever happened: the video stays playable and the report
    // shows what was seen up to an error.
    if let Some(annotated) = sink.annotated.take() {
        annotated.finish()?;
        if let Some(path) = &args.annotate {
            eprintln!("maskid: annotated video {}", path.display());
        }
    }
    if let (Some(report), Some(dir)) = (&sink.report, &args.report) {
        report.write(dir).map_err(|e| anyhow::anyhow!("writing the report to {}: {e}", dir.display()))?;
        eprintln!("maskid: report {}", dir.join("index.html").display());
    }
    let summary = outcome?;
    if summary.stopped {
        eprintln!("maskid: stopped after {} frames; events flushed", summary.frames);
    }
    Ok(ExitCode::SUCCESS)
}

/// The frame rate of a live source's annotated copy (a live source has none of its own; its
/// dropped frames shorten the copy).
const LIVE_ANNOTATED_FPS: f64 = 25.0;

/// Everything a watch writes.
struct Outputs {
    events: EventSink,
    /// Opened at the first frame, whose size it takes.
    annotated: Option<Annotator>,
    annotate: Option<PathBuf>,
    report: Option<WatchReport>,
    progress: ProgressLine,
    /// The annotated copy's rate: the source's, as the `started` event gives it.
    fps: f64,
}

impl WatchSink for Outputs {
    fn event(&mut self, event: &Event) -> maskid_video::Result<()> {
        if let Event::Started { fps: Some(fps), .. } = event {
            self.fps = *fps;
        }
        if let Some(report) = &mut self.report {
            report.event(event);
        }
        self.events.write(event).map_err(maskid_video::Error::Events)
    }

    fn progress(&mut self, progress: &WatchProgress) {
        self.progress.show(progress);
    }

    fn frame(&mut self, frame: &Frame, tracks: &[TrackView]) -> maskid_video::Result<()> {
        if self.annotated.is_none() {
            if let Some(path) = &self.annotate {
                self.annotated = Some(Annotator::create(path, frame.image.width(), frame.image.height(), self.fps)?);
            }
        }
        match &mut self.annotated {
            Some(annotated) => annotated.frame(&frame.image, tracks),
            None => Ok(()),
        }
    }

    fn best_face(&mut self, track: u64, frame: &Frame, face: &FaceResult) {
        if let Some(report) = &mut self.report {
            report.best_face(track, frame, face);
        }
    }
}

/// Where events go: JSON lines on stdout, or to a file with a line of text on stdout.
struct EventSink {
    file: Option<BufWriter<File>>,
}

impl EventSink {
    fn open(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let file = match path {
            Some(path) => {
                Some(BufWriter::new(File::create(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?))
            }
            None => None,
        };
        Ok(Self { file })
    }

    /// Writes and flushes one event, so a reader (or a killed watch) sees it at once.
    fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let line = serde_json::to_string(event).expect("BUG: events serialise");
        match &mut self.file {
            Some(file) => {
                writeln!(file, "{line}")?;
                file.flush()?;
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", describe(event))?;
                out.flush()?;
            }
            None => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// An event as a line of text.
fn describe(event: &Event) -> String {
    let clock = |t: f64| format!("{:02}:{:05.2}", (t / 60.0) as u64, t % 60.0);
    let name = |n: &Option<String>| n.as_deref().map_or("nobody enrolled".to_string(), escaped_name);
    match event {
        Event::Started { source, .. } => format!("watching {}", escaped_name(source)),
        Event::TrackStarted { track, time, mask, .. } => format!("{} track {track}: a face ({mask})", clock(*time)),
        Event::Identified { track, time, name: who, similarity, threshold, .. } => {
            format!(
                "{} track {track}: {} (similarity {similarity:.3}, threshold {threshold:.3})",
                clock(*time),
                name(who)
            )
        }
        Event::TrackEnded { track, time, name: who, .. } => {
            format!("{} track {track} ended: {}", clock(*time), name(who))
        }
        Event::StreamLost { time, why, retry_in, .. } => {
            format!("{} stream lost ({}); retrying in {retry_in:.1} s", clock(*time), escaped_name(why))
        }
        Event::StreamResumed { time, .. } => format!("{} stream resumed", clock(*time)),
        Event::Damaged { time, why, .. } => format!("{} damaged input: {}", clock(*time), escaped_name(why)),
        Event::Finished { summary } => summary.to_string(),
    }
}

/// Frames, rate and time left on stderr: redrawn on a terminal, a line every ten seconds in
/// a log.
struct ProgressLine {
    quiet: bool,
    terminal: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new(quiet: bool) -> Self {
        Self { quiet, terminal: std::io::stderr().is_terminal(), last: None }
    }

    fn show(&mut self, p: &WatchProgress) {
        let every = if self.terminal { Duration::from_millis(250) } else { Duration::from_secs(10) };
        if self.quiet || self.last.is_some_and(|l| l.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let line = match (p.live, p.total) {
            (false, Some(total)) if total > 0 => {
                let left = total.saturating_sub(p.frames) as f64 / p.fps.max(1e-3);
                format!(
                    "frame {}/{total} ({:.0}%), {:.1} fps, eta {left:.0} s, {} tracks",
                    p.frames,
                    100.0 * p.frames as f64 / total as f64,
                    p.fps,
                    p.tracks
                )
            }
            (true, _) => format!("live: frame {}, {:.1} fps, {} tracks", p.frames, p.fps, p.tracks),
            _ => format!("frame {}, {:.1} fps, {} tracks", p.frames, p.fps, p.tracks),
        };
        if self.terminal {
            eprint!("\r\x1b[2Kmaskid: {line}");
        } else {
            eprintln!("maskid: {line}");
        }
    }

    fn clear(&self) {
        if self.terminal && self.last.is_some() && !self.quiet {
            eprint!("\r\x1b[2K");
        }
    }
}
