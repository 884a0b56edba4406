//! `maskid bench --video`: clips of LFW DevTest people walking past a camera, made here and
//! encoded with H.264 by FFmpeg (so decoding is part of what is measured), watched by
//! [`Watcher`] as `maskid watch` does, and scored against the truth of every frame.
//!
//! The people of `peopleDevTest.txt` with two photos or more are enrolled from their first
//! photo (the gallery of `bench --strangers`). Each clip shows three people one after another
//! and overlapping in time, each a photo (their second; a stranger's only one for DevTest
//! people with one photo) that appears at a point of the frame, walks a few hundred pixels,
//! scaled, turned a little and blurred by its motion, and disappears. A share of them wear a
//! mask drawn on the photo. Reported: identities found per appearance (recall) and per named
//! track (precision), strangers named, identity switches, tracks per appearance, time from
//! the first frame to the right name, and throughput with the time of each stage.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use image::{Rgb, RgbImage};
use maskid_core::BBox;
use maskid_eval::Lfw;
use maskid_face::Parallelism;
use maskid_mask::Rng;
use maskid_pipeline::{Decision, ModelChoice, Progress, Recognizer};
use maskid_video::{Event, ReadOptions, StageTimes, TrackerConfig, VideoSource, WatchOptions, Watcher};
use serde::Serialize;

use crate::strangers::{devtest_gallery, masked, DevTestGallery};
use crate::{percentile, Setup};

/// What clips to make and how to watch them.
#[derive(Debug, Clone)]
pub struct VideoOptions {
    /// Clips made and watched.
    pub clips: usize,
    /// Seconds per clip.
    pub seconds: f64,
    /// Frame size.
    pub width: u32,
    /// Frame size.
    pub height: u32,
    /// Frames a second.
    pub fps: f64,
    /// `watch --detect-every`.
    pub detect_every: u64,
    /// The embedding model.
    pub model: ModelChoice,
    /// Target FPIR of the identifications.
    pub fpir: f64,
    /// Share of appearances with a mask drawn on the photo.
    pub masked_share: f32,
    /// Share of appearances by people not enrolled.
    pub stranger_share: f32,
    /// Keep the clips in this folder (else they are made in a temporary one).
    pub keep: Option<PathBuf>,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            clips: 20,
            seconds: 6.0,
            width: 1280,
            height: 720,
            fps: 30.0,
            detect_every: 3,
            model: ModelChoice::Teacher,
            fpir: maskid_pipeline::DEFAULT_FPIR,
            masked_share: 0.4,
            stranger_share: 1.0 / 3.0,
            keep: None,
        }
    }
}

/// One kind of appearance and how it came out.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AppearanceRow {
    /// Which appearances.
    pub kind: String,
    /// How many.
    pub count: usize,
    /// Enrolled people: named right at some point (recall); strangers: named at all.
    pub named: usize,
    /// `named` over `count`.
    pub share: f64,
    /// Enrolled people: named right within one second of appearing.
    pub within_1s: usize,
    /// Enrolled people named right: seconds from the first frame to the right name, median.
    pub median_s: Option<f64>,
    /// ... 95th percentile.
    pub p95_s: Option<f64>,
}

/// An enrolled person not named right within a second, to look at in the kept clip.
#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    /// Clip number (`clip-NNN.mp4` with `--keep-clips`).
    pub clip: usize,
    /// Who.
    pub person: String,
    /// With a mask drawn on the photo.
    pub masked: bool,
    /// Frames of the clip they are in view.
    pub frames: (u64, u64),
    /// Height of the photo in the frame, pixels (the face is about half of it).
    pub photo_px: u32,
    /// What happened: never tracked, named as someone else, never named, or named late.
    pub what: String,
}

