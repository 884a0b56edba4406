//! FFmpeg as child processes: `ffprobe` describes a file, `ffmpeg` decodes any source it
//! knows (files, RTSP/HTTP streams, V4L2 cameras) into a pipe of PPM frames.
//!
//! Why the programs and not bindings to libav*: the bindings follow libav's major versions
//! (Debian 12 ships 5.1, others 6 or 7) and need bindgen and clang in every build; a decoder
//! that crashes on a hostile file takes down only its own process, which maskid notices and
//! reports; and the same two programs a user already has from their distribution do every
//! format and protocol. The cost is one copy of each frame through a pipe: about 3 ms for a
//! 1280x720 frame, small beside detection.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use image::RgbImage;
use serde::Deserialize;

use crate::{Error, Result};

/// Lines of FFmpeg's own messages kept for an error report.
const STDERR_LINES: usize = 8;

/// Largest frame accepted from the decoder, in pixels (8K): a corrupt header must not make
/// maskid allocate gigabytes.
pub const MAX_FRAME_PIXELS: u64 = 7680 * 4320;

/// The program to run: `$MASKID_FFMPEG` / `$MASKID_FFPROBE` when set, else the name on PATH.
fn program(name: &str) -> Result<PathBuf> {
    let var = format!("MASKID_{}", name.to_uppercase());
    if let Some(given) = std::env::var_os(&var) {
        return Ok(PathBuf::from(given));
    }
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|p| p.is_file());
    found.ok_or_else(|| Error::NoFfmpeg { program: name.to_string(), variable: var })
}

/// What `ffprobe` says of a file's first video stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The codec's short name (`h264`, `hevc`, `vp9`, `mjpeg`, ...).
    pub codec: String,
    /// Frame size in pixels.
    pub width: u32,
    /// Frame size in pixels.
    pub height: u32,
    /// Frames a second (the stream's average rate).
    pub fps: f64,
    /// Frames in the file, when the container says.
    pub frames: Option<u64>,
    /// Length in seconds, when known.
    pub duration_s: Option<f64>,
}

