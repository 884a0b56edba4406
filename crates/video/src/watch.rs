//! The watch loop: frames in, faces detected every k-th frame, tracked, and each track
//! identified from its best faces so far; events out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use maskid_core::{BBox, Embedding, FaceMask};
use maskid_face::FaceQuality;
use maskid_gallery::Gallery;
use maskid_pipeline::{FaceResult, OpenSetThreshold, Recognizer};
use serde::Serialize;

use crate::annotate::TrackView;
use crate::source::{Delivery, Frame, FrameReader, ReadOptions, VideoSource};
use crate::track::{Observation, Track, Tracker, TrackerConfig};
use crate::Result;

/// How to watch.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    /// Detect faces on every k-th frame (1: every frame); tracks carry them in between.
    pub detect_every: u64,
    /// The threshold for this gallery (`Recognizer::open_set_threshold`); a masked track's
    /// comes from it by its mask state, as for photos.
    pub decided_by: OpenSetThreshold,
    /// Matching and ending tracks.
    pub tracker: TrackerConfig,
    /// Faces a track is identified from: its best so far by quality.
    pub evidence: usize,
    /// Reading the source.
    pub read: ReadOptions,
}

/// One thing that happened, as a JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The watch began.
    Started {
        /// The source as given.
        source: String,
        /// A file's codec, frame size, rate and length (ffprobe's), when known.
        codec: Option<String>,
        /// Pixels.
        width: Option<u32>,
        /// Pixels.
        height: Option<u32>,
        /// Frames a second.
        fps: Option<f64>,
        /// Frames in the source, when known.
        frames: Option<u64>,
        /// The model that embeds the faces.
        model: String,
        /// Faces the gallery holds in the model's space.
        gallery_faces: usize,
        /// Detection on every k-th frame.
        detect_every: u64,
    },
    /// A new face came into view.
    TrackStarted {
        /// The track's id.
        track: u64,
        /// Frame number (from 0).
        frame: u64,
        /// Seconds.
        time: f64,
        /// Where.
        #[serde(rename = "box")]
        bbox: BBox,
        /// Its mask state.
        mask: FaceMask,
    },
    /// A track's identity was decided or changed: `name` is who it is now (`null`: nobody
    /// enrolled any more), `previous` who it was.
    Identified {
        /// The track.
        track: u64,
        /// Frame number.
        frame: u64,
        /// Seconds.
        time: f64,
        /// The person, or `null`.
        name: Option<String>,
        /// The name before, if any.
        previous: Option<String>,
        /// Cosine similarity of the track's evidence to its best candidate.
        similarity: f32,
        /// The threshold it was held to.
        threshold: f32,
        /// The share of strangers that threshold lets through, when known.
        fpir: Option<f64>,
        /// The model.
        model: String,
        /// The mask state of the track's best face.
        mask: FaceMask,
        /// Faces the decision rests on.
        evidence: usize,
    },
    /// A face left the view (or the source ended).
    TrackEnded {
        /// The track.
        track: u64,
        /// Last frame it was seen.
        frame: u64,
        /// Seconds.
        time: f64,
        /// Who it was at the end (`null`: nobody enrolled).
        name: Option<String>,
        /// Its best candidate's similarity, if the gallery has anyone.
        similarity: Option<f32>,
        /// First frame it was seen.
        first_frame: u64,
        /// Seconds.
        first_time: f64,
        /// Detections matched to it.
        detections: u64,
    },
    /// A live source stopped sending frames.
    StreamLost {
        /// Frames read so far.
        frame: u64,
        /// Seconds.
        time: f64,
        /// FFmpeg's last words.
        why: String,
        /// Seconds before the next try.
        retry_in: f64,
    },
    /// A live source is sending again.
    StreamResumed {
        /// Frames read so far.
        frame: u64,
        /// Seconds.
        time: f64,
    },
    /// The decoder reported damage and went on (a corrupt packet, a truncated file, an
    /// unreadable frame of a folder).
    Damaged {
        /// Frames decoded when it was reported (the damage is near it).
        frame: u64,
        /// Seconds.
        time: f64,
        /// What it said.
        why: String,
    },
    /// The watch ended.
    Finished {
        /// The run's totals.
        #[serde(flatten)]
        summary: Summary,
    },
}

/// Seconds spent in each stage of the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimes {
    /// Waiting for the next frame (decoding is on its own thread and process; this is the
    /// part the recogniser could not hide).
    pub wait_s: f64,
    /// Detecting faces.
    pub detect_s: f64,
    /// Aligning, mask state and embedding.
    pub embed_s: f64,
    /// Matching faces to tracks.
    pub track_s: f64,
    /// Searching the gallery.
    pub identify_s: f64,
    /// CPU seconds of the FFmpeg decoders of this watch (of the child processes that ended
    /// during it).
    pub decode_cpu_s: f64,
}

