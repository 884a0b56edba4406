//! Where frames come from: a video file, a folder of frames, a stream URL or a camera; and
//! the reader thread that decodes them ahead of the recogniser, reconnects to streams that
//! drop, and keeps only the newest frames of a live source it cannot keep up with.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use crate::ffmpeg::{probe, Decoder, DecoderHandle, Probe};
use crate::{Error, Result};

/// Stream URL schemes FFmpeg is asked to open (others are refused rather than handed to it:
/// `file:`, `concat:` or `subfile:` would read local files by another name).
const STREAM_SCHEMES: [&str; 8] = ["rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "srt"];

/// Frame file extensions read from a folder of frames.
const FRAME_EXTENSIONS: [&str; 6] = ["jpg", "jpeg", "png", "bmp", "webp", "ppm"];

/// A source of frames.
#[derive(Debug, Clone, PartialEq)]
pub enum VideoSource {
    /// A video file FFmpeg decodes (mp4, mkv, avi, webm, ...).
    File(PathBuf),
    /// A folder of still frames, in file-name order.
    Frames(PathBuf),
    /// A stream URL (RTSP, HTTP, RTMP, UDP, SRT).
    Stream(String),
    /// A V4L2 camera device (`/dev/video0`).
    Camera(PathBuf),
}

impl VideoSource {
    /// What the command line gave: a URL, a `/dev/video*` device, a folder or a file.
    pub fn parse(given: &str) -> Result<Self> {
        if let Some((scheme, _)) = given.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if STREAM_SCHEMES.contains(&scheme.as_str()) {
                return Ok(VideoSource::Stream(given.to_string()));
            }
            return Err(Error::Source(format!(
                "{given}: streams are read over {}, not {scheme}",
                STREAM_SCHEMES.join(", ")
            )));
        }
        let path = PathBuf::from(given);
        if given.starts_with("/dev/video") {
            return Ok(VideoSource::Camera(path));
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => Ok(VideoSource::Frames(path)),
            Ok(_) => Ok(VideoSource::File(path)),
            Err(e) => Err(Error::Source(format!("{given}: {e}"))),
        }
    }

    /// A source that runs on its own time (a stream or a camera): frames it sends while the
    /// recogniser is busy are dropped rather than queued, and it is reconnected when it drops.
    pub fn live(&self) -> bool {
        matches!(self, VideoSource::Stream(_) | VideoSource::Camera(_))
    }

    /// How events and errors name it.
    pub fn name(&self) -> String {
        match self {
            VideoSource::File(p) | VideoSource::Frames(p) | VideoSource::Camera(p) => p.display().to_string(),
            VideoSource::Stream(url) => url.clone(),
        }
    }

    /// FFmpeg's input arguments for it (not for a folder of frames).
    fn ffmpeg_input(&self, stall: Duration) -> Vec<OsString> {
        let micros = stall.as_micros().to_string();
        let mut args: Vec<OsString> = Vec::new();
        match self {
            VideoSource::File(path) => args.extend(["-i".into(), path.as_os_str().to_owned()]),
            VideoSource::Camera(path) => {
                args.extend(["-f".into(), "v4l2".into(), "-i".into(), path.as_os_str().to_owned()])
            }
            VideoSource::Stream(url) => {
                let scheme = url.split_once("://").map_or("", |(s, _)| s).to_ascii_lowercase();
                if scheme.starts_with("rtsp") {
                    // FFmpeg's own transport choice (UDP, then TCP when no UDP packet comes:
                    // some servers offer only one of them), and a socket timeout so a server
                    // that goes quiet ends the read instead of hanging it.
                    args.extend(["-timeout", &micros].map(OsString::from));
                } else if scheme.starts_with("http") {
                    // Read at the stream's own pace (`-re`): HTTP sources (Matroska or MPEG-TS
                    // over HTTP, HLS segments) arrive in bursts of seconds, which decoded at
                    // once would overflow the two frames in flight and be dropped as if
                    // maskid were behind. Over TCP the sender just waits; RTSP, UDP and SRT
                    // are paced by their senders, and slowing their reads would lose packets.
                    args.extend(["-re", "-rw_timeout", &micros].map(OsString::from));
                }
                args.extend(["-i".into(), url.into()]);
            }
            VideoSource::Frames(_) => unreachable!("BUG: a folder of frames is read without FFmpeg"),
        }
        args
    }
}