#[derive(Deserialize)]
struct ProbeOutput {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_name: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    nb_frames: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// `"30000/1001"` -> 29.97; `None` for `0/0` and the like.
fn rate(text: &str) -> Option<f64> {
    let (num, den) = text.split_once('/').unwrap_or((text, "1"));
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then_some(num / den)
}

/// Describes a video file; an error that says so when it is not one.
pub fn probe(path: &Path) -> Result<Probe> {
    let output = Command::new(program("ffprobe")?)
        .args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .arg("stream=codec_name,width,height,avg_frame_rate,r_frame_rate,nb_frames:format=duration")
        .args(["-of", "json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::Spawn { program: "ffprobe".into(), source: e })?;
    let said = String::from_utf8_lossy(&output.stderr).trim().replace('\n', "; ");
    let not_video = |why: String| Error::NotVideo { path: path.to_path_buf(), why };
    if !output.status.success() {
        return Err(not_video(if said.is_empty() { "ffprobe could not read it".into() } else { said }));
    }
    let parsed: ProbeOutput =
        serde_json::from_slice(&output.stdout).map_err(|e| not_video(format!("ffprobe's answer: {e}")))?;
    let Some(stream) = parsed.streams.into_iter().next() else {
        return Err(not_video("it has no video stream".into()));
    };
    let (Some(width), Some(height)) = (stream.width, stream.height) else {
        return Err(not_video("its video stream has no frame size".into()));
    };
    let fps = [stream.avg_frame_rate, stream.r_frame_rate].into_iter().flatten().find_map(|r| rate(&r));
    Ok(Probe {
        codec: stream.codec_name.unwrap_or_else(|| "unknown".into()),
        width,
        height,
        // A still image in a video container has no rate; 25 is FFmpeg's own default.
        fps: fps.unwrap_or(25.0),
        frames: stream.nb_frames.and_then(|n| n.parse().ok()).filter(|&n| n > 0),
        duration_s: parsed.format.and_then(|f| f.duration).and_then(|d| d.parse().ok()),
    })
}

/// Drains FFmpeg's messages as they come (a full stderr pipe would stall it), keeping the
/// last few for error reports.
fn drain(stderr: ChildStderr) -> Messages {
    let said = Arc::new(Mutex::new(Said::default()));
    let kept = Arc::clone(&said);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(std::result::Result::ok) {
            let mut kept = kept.lock().unwrap_or_else(|e| e.into_inner());
            if kept.last.len() == STDERR_LINES {
                kept.last.remove(0);
            }
            kept.last.push(line);
            kept.lines += 1;
        }
    });
    Messages { said, reader: Some(reader) }
}

/// A child's messages, kept by the thread that drains its stderr.
struct Messages {
    said: Arc<Mutex<Said>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Messages {
    /// The last few so far, joined.
    fn so_far(&self) -> String {
        self.said.lock().unwrap_or_else(|e| e.into_inner()).last.join("; ")
    }

    /// The messages after the first `seen` (of a burst, only the last few are kept), moving
    /// `seen` past them.
    fn since(&self, seen: &mut u64) -> Vec<String> {
        let said = self.said.lock().unwrap_or_else(|e| e.into_inner());
        let new = said.lines.saturating_sub(*seen).min(said.last.len() as u64) as usize;
        *seen = said.lines;
        said.last[said.last.len() - new..].to_vec()
    }

    /// The last few, once the child has exited: the draining thread ends at its stderr's
    /// end and is waited for, so none of the child's last words is missed.
    fn after_exit(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.so_far()
    }
}

/// A running `ffmpeg` that decodes one source into PPM frames on its stdout.
pub struct Decoder {
    child: Arc<Mutex<Child>>,
    frames: BufReader<ChildStdout>,
    messages: Messages,
    source: String,
}

/// FFmpeg's last messages, and how many it has written in all.
#[derive(Default)]
struct Said {
    lines: u64,
    last: Vec<String>,
}

/// A handle that stops a [`Decoder`] from another thread (a watchdog).
#[derive(Clone)]
pub struct DecoderHandle(Arc<Mutex<Child>>);

impl DecoderHandle {
    /// Kills the decoder: its reader sees the end of the pipe.
    pub fn kill(&self) {
        let mut child = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = child.kill();
    }
}

impl Decoder {
    /// Starts `ffmpeg` on `input` (the arguments before and including `-i SOURCE`); `source`
    /// names it in errors.
    pub fn spawn(input: &[OsString], source: &str) -> Result<Self> {
        let mut child = Command::new(program("ffmpeg")?)
            // Warnings too: a corrupt packet FFmpeg skips is only a warning, and a clean
            // file gives none.
            .args(["-nostdin", "-hide_banner", "-loglevel", "warning"])
            .args(input)
            // Every decoded frame once, as it comes (no duplicated or dropped frames to
            // keep a constant rate), to PPM: each frame carries its size, so a stream that
            // changes resolution mid-way still parses.
            .args(["-an", "-sn", "-fps_mode", "passthrough", "-f", "image2pipe", "-c:v", "ppm", "-"])
            // Its own process group: Ctrl-C in a terminal reaches maskid alone, which then
            // stops the decoder itself (else the decoder's end would read as a dropped stream).
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn { program: "ffmpeg".into(), source: e })?;
        let frames = BufReader::with_capacity(1 << 20, child.stdout.take().expect("BUG: stdout piped"));
        let messages = drain(child.stderr.take().expect("BUG: stderr piped"));
        Ok(Self { child: Arc::new(Mutex::new(child)), frames, messages, source: source.to_string() })
    }

    /// A handle that can kill this decoder from elsewhere.
    pub fn handle(&self) -> DecoderHandle {
        DecoderHandle(Arc::clone(&self.child))
    }

    /// The next frame; `None` at the end of the pipe (the source ended, or FFmpeg stopped:
    /// [`Decoder::finish`] tells which).
    pub fn next_frame(&mut self) -> Result<Option<RgbImage>> {
        let Some((width, height)) = self.header()? else {
            return Ok(None);
        };
        let mut rgb = vec![0u8; width as usize * height as usize * 3];
        match self.frames.read_exact(&mut rgb) {
            Ok(()) => Ok(Some(RgbImage::from_raw(width, height, rgb).expect("BUG: buffer sized to the frame"))),
            // Cut off mid-frame: FFmpeg was stopped; the frame is lost, the rest reported.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(self.broken(e.to_string())),
        }
    }

    /// Reads `P6 <width> <height> 255` and the one whitespace after it; `None` at a clean end.
    fn header(&mut self) -> Result<Option<(u32, u32)>> {
        let mut fields = Vec::with_capacity(4);
        let mut field = Vec::new();
        loop {
            let mut byte = [0u8];
            match self.frames.read(&mut byte) {
                // The end, between frames or (FFmpeg stopped) within a header.
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.broken(e.to_string())),
            }
            if byte[0].is_ascii_whitespace() {
                if !field.is_empty() {
                    fields.push(String::from_utf8_lossy(&field).into_owned());
                    field.clear();
                    if fields.len() == 4 {
                        break;
                    }
                }
            } else if field.len() < 16 {
                field.push(byte[0]);
            } else {
                return Err(self.broken("a frame header that is not PPM".into()));
            }
        }
        let number = |s: &str| s.parse::<u32>().ok().filter(|&n| n > 0);
        match (fields[0].as_str(), number(&fields[1]), number(&fields[2]), fields[3].as_str()) {
            ("P6", Some(w), Some(h), "255") if u64::from(w) * u64::from(h) <= MAX_FRAME_PIXELS => Ok(Some((w, h))),
            ("P6", Some(w), Some(h), "255") => {
                Err(self.broken(format!("a {w}x{h} frame, larger than the {MAX_FRAME_PIXELS}-pixel limit")))
            }
            _ => Err(self.broken(format!("a frame header that is not 8-bit PPM: {fields:?}"))),
        }
    }