impl std::ops::AddAssign for StageTimes {
    fn add_assign(&mut self, other: Self) {
        self.wait_s += other.wait_s;
        self.detect_s += other.detect_s;
        self.embed_s += other.embed_s;
        self.track_s += other.track_s;
        self.identify_s += other.identify_s;
        self.decode_cpu_s += other.decode_cpu_s;
    }
}

/// A watch's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Frames processed.
    pub frames: u64,
    /// Frames of a live source dropped while the recogniser was behind.
    pub dropped: u64,
    /// Frames faces were detected on.
    pub detections: u64,
    /// Tracks started.
    pub tracks: u64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Frames processed a second.
    pub fps: f64,
    /// Stopped by the caller (Ctrl-C) rather than by the end of the source.
    pub stopped: bool,
    /// Where the time went.
    pub stages: StageTimes,
}

impl std::fmt::Display for Summary {
    /// `150 frames in 2.1 s (71.4 frames/s), 3 tracks`, with what was dropped or stopped.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} frames in {:.1} s ({:.1} frames/s), {} tracks",
            self.frames, self.seconds, self.fps, self.tracks
        )?;
        if self.dropped > 0 {
            write!(f, ", {} frames dropped to keep up", self.dropped)?;
        }
        if self.stopped {
            write!(f, ", stopped before the end")?;
        }
        Ok(())
    }
}

/// What the watch has done so far, for a progress line.
#[derive(Debug, Clone, Copy)]
pub struct WatchProgress {
    /// Frames processed.
    pub frames: u64,
    /// Frames in the source, when known.
    pub total: Option<u64>,
    /// Frames processed a second so far.
    pub fps: f64,
    /// Tracks live now.
    pub tracks: usize,
    /// A live source.
    pub live: bool,
}

/// Where a watch's events and frames go: the CLI writes JSON lines, an annotated video and a
/// report; the benchmark keeps the events; Python yields them.
pub trait WatchSink {
    /// One event, as it happens.
    fn event(&mut self, event: &Event) -> Result<()>;
    /// After each delivery.
    fn progress(&mut self, _progress: &WatchProgress) {}
    /// Each frame once processed, with the live tracks.
    fn frame(&mut self, _frame: &Frame, _tracks: &[TrackView]) -> Result<()> {
        Ok(())
    }
    /// A track's best face so far changed: the face, and the frame it is from.
    fn best_face(&mut self, _track: u64, _frame: &Frame, _face: &FaceResult) {}
}

/// Keeps the events (tests, benchmarks).
impl WatchSink for Vec<Event> {
    fn event(&mut self, event: &Event) -> Result<()> {
        self.push(event.clone());
        Ok(())
    }
}

/// A track's faces so far and the decision they give.
#[derive(Default)]
struct Evidence {
    /// (quality, embedding, mask), best first, at most `WatchOptions::evidence`.
    best: Vec<(f32, Embedding, FaceMask)>,
    name: Option<String>,
    similarity: Option<f32>,
}

impl Evidence {
    /// Keeps `face` if it is among the best `keep`: its rank (0: the best so far), else `None`.
    fn offer(&mut self, face: &FaceResult, keep: usize) -> Option<usize> {
        let quality = face_quality(face);
        let at = self.best.iter().position(|(q, _, _)| quality > *q).unwrap_or(self.best.len());
        if at >= keep {
            return None;
        }
        self.best.insert(at, (quality, face.embedding.clone(), face.mask));
        self.best.truncate(keep);
        Some(at)
    }

    /// The quality-weighted mean of the kept faces' embeddings.
    fn embedding(&self) -> Embedding {
        let mut sum = vec![0.0f32; self.best[0].1.values().len()];
        for (quality, embedding, _) in &self.best {
            // A zero-quality face still counts a little, so the mean is never empty.
            let weight = quality.max(1e-3);
            sum.iter_mut().zip(embedding.values()).for_each(|(s, v)| *s += weight * v);
        }
        Embedding::normalized(sum)
    }
}

/// How well a face will identify, 0..1: detector confidence, size (eyes 40 px apart or more
/// count fully), sharpness (Laplacian variance 100 or more) and how frontal it is. The
/// factors are those enrolment quality measures (quality.rs); a frame's face that is turned,
/// blurred by motion or small is outweighed by the track's better frames.
fn face_quality(face: &FaceResult) -> f32 {
    let q = FaceQuality::measure(&face.detection, &face.face);
    let size = (q.eye_distance_px / 40.0).clamp(0.0, 1.0);
    let sharp = (q.sharpness / 100.0).clamp(0.0, 1.0).sqrt();
    let frontal = (q.yaw_deg.to_radians().cos() * q.pitch_deg.to_radians().cos()).max(0.0);
    face.detection.score * size * sharp * frontal
}