/// One decoded frame.
pub struct Frame {
    /// 0 for the first frame of the watch (counting across reconnections).
    pub index: u64,
    /// Seconds: from the file's start at its frame rate, or since the watch began for a live
    /// source.
    pub time_s: f64,
    /// The picture.
    pub image: RgbImage,
}

/// What the reader thread sends.
pub enum Delivery {
    /// A frame.
    Frame(Frame),
    /// A live source stopped sending; reconnecting after `retry_in`.
    Lost {
        /// FFmpeg's last words, or why the reader gave up on it.
        why: String,
        /// Wait before the next try.
        retry_in: Duration,
    },
    /// A live source is sending again.
    Resumed,
    /// The decoder reported damage but went on: its message, and the frames decoded by then
    /// (FFmpeg decodes a few frames ahead, so the damage is near, not at, that frame).
    Damaged {
        /// Frames decoded so far.
        decoded: u64,
        /// What it said.
        why: String,
    },
    /// The source ended: `Ok` at a clean end, else why it could not go on.
    End(Result<()>),
}

/// How the reader treats its source.
#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    /// Frames a second of a folder of frames.
    pub frames_fps: f64,
    /// A live source silent this long is reconnected.
    pub stall: Duration,
    /// A live source is given up after this long without a frame.
    pub reconnect_for: Duration,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self { frames_fps: 25.0, stall: Duration::from_secs(10), reconnect_for: Duration::from_secs(60) }
    }
}

/// Frames decoded ahead of the recogniser on their own thread.
pub struct FrameReader {
    deliveries: Receiver<Delivery>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    decoder: Arc<std::sync::Mutex<Option<DecoderHandle>>>,
    /// What ffprobe said of a file.
    pub probe: Option<Probe>,
    /// Frames in the source when known (a file's count, or a folder's).
    pub total_frames: Option<u64>,
    live: bool,
    stall: Duration,
}

impl FrameReader {
    /// Starts reading `source`. A file is probed first, so a file that is not a video fails
    /// here, before any event.
    pub fn start(source: &VideoSource, options: ReadOptions) -> Result<Self> {
        if !(options.frames_fps > 0.0 && options.frames_fps.is_finite()) {
            return Err(Error::Source(format!("--fps must be positive, got {}", options.frames_fps)));
        }
        // Two frames in flight: decoding overlaps recognition, and memory stays bounded
        // however long the source runs.
        let (send, deliveries) = mpsc::sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicU64::new(0));
        let decoder = Arc::new(std::sync::Mutex::new(None));
        let mut reader = Self {
            deliveries,
            stop: Arc::clone(&stop),
            dropped: Arc::clone(&dropped),
            decoder: Arc::clone(&decoder),
            probe: None,
            total_frames: None,
            live: source.live(),
            stall: options.stall,
        };
        let out = Sender { send, stop, dropped, live: source.live() };
        match source {
            VideoSource::Frames(dir) => {
                let files = frame_files(dir)?;
                reader.total_frames = Some(files.len() as u64);
                std::thread::spawn(move || read_frames(files, options.frames_fps, out));
            }
            VideoSource::File(path) => {
                let probe = probe(path)?;
                reader.total_frames = probe.frames.or_else(|| probe.duration_s.map(|d| (d * probe.fps).round() as u64));
                let (fps, source) = (probe.fps, source.clone());
                reader.probe = Some(probe);
                std::thread::spawn(move || read_file(&source, fps, options, decoder, out));
            }
            VideoSource::Stream(_) | VideoSource::Camera(_) => {
                let source = source.clone();
                std::thread::spawn(move || read_live(&source, options, decoder, out));
            }
        }
        Ok(reader)
    }

    /// The next delivery; `None` when `wait` passed without one (the caller checks for a stop
    /// and asks again). A live source silent for the stall time is killed here, so its reader
    /// reconnects.
    pub fn next(&self, wait: Duration) -> Option<Delivery> {
        let started = Instant::now();
        loop {
            match self.deliveries.recv_timeout(wait.min(self.stall)) {
                Ok(delivery) => return Some(delivery),
                Err(RecvTimeoutError::Disconnected) => {
                    return Some(Delivery::End(Err(Error::Source("the frame reader stopped".into()))))
                }
                Err(RecvTimeoutError::Timeout) if started.elapsed() >= self.stall && self.live => {
                    if let Some(decoder) = self.decoder.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
                        decoder.kill();
                    }
                    return None;
                }
                Err(RecvTimeoutError::Timeout) if started.elapsed() >= wait => return None,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Frames a live source sent while the recogniser was busy, dropped.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(decoder) = self.decoder.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            decoder.kill();
        }
    }
}