/// The benchmark's report.
#[derive(Debug, Clone, Serialize)]
pub struct VideoBench {
    /// The model's id.
    pub model: String,
    /// People enrolled.
    pub enrolled: usize,
    /// Clips watched.
    pub clips: usize,
    /// Frames in all.
    pub frames: u64,
    /// Frame size and rate.
    pub width: u32,
    /// Pixels.
    pub height: u32,
    /// Frames a second of the clips.
    pub fps: f64,
    /// `--detect-every`.
    pub detect_every: u64,
    /// Per kind: enrolled, enrolled masked, enrolled unmasked, strangers.
    pub rows: Vec<AppearanceRow>,
    /// Named tracks (at their end) whose name was right.
    pub precision: f64,
    /// Named tracks at their end.
    pub named_tracks: usize,
    /// Names given to a track that were wrong for it, at any time (an enrolled person named
    /// as another, or a stranger named).
    pub wrong_names: usize,
    /// A track's name changed from one person to another.
    pub switches: usize,
    /// Tracks per appearance (1.0: each person followed by one track).
    pub tracks_per_appearance: f64,
    /// Tracks that matched no appearance (false faces).
    pub false_tracks: usize,
    /// Tracks of other people in an appearance's photo (LFW photos show bystanders too);
    /// their names are not scored.
    pub bystander_tracks: usize,
    /// Appearances no track followed (the face never detected).
    pub unseen: usize,
    /// Appearances followed by more than one track (a track lost and started again).
    pub split: usize,
    /// Clips whose every enrolled person was named right within one second.
    pub clips_all_within_1s: usize,
    /// The enrolled people who were not.
    pub misses: Vec<Miss>,
    /// Frames processed a second (all clips; decoding overlaps on its own process).
    pub processed_fps: f64,
    /// Video seconds per second of processing.
    pub realtime_factor: f64,
    /// Where the time went, in all.
    pub stages: StageTimes,
    /// Seconds spent watching, in all.
    pub seconds: f64,
}

/// One person's walk through a clip.
struct Appearance {
    person: String,
    enrolled: bool,
    masked: bool,
    photo: RgbImage,
    first: u64,
    last: u64,
    start: [f32; 2],
    /// Pixels a frame.
    velocity: [f32; 2],
    scale: f32,
    angle: f32,
}

impl Appearance {
    /// Centre of the photo at `frame`.
    fn centre(&self, frame: u64) -> [f32; 2] {
        let t = (frame - self.first) as f32;
        [self.start[0] + self.velocity[0] * t, self.start[1] + self.velocity[1] * t]
    }

    fn visible(&self, frame: u64) -> bool {
        (self.first..=self.last).contains(&frame)
    }

    /// The photo's box at `frame` (its corners turned and scaled, bounded).
    fn area(&self, frame: u64) -> BBox {
        let half = self.photo.width().max(self.photo.height()) as f32 * self.scale / 2.0;
        let [x, y] = self.centre(frame);
        BBox { x: x - half, y: y - half, width: 2.0 * half, height: 2.0 * half }
    }
}

/// Paints `a` at `frame` on `canvas`: turned by its angle, scaled, and averaged over five
/// positions along its motion during the exposure: half the frame's time, a film camera's
/// 180-degree shutter, which video cameras imitate in fair light.
fn paint(canvas: &mut RgbImage, a: &Appearance, frame: u64) {
    const SAMPLES: usize = 5;
    const SHUTTER: f32 = 0.5;
    let [cx, cy] = a.centre(frame);
    let (sin, cos) = a.angle.sin_cos();
    let (pw, ph) = (a.photo.width() as f32, a.photo.height() as f32);
    let area = a.area(frame);
    let (x0, y0) = (area.x.max(0.0) as u32, area.y.max(0.0) as u32);
    let (x1, y1) = (
        ((area.x + area.width).ceil() as u32).min(canvas.width()),
        ((area.y + area.height).ceil() as u32).min(canvas.height()),
    );
    for y in y0..y1 {
        for x in x0..x1 {
            let (mut sum, mut inside) = ([0.0f32; 3], 0usize);
            for s in 0..SAMPLES {
                // Where this pixel was in the photo at this moment of the exposure.
                let shift = (s as f32 / (SAMPLES - 1) as f32 - 0.5) * SHUTTER;
                let dx = x as f32 + 0.5 - (cx + a.velocity[0] * shift);
                let dy = y as f32 + 0.5 - (cy + a.velocity[1] * shift);
                let u = (cos * dx + sin * dy) / a.scale + pw / 2.0;
                let v = (-sin * dx + cos * dy) / a.scale + ph / 2.0;
                if u < 0.0 || v < 0.0 || u >= pw - 1.0 || v >= ph - 1.0 {
                    continue;
                }
                let (ui, vi) = (u as u32, v as u32);
                let (fu, fv) = (u - ui as f32, v - vi as f32);
                for (c, total) in sum.iter_mut().enumerate() {
                    let p = |xx: u32, yy: u32| f32::from(a.photo.get_pixel(xx, yy)[c]);
                    *total += (p(ui, vi) * (1.0 - fu) + p(ui + 1, vi) * fu) * (1.0 - fv)
                        + (p(ui, vi + 1) * (1.0 - fu) + p(ui + 1, vi + 1) * fu) * fv;
                }
                inside += 1;
            }
            if inside > 0 {
                // Edges of the photo blend with the background as much as they cover.
                let cover = inside as f32 / SAMPLES as f32;
                let px = canvas.get_pixel_mut(x, y);
                for c in 0..3 {
                    let value = sum[c] / inside as f32;
                    px[c] = (cover * value + (1.0 - cover) * f32::from(px[c])).round() as u8;
                }
            }
        }
    }
}