/// Watches sources with one recogniser and gallery.
pub struct Watcher<'a> {
    recognizer: &'a Recognizer,
    gallery: &'a Gallery,
    options: WatchOptions,
}

impl<'a> Watcher<'a> {
    /// A watcher; `options.detect_every` and `options.evidence` must be at least 1.
    pub fn new(recognizer: &'a Recognizer, gallery: &'a Gallery, options: WatchOptions) -> Result<Self> {
        if options.detect_every == 0 || options.evidence == 0 {
            return Err(crate::Error::Source("--detect-every and the evidence kept must be at least 1".into()));
        }
        gallery.check_model(&recognizer.model())?;
        Ok(Self { recognizer, gallery, options })
    }

    /// Watches `source` until it ends or `stop` is set, giving `sink` each event as it
    /// happens, each frame with its tracks, and progress. A source that cannot be opened
    /// fails before any event; a watch that fails later (the source, or the work on a frame)
    /// ends its tracks and finishes, then returns the error.
    pub fn run(&self, source: &VideoSource, stop: &AtomicBool, sink: &mut dyn WatchSink) -> Result<Summary> {
        let reader = FrameReader::start(source, self.options.read)?;
        let probe = reader.probe.as_ref();
        sink.event(&Event::Started {
            source: source.name(),
            codec: probe.map(|p| p.codec.clone()),
            width: probe.map(|p| p.width),
            height: probe.map(|p| p.height),
            fps: probe.map(|p| p.fps).or((!source.live()).then_some(self.options.read.frames_fps)),
            frames: reader.total_frames,
            model: self.recognizer.model_choice().to_string(),
            gallery_faces: self.options.decided_by.gallery_faces,
            detect_every: self.options.detect_every,
        })?;
        let mut run = Run {
            watcher: self,
            tracker: Tracker::new(self.options.tracker),
            evidence: HashMap::new(),
            summary: Summary::default(),
            last: (0, 0.0),
        };
        let started = Instant::now();
        let children_before = children_cpu_s();
        let outcome = loop {
            if stop.load(Ordering::Relaxed) {
                run.summary.stopped = true;
                break Ok(());
            }
            let waited = Instant::now();
            let Some(delivery) = reader.next(Duration::from_millis(200)) else {
                run.summary.stages.wait_s += waited.elapsed().as_secs_f64();
                continue;
            };
            run.summary.stages.wait_s += waited.elapsed().as_secs_f64();
            let (frame, time) = run.last;
            match delivery {
                Delivery::Frame(f) => {
                    // An error here ends the watch as a source's error does: tracks ended,
                    // totals written, then the error.
                    if let Err(e) = run.frame(&f, sink).and_then(|()| sink.frame(&f, &run.views(f.index))) {
                        break Err(e);
                    }
                }
                Delivery::Lost { why, retry_in } => {
                    // The tracks cannot be followed across the gap.
                    run.end_tracks(sink)?;
                    sink.event(&Event::StreamLost { frame, time, why, retry_in: retry_in.as_secs_f64() })?;
                }
                Delivery::Resumed => sink.event(&Event::StreamResumed { frame, time })?,
                Delivery::Damaged { decoded, why } => sink.event(&Event::Damaged { frame: decoded, time, why })?,
                Delivery::End(ended) => break ended,
            }
            run.summary.seconds = started.elapsed().as_secs_f64();
            sink.progress(&WatchProgress {
                frames: run.summary.frames,
                total: reader.total_frames,
                fps: run.summary.frames as f64 / run.summary.seconds.max(1e-9),
                tracks: run.tracker.tracks().len(),
                live: source.live(),
            });
        };
        run.end_tracks(sink)?;
        run.summary.dropped = reader.dropped();
        drop(reader);
        run.summary.seconds = started.elapsed().as_secs_f64();
        run.summary.fps = run.summary.frames as f64 / run.summary.seconds.max(1e-9);
        run.summary.stages.decode_cpu_s = children_cpu_s() - children_before;
        sink.event(&Event::Finished { summary: run.summary })?;
        outcome.map(|()| run.summary)
    }
}

/// One watch's state.
struct Run<'w, 'a> {
    watcher: &'w Watcher<'a>,
    tracker: Tracker,
    evidence: HashMap<u64, Evidence>,
    summary: Summary,
    /// The last frame's number and time.
    last: (u64, f64),
}