/// The reader thread's end of the channel.
struct Sender {
    send: SyncSender<Delivery>,
    stop: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    live: bool,
}

impl Sender {
    /// Sends a frame: a file's waits for room, a live source's is dropped when the
    /// recogniser is behind. `false` once the watch has stopped.
    fn frame(&self, frame: Frame) -> bool {
        if self.live {
            match self.send.try_send(Delivery::Frame(frame)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
            !self.stop.load(Ordering::Relaxed)
        } else {
            self.other(Delivery::Frame(frame))
        }
    }

    /// Sends anything else, waiting for room.
    fn other(&self, delivery: Delivery) -> bool {
        self.send.send(delivery).is_ok() && !self.stop.load(Ordering::Relaxed)
    }
}

/// The frames of a folder, in file-name order.
fn frame_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Source(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| FRAME_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Source(format!(
            "{}: no frames ({} files) in this folder",
            dir.display(),
            FRAME_EXTENSIONS.join(", ")
        )));
    }
    Ok(files)
}

fn read_frames(files: Vec<PathBuf>, fps: f64, out: Sender) {
    for (index, file) in files.iter().enumerate() {
        let image = match maskid_face::load_image(file, crate::ffmpeg::MAX_FRAME_PIXELS) {
            Ok(image) => image,
            // One unreadable frame of a folder is damage, not the end.
            Err(e) => {
                let why = format!("{}: {e}", file.display());
                if !out.other(Delivery::Damaged { decoded: index as u64, why }) {
                    return;
                }
                continue;
            }
        };
        let frame = Frame { index: index as u64, time_s: index as f64 / fps, image };
        if !out.frame(frame) {
            return;
        }
    }
    out.other(Delivery::End(Ok(())));
}

fn read_file(
    source: &VideoSource,
    fps: f64,
    options: ReadOptions,
    slot: Arc<std::sync::Mutex<Option<DecoderHandle>>>,
    out: Sender,
) {
    let mut decoder = match Decoder::spawn(&source.ffmpeg_input(options.stall), &source.name()) {
        Ok(d) => d,
        Err(e) => {
            out.other(Delivery::End(Err(e)));
            return;
        }
    };
    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(decoder.handle());
    let mut index = 0u64;
    let mut complaints = Complaints::default();
    loop {
        match decoder.next_frame() {
            Ok(Some(image)) => {
                if !out.frame(Frame { index, time_s: index as f64 / fps, image }) {
                    return;
                }
                index += 1;
            }
            Ok(None) => break,
            Err(e) => {
                out.other(Delivery::End(Err(e)));
                return;
            }
        }
        if !complaints.forward(&decoder, index, &out) {
            return;
        }
    }
    let ended = decoder.finish();
    let ended = match ended {
        // A file that decoded to nothing is not a video maskid can read.
        Ok(()) if index == 0 => Err(Error::Decode { input: source.name(), why: "no frame could be decoded".into() }),
        // Frames came and then FFmpeg failed: a truncated or damaged file, read as far as it goes.
        Err(e) if index > 0 => {
            if !out.other(Delivery::Damaged { decoded: index, why: e.to_string() }) {
                return;
            }
            Ok(())
        }
        other => other,
    };
    out.other(Delivery::End(ended));
}