/// A background of soft colour gradients with grain, different per clip.
fn background(width: u32, height: u32, rng: &mut Rng) -> RgbImage {
    let base = [rng.range(60.0, 170.0), rng.range(60.0, 170.0), rng.range(60.0, 170.0)];
    let tilt = [rng.range(-60.0, 60.0), rng.range(-60.0, 60.0), rng.range(-60.0, 60.0)];
    let mut grain = Rng::new(rng.next_u64());
    RgbImage::from_fn(width, height, |x, y| {
        let t = (x as f32 / width as f32 + y as f32 / height as f32) / 2.0 - 0.5;
        let noise = grain.range(-6.0, 6.0);
        Rgb(std::array::from_fn(|c| (base[c] + tilt[c] * t + noise).clamp(0.0, 255.0) as u8))
    })
}

/// Runs the benchmark.
pub fn video_bench(setup: &Setup, lfw_root: &Path, options: &VideoOptions) -> anyhow::Result<VideoBench> {
    anyhow::ensure!(options.clips > 0 && options.seconds > 0.0, "make at least one clip of some length");
    let recognizer = setup.recognizer(&options.model, Parallelism::Latency)?;
    let scratch = tempfile::tempdir()?;
    let DevTestGallery { gallery, enrolled, strangers } = devtest_gallery(&recognizer, lfw_root, scratch.path())?;
    let photo_path = |name: &str, n: usize| lfw_root.join(Lfw::image(name, n).path);
    let clips_dir = match &options.keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => scratch.path().to_path_buf(),
    };

    let watch = WatchOptions {
        detect_every: options.detect_every,
        decided_by: recognizer.open_set_threshold(&gallery, Decision::Fpir(options.fpir))?,
        tracker: TrackerConfig::default(),
        evidence: 5,
        read: ReadOptions::default(),
    };
    let watcher = Watcher::new(&recognizer, &gallery, watch)?;
    let frames_per_clip = (options.seconds * options.fps).round() as u64;
    let mut tally = Tally::default();
    let mut rng = Rng::new(0x5eed_0f71_de00);
    for clip in 0..options.clips {
        let plan = plan_clip(&recognizer, &mut rng, options, frames_per_clip, &enrolled, &strangers, &photo_path)?;
        let path = clips_dir.join(format!("clip-{clip:03}.mp4"));
        encode_clip(&path, &plan, options, frames_per_clip, &mut rng)?;
        (setup.progress)(Progress { stage: "clips", done: clip * 2 + 1, total: options.clips * 2 });
        let mut events: Vec<Event> = Vec::new();
        let summary = watcher.run(&VideoSource::File(path), &AtomicBool::new(false), &mut events)?;
        tally.add_clip(clip, &plan, &events, options.fps);
        tally.frames += summary.frames;
        tally.seconds += summary.seconds;
        tally.stages += summary.stages;
        (setup.progress)(Progress { stage: "clips", done: clip * 2 + 2, total: options.clips * 2 });
    }
    Ok(tally.report(recognizer.model().id, enrolled.len(), options))
}