impl Run<'_, '_> {
    fn frame(&mut self, frame: &Frame, sink: &mut dyn WatchSink) -> Result<()> {
        self.summary.frames += 1;
        self.last = (frame.index, frame.time_s);
        // Detection on the first frame and every k-th after it.
        if !(self.summary.frames - 1).is_multiple_of(self.watcher.options.detect_every) {
            return Ok(());
        }
        self.summary.detections += 1;
        let recognizer = self.watcher.recognizer;
        let clock = Instant::now();
        let found = recognizer.detect_in_frame(&frame.image)?;
        let stages = &mut self.summary.stages;
        stages.detect_s += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let faces = recognizer.faces_at(&frame.image, &found)?;
        stages.embed_s += clock.elapsed().as_secs_f64();
        let clock = Instant::now();
        let seen: Vec<Observation> =
            faces.iter().map(|f| Observation { bbox: f.detection.bbox, embedding: f.embedding.clone() }).collect();
        let update = self.tracker.update(frame.index, frame.time_s, &seen);
        stages.track_s += clock.elapsed().as_secs_f64();
        for track in update.ended {
            self.ended(track, sink)?;
        }
        for &id in &update.started {
            let at = update.track_of.iter().position(|&t| t == id).expect("BUG: a started track has its face");
            self.summary.tracks += 1;
            sink.event(&Event::TrackStarted {
                track: id,
                frame: frame.index,
                time: frame.time_s,
                bbox: faces[at].detection.bbox,
                mask: faces[at].mask,
            })?;
        }
        for (face, &id) in faces.iter().zip(&update.track_of) {
            let evidence = self.evidence.entry(id).or_default();
            if let Some(rank) = evidence.offer(face, self.watcher.options.evidence) {
                if rank == 0 {
                    sink.best_face(id, frame, face);
                }
                let clock = Instant::now();
                let event = self.identify(id, frame)?;
                self.summary.stages.identify_s += clock.elapsed().as_secs_f64();
                if let Some(event) = event {
                    sink.event(&event)?;
                }
            }
        }
        Ok(())
    }

    /// Searches the gallery with track `id`'s evidence; the event when its identity changed.
    fn identify(&mut self, id: u64, frame: &Frame) -> Result<Option<Event>> {
        let (watcher, recognizer) = (self.watcher, self.watcher.recognizer);
        let evidence = self.evidence.get_mut(&id).expect("BUG: evidence offered first");
        let mask = evidence.best[0].2;
        let decided_by = watcher.options.decided_by.for_face(&mask, recognizer.calibration());
        let found =
            watcher.gallery.identify_each(&[evidence.embedding()], &recognizer.model(), 1, decided_by.threshold)?;
        let Some(best) = found.into_iter().next().and_then(|c| c.into_iter().next()) else {
            return Ok(None);
        };
        evidence.similarity = Some(best.similarity);
        let name = best.matched.then_some(best.name);
        if name == evidence.name {
            return Ok(None);
        }
        let previous = std::mem::replace(&mut evidence.name, name.clone());
        Ok(Some(Event::Identified {
            track: id,
            frame: frame.index,
            time: frame.time_s,
            name,
            previous,
            similarity: best.similarity,
            threshold: decided_by.threshold,
            fpir: decided_by.fpir,
            model: recognizer.model_choice().to_string(),
            mask,
            evidence: evidence.best.len(),
        }))
    }

    fn ended(&mut self, track: Track, sink: &mut dyn WatchSink) -> Result<()> {
        let evidence = self.evidence.remove(&track.id).unwrap_or_default();
        sink.event(&Event::TrackEnded {
            track: track.id,
            frame: track.last_frame,
            time: track.last_time,
            name: evidence.name,
            similarity: evidence.similarity,
            first_frame: track.first_frame,
            first_time: track.first_time,
            detections: track.matches,
        })
    }

    fn end_tracks(&mut self, sink: &mut dyn WatchSink) -> Result<()> {
        for track in self.tracker.end_all() {
            self.ended(track, sink)?;
        }
        Ok(())
    }

    /// The live tracks as they stand at `frame`.
    fn views(&self, frame: u64) -> Vec<TrackView> {
        self.tracker
            .tracks()
            .iter()
            .map(|t| {
                let evidence = self.evidence.get(&t.id);
                TrackView {
                    id: t.id,
                    bbox: t.predicted(frame),
                    name: evidence.and_then(|e| e.name.clone()),
                    similarity: evidence.and_then(|e| e.similarity),
                    mask: evidence.and_then(|e| e.best.first()).map(|b| b.2.state),
                }
            })
            .collect()
    }
}

/// CPU seconds of this process's children that have exited (the FFmpeg decoders).
fn children_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct it is given and reads nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}