    fn broken(&self, why: String) -> Error {
        Error::Decode { input: self.source.clone(), why }
    }

    /// Waits for FFmpeg to exit: an error with its last messages when it failed.
    pub fn finish(mut self) -> Result<()> {
        let status = {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            child.wait().map_err(|e| Error::Spawn { program: "ffmpeg".into(), source: e })?
        };
        let said = self.messages.after_exit();
        if status.success() {
            return Ok(());
        }
        Err(Error::Decode {
            input: self.source.clone(),
            why: if said.is_empty() { format!("ffmpeg exited with {status}") } else { said },
        })
    }

    /// FFmpeg's messages after the first `seen` (decode warnings of a damaged file; of a
    /// burst, only the last few are kept), and moves `seen` past them.
    pub fn messages_since(&self, seen: &mut u64) -> Vec<String> {
        self.messages.since(seen)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `ffmpeg` encoding the frames written to it into a video file: H.264 in MP4, MKV
/// or MOV, VP9 in WebM, by the file's extension. It writes to a temporary name beside the file
/// and renames it when finished, so a run that is killed leaves no half-written file under
/// the name asked for.
pub struct Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
    size: (u32, u32),
    partial: PathBuf,
    path: PathBuf,
    messages: Messages,
}

impl Encoder {
    /// Starts encoding `width` x `height` frames at `fps` into `path`.
    pub fn create(path: &Path, width: u32, height: u32, fps: f64) -> Result<Self> {
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        let codec: &[&str] = match extension.as_str() {
            "mp4" | "mkv" | "mov" => &["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p"],
            "webm" => &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "2M"],
            _ => return Err(Error::Source(format!("{}: write video as .mp4, .mkv, .mov or .webm", path.display()))),
        };
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let partial = path.with_file_name(format!(".{name}.partial.{extension}"));
        // H.264 in 4:2:0 needs even sizes; an odd last row or column is cropped.
        let (even_w, even_h) = (width & !1, height & !1);
        let mut child = Command::new(program("ffmpeg")?)
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24"])
            .args(["-s", &format!("{width}x{height}"), "-r", &format!("{fps}"), "-i", "-"])
            .args(["-vf", &format!("crop={even_w}:{even_h}:0:0")])
            .args(codec)
            .arg(&partial)
            // Its own process group: on Ctrl-C maskid closes the file itself, playable.
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Spawn { program: "ffmpeg".into(), source: e })?;
        let stdin = child.stdin.take();
        let messages = drain(child.stderr.take().expect("BUG: stderr piped"));
        Ok(Self { child, stdin, size: (width, height), partial, path: path.to_path_buf(), messages })
    }

    /// Appends a frame of the size the encoder was made for.
    pub fn write(&mut self, frame: &image::RgbImage) -> Result<()> {
        if frame.dimensions() != self.size {
            let (w, h) = frame.dimensions();
            return Err(Error::Source(format!(
                "a {w}x{h} frame for a {}x{} video ({})",
                self.size.0,
                self.size.1,
                self.path.display()
            )));
        }
        let stdin = self.stdin.as_mut().expect("BUG: open until finished");
        stdin.write_all(frame.as_raw()).map_err(|e| self.failed(e.to_string()))
    }

    fn failed(&self, why: String) -> Error {
        let said = self.messages.so_far();
        Error::Encode { path: self.path.clone(), why: if said.is_empty() { why } else { said } }
    }

    /// Ends the file and gives it its name.
    pub fn finish(mut self) -> Result<()> {
        drop(self.stdin.take());
        let status = self.child.wait().map_err(|e| Error::Spawn { program: "ffmpeg".into(), source: e })?;
        self.messages.after_exit();
        if !status.success() {
            let _ = std::fs::remove_file(&self.partial);
            return Err(self.failed(format!("ffmpeg exited with {status}")));
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| self.failed(e.to_string()))
    }
}

impl Drop for Encoder {
    fn drop(&mut self) {
        // Unfinished (an error on the way): no file under the name asked for.
        if self.stdin.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_rates_read_as_ffprobe_writes_them() {
        assert_eq!(rate("30/1"), Some(30.0));
        assert!((rate("30000/1001").unwrap() - 29.97).abs() < 0.01);
        assert_eq!(rate("0/0"), None);
        assert_eq!(rate("25"), Some(25.0));
    }
}