/// Three people: one enters at the start, one a second in, one two seconds in; each stays
/// two to four seconds, in its own band of the frame.
fn plan_clip(
    recognizer: &Recognizer,
    rng: &mut Rng,
    options: &VideoOptions,
    frames: u64,
    enrolled: &[String],
    strangers: &[String],
    photo_path: &dyn Fn(&str, usize) -> PathBuf,
) -> anyhow::Result<Vec<Appearance>> {
    let (w, h) = (options.width as f32, options.height as f32);
    let mut plan = Vec::new();
    for lane in 0..3u64 {
        let stranger = rng.chance(options.stranger_share);
        let (person, path) = if stranger {
            let name = &strangers[rng.below(strangers.len())];
            (name.clone(), photo_path(name, 1))
        } else {
            let name = &enrolled[rng.below(enrolled.len())];
            (name.clone(), photo_path(name, 2))
        };
        let mut photo = recognizer.open_photo(&path)?;
        let masked_here = rng.chance(options.masked_share);
        if masked_here {
            // A photo whose face the detector misses stays unmasked (counted as such).
            photo = masked(recognizer, &photo, &path).unwrap_or(photo);
        }
        let first = (lane * (options.fps as u64) + rng.below(options.fps as usize / 2) as u64).min(frames - 1);
        let stay = (rng.range(2.0, 4.0) * options.fps as f32) as u64;
        let speed = rng.range(2.0, 8.0) * if rng.chance(0.5) { 1.0 } else { -1.0 };
        let start = [rng.range(0.25 * w, 0.75 * w), (lane as f32 + 0.5) * h / 3.0 + rng.range(-0.05 * h, 0.05 * h)];
        plan.push(Appearance {
            person,
            enrolled: !stranger,
            masked: masked_here,
            photo: photo.image().clone(),
            first,
            last: (first + stay).min(frames - 1),
            start,
            velocity: [speed, rng.range(-0.5, 0.5)],
            scale: rng.range(0.7, 1.4) * h / 720.0,
            angle: rng.range(-8.0, 8.0).to_radians(),
        });
    }
    Ok(plan)
}

fn encode_clip(
    path: &Path,
    plan: &[Appearance],
    options: &VideoOptions,
    frames: u64,
    rng: &mut Rng,
) -> anyhow::Result<()> {
    let backdrop = background(options.width, options.height, rng);
    let mut encoder = maskid_video::ffmpeg::Encoder::create(path, options.width, options.height, options.fps)?;
    for frame in 0..frames {
        let mut canvas = backdrop.clone();
        for a in plan.iter().filter(|a| a.visible(frame)) {
            paint(&mut canvas, a, frame);
        }
        encoder.write(&canvas)?;
    }
    encoder.finish()?;
    Ok(())
}

/// How near the middle of its photo a track's first face must be to be the photo's person:
/// a share of half the photo's side.
const MIDDLE: f32 = 0.35;

/// Counts over the clips.
#[derive(Default)]
struct Tally {
    /// (enrolled, masked, named right or named at all, seconds to the right name)
    appearances: Vec<(bool, bool, bool, Option<f64>)>,
    named_tracks: usize,
    right_tracks: usize,
    wrong_names: usize,
    switches: usize,
    tracks: usize,
    false_tracks: usize,
    bystander_tracks: usize,
    unseen: usize,
    split: usize,
    clips_all_within_1s: usize,
    misses: Vec<Miss>,
    frames: u64,
    seconds: f64,
    stages: StageTimes,
}