fn read_live(
    source: &VideoSource,
    options: ReadOptions,
    slot: Arc<std::sync::Mutex<Option<DecoderHandle>>>,
    out: Sender,
) {
    let started = Instant::now();
    let mut index = 0u64;
    let mut last_frame = Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut lost = false;
    loop {
        let why = match Decoder::spawn(&source.ffmpeg_input(options.stall), &source.name()) {
            Ok(mut decoder) => {
                let mut complaints = Complaints::default();
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(decoder.handle());
                loop {
                    match decoder.next_frame() {
                        Ok(Some(image)) => {
                            if lost {
                                lost = false;
                                backoff = Duration::from_millis(500);
                                if !out.other(Delivery::Resumed) {
                                    return;
                                }
                            }
                            last_frame = Instant::now();
                            let frame = Frame { index, time_s: started.elapsed().as_secs_f64(), image };
                            index += 1;
                            if !out.frame(frame) || !complaints.forward(&decoder, index, &out) {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = decoder.finish();
                            out.other(Delivery::End(Err(e)));
                            return;
                        }
                    }
                }
                match decoder.finish() {
                    Ok(()) => "the stream ended".to_string(),
                    Err(e) => e.to_string(),
                }
            }
            Err(e @ Error::NoFfmpeg { .. }) => {
                out.other(Delivery::End(Err(e)));
                return;
            }
            Err(e) => e.to_string(),
        };
        if out.stop.load(Ordering::Relaxed) {
            return;
        }
        if last_frame.elapsed() >= options.reconnect_for {
            let why = format!("no frame for {:.0} s; last: {why}", last_frame.elapsed().as_secs_f64());
            out.other(Delivery::End(Err(Error::Decode { input: source.name(), why })));
            return;
        }
        lost = true;
        if !out.other(Delivery::Lost { why, retry_in: backoff }) {
            return;
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(8));
    }
}

/// FFmpeg's complaints about a source it goes on decoding (a corrupt packet, a damaged
/// frame), passed on as [`Delivery::Damaged`]. A complaint among the last few is not passed
/// on again: a burst (a stream joined between key frames, one message per decoder thread)
/// becomes a few events, not hundreds.
#[derive(Default)]
struct Complaints {
    seen: u64,
    recent: std::collections::VecDeque<String>,
}

/// Distinct complaints remembered.
const RECENT_COMPLAINTS: usize = 8;

impl Complaints {
    /// Sends the decoder's new complaints; `false` once the watch has stopped.
    fn forward(&mut self, decoder: &Decoder, decoded: u64, out: &Sender) -> bool {
        for said in decoder.messages_since(&mut self.seen) {
            let why = without_address(&said);
            if self.recent.contains(&why) {
                continue;
            }
            if self.recent.len() == RECENT_COMPLAINTS {
                self.recent.pop_front();
            }
            self.recent.push_back(why.clone());
            if !out.other(Delivery::Damaged { decoded, why }) {
                return false;
            }
        }
        true
    }
}

/// `[h264 @ 0x55d5...] error while decoding` -> `[h264] error while decoding`: FFmpeg names
/// the decoder instance by its address, which differs between its threads.
fn without_address(message: &str) -> String {
    match (message.find(" @ 0x"), message.find(']')) {
        (Some(at), Some(end)) if at < end => format!("{}{}", &message[..at], &message[end..]),
        _ => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complaints_lose_the_decoders_address() {
        assert_eq!(
            without_address("[h264 @ 0x55d539262480] mmco: unref short failure"),
            "[h264] mmco: unref short failure"
        );
        assert_eq!(without_address("clip.mkv: Invalid data"), "clip.mkv: Invalid data");
    }
}