impl Tally {
    fn add_clip(&mut self, clip: usize, plan: &[Appearance], events: &[Event], fps: f64) {
        // A track belongs to the appearance whose photo's middle holds its first face's
        // centre (LFW's deep-funneled photos centre their person); a face elsewhere on a
        // photo is someone else in it, a bystander, and one nowhere on a photo is false.
        let mut owner = std::collections::HashMap::new();
        for event in events {
            if let Event::TrackStarted { track, frame, bbox, .. } = event {
                self.tracks += 1;
                let [x, y] = bbox.center();
                let on = |a: &Appearance, share: f32| {
                    let r = a.area(*frame);
                    let (cx, cy) = (r.x + r.width / 2.0, r.y + r.height / 2.0);
                    let reach = share * r.width / 2.0;
                    a.visible(*frame) && (x - cx).abs() <= reach && (y - cy).abs() <= reach
                };
                match plan.iter().position(|a| on(a, MIDDLE)) {
                    Some(i) => {
                        owner.insert(*track, i);
                    }
                    None if plan.iter().any(|a| on(a, 1.0)) => self.bystander_tracks += 1,
                    None => self.false_tracks += 1,
                }
            }
        }
        let mut first_right: Vec<Option<f64>> = vec![None; plan.len()];
        let mut named_at_all = vec![false; plan.len()];
        let mut named_wrong = vec![false; plan.len()];
        for event in events {
            match event {
                Event::Identified { track, frame, name, previous, .. } => {
                    let Some(&i) = owner.get(track) else { continue };
                    let a = &plan[i];
                    if let (Some(_), Some(_)) = (name, previous) {
                        self.switches += 1;
                    }
                    let Some(name) = name else { continue };
                    named_at_all[i] = true;
                    if a.enrolled && *name == a.person {
                        let delay = (*frame - a.first) as f64 / fps;
                        first_right[i] = Some(first_right[i].map_or(delay, |d: f64| d.min(delay)));
                    } else {
                        self.wrong_names += 1;
                        named_wrong[i] = true;
                    }
                }
                Event::TrackEnded { track, name: Some(name), .. } => {
                    let Some(&i) = owner.get(track) else { continue };
                    self.named_tracks += 1;
                    if plan[i].enrolled && plan[i].person == *name {
                        self.right_tracks += 1;
                    }
                }
                _ => {}
            }
        }
        let mut all_within = true;
        for (i, a) in plan.iter().enumerate() {
            let tracks = owner.values().filter(|&&o| o == i).count();
            match tracks {
                0 => self.unseen += 1,
                1 => {}
                _ => self.split += 1,
            }
            let right = first_right[i];
            if a.enrolled && !right.is_some_and(|d| d <= 1.0) {
                all_within = false;
                let what = match right {
                    Some(d) => format!("named {d:.2} s after appearing"),
                    None if tracks == 0 => "never tracked: the face was not detected".into(),
                    None if named_wrong[i] => "named as someone else".into(),
                    None => "tracked, never named".into(),
                };
                self.misses.push(Miss {
                    clip,
                    person: a.person.clone(),
                    masked: a.masked,
                    frames: (a.first, a.last),
                    photo_px: (a.photo.height() as f32 * a.scale).round() as u32,
                    what,
                });
            }
            let named = if a.enrolled { right.is_some() } else { named_at_all[i] };
            self.appearances.push((a.enrolled, a.masked, named, right));
        }
        self.clips_all_within_1s += usize::from(all_within);
    }

    fn row(&self, kind: &str, keep: impl Fn(bool, bool) -> bool) -> AppearanceRow {
        let chosen: Vec<_> = self.appearances.iter().filter(|(e, m, _, _)| keep(*e, *m)).collect();
        let named = chosen.iter().filter(|a| a.2).count();
        let mut delays: Vec<f64> = chosen.iter().filter_map(|a| a.3).collect();
        delays.sort_by(f64::total_cmp);
        AppearanceRow {
            kind: kind.into(),
            count: chosen.len(),
            named,
            share: named as f64 / chosen.len().max(1) as f64,
            within_1s: delays.iter().filter(|&&d| d <= 1.0).count(),
            median_s: (!delays.is_empty()).then(|| percentile(&delays, 0.5)),
            p95_s: (!delays.is_empty()).then(|| percentile(&delays, 0.95)),
        }
    }

    fn report(&self, model: String, enrolled: usize, options: &VideoOptions) -> VideoBench {
        let rows = vec![
            self.row("enrolled", |e, _| e),
            self.row("enrolled, unmasked", |e, m| e && !m),
            self.row("enrolled, mask drawn on the photo", |e, m| e && m),
            self.row("strangers (named: wrongly)", |e, _| !e),
        ];
        VideoBench {
            model,
            enrolled,
            clips: options.clips,
            frames: self.frames,
            width: options.width,
            height: options.height,
            fps: options.fps,
            detect_every: options.detect_every,
            rows,
            precision: self.right_tracks as f64 / self.named_tracks.max(1) as f64,
            named_tracks: self.named_tracks,
            wrong_names: self.wrong_names,
            switches: self.switches,
            tracks_per_appearance: (self.tracks - self.false_tracks - self.bystander_tracks) as f64
                / self.appearances.len().max(1) as f64,
            false_tracks: self.false_tracks,
            bystander_tracks: self.bystander_tracks,
            unseen: self.unseen,
            split: self.split,
            clips_all_within_1s: self.clips_all_within_1s,
            misses: self.misses.clone(),
            processed_fps: self.frames as f64 / self.seconds.max(1e-9),
            realtime_factor: self.frames as f64 / options.fps / self.seconds.max(1e-9),
            stages: self.stages,
            seconds: self.seconds,
        }
    }
}
