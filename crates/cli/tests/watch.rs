//! `maskid watch` end to end: clips made here from the sample photos (people walking past,
//! one masked, one never enrolled), encoded by FFmpeg with real codecs, read as files, as a
//! folder of frames and as an HTTP stream served on loopback; and every kind of bad input.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use common::{maskid, sample};
use image::{imageops, RgbImage};
use serde_json::Value;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 360;
const FPS: u32 = 25;
/// Anna walks right over frames 0-49, a stranger walks left over 25-74, masked Bert stands
/// in the middle over 110-159, after a gap longer than a track's even as a live stream's
/// frames arrive (the stranger's track must end, not carry on as Bert's).
const FRAMES: u32 = 160;

/// Live sources drop frames while the recogniser is behind, by design. A test that needs
/// every person named from a stream sent once takes the machine to itself, since the codec
/// tests beside it would starve a 2-core machine; the tests of files share it.
static MACHINE: RwLock<()> = RwLock::new(());

fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A gallery of Anna and Bert, each enrolled from one photo.
fn gallery(dir: &Path) -> PathBuf {
    let gallery = dir.join("people.db");
    for (name, photo) in [("anna", "person_a_1.jpg"), ("bert", "person_b_1.jpg")] {
        let out = maskid(&[
            "enroll",
            "--gallery",
            gallery.to_str().unwrap(),
            "--name",
            name,
            sample(photo).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "enrol {name}: {}", common::stderr(&out));
    }
    gallery
}

/// A photo scaled to `height` pixels.
fn person(path: &Path, height: u32) -> RgbImage {
    let photo = image::open(path).unwrap().to_rgb8();
    let width = photo.width() * height / photo.height();
    imageops::resize(&photo, width, height, imageops::FilterType::Triangle)
}

/// The clip's frames as PNG files (`0000.png`, ...), with Bert wearing a mask drawn on his
/// photo by `maskid mask`.
fn frames(dir: &Path) -> PathBuf {
    let masked_dir = dir.join("masked");
    let out = maskid(&[
        "mask",
        sample("person_b_2.jpg").to_str().unwrap(),
        "-o",
        masked_dir.to_str().unwrap(),
        "--style",
        "surgical",
        "--coverage",
        "nose",
        "--seed",
        "1",
    ]);
    assert!(out.status.success(), "mask: {}", common::stderr(&out));
    let masked = std::fs::read_dir(&masked_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .expect("a masked photo");
    let anna = person(&sample("person_a_2.jpg"), 300);
    let stranger = person(&sample("impostor_1.jpg"), 300);
    let bert = person(&masked, 320);
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..FRAMES {
        let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, image::Rgb([96, 110, 120]));
        if i < 50 {
            imageops::overlay(&mut canvas, &anna, 10 + 3 * i64::from(i), 30);
        }
        if (25..75).contains(&i) {
            imageops::overlay(&mut canvas, &stranger, 380 - 2 * i64::from(i - 25), 40);
        }
        if (110..160).contains(&i) {
            imageops::overlay(&mut canvas, &bert, 190, 20);
        }
        canvas.save(frames.join(format!("{i:04}.png"))).unwrap();
    }
    frames
}

/// The frames encoded by FFmpeg into `name` with `codec`'s arguments.
fn encode(frames: &Path, out: &Path, codec: &[&str]) -> PathBuf {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-framerate", &FPS.to_string(), "-i"])
        .arg(frames.join("%04d.png"))
        .args(codec)
        .arg(out)
        .status()
        .expect("ffmpeg (scripts/setup-ffmpeg installs it)");
    assert!(status.success(), "encoding {}", out.display());
    out.to_path_buf()
}

fn watch(args: &[&str]) -> Output {
    let out = maskid(&[&["watch"], args].concat());
    eprintln!("{}", common::stderr(&out));
    out
}

fn events(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event: {l}: {e}")))
        .collect()
}

fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Anna, the stranger and masked Bert each get one track; Anna and Bert are named within a
/// second of coming into view, the stranger never is, and nobody else is named.
fn assert_the_clip_is_told_right(events: &[Value], frames: u64, source: &str) {
    assert_eq!(events.first().unwrap()["event"], "started", "{source}");
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished", "{source}");
    assert_eq!(finished["frames"], frames, "{source}");
    let started = of_kind(events, "track_started");
    let ended = of_kind(events, "track_ended");
    assert_eq!(started.len(), 3, "{source}: one track per person: {started:?}");
    assert_eq!(ended.len(), 3, "{source}");
    let mut names: Vec<Option<&str>> = ended.iter().map(|e| e["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, vec![None, Some("anna"), Some("bert")], "{source}: {ended:?}");
    for identified in of_kind(events, "identified") {
        let track = identified["track"].as_u64().unwrap();
        let start = started.iter().find(|s| s["track"] == track).unwrap();
        let delay = identified["time"].as_f64().unwrap() - start["time"].as_f64().unwrap();
        assert!(delay <= 1.0, "{source}: named {delay:.2} s after appearing: {identified}");
        assert!(identified["similarity"].as_f64().unwrap() >= identified["threshold"].as_f64().unwrap());
        let who = identified["name"].as_str().unwrap();
        let expected_mask = if who == "bert" { "worn" } else { "none" };
        assert_eq!(identified["mask"]["state"], expected_mask, "{source}: {identified}");
    }
}

#[test]
fn files_of_four_codecs_and_a_folder_of_frames_are_tracked_and_identified() {
    let _machine = shared();
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery(dir.path());
    let frames = frames(dir.path());
    let out = watch(&[frames.to_str().unwrap(), "--gallery", gallery.to_str().unwrap(), "--fps", "25"]);
    assert!(out.status.success());
    assert_the_clip_is_told_right(&events(&out), u64::from(FRAMES), "frames");
    for (name, codec) in [
        ("clip.mp4", &["-c:v", "libx264", "-pix_fmt", "yuv420p"][..]),
        ("clip.mkv", &["-c:v", "libx265", "-pix_fmt", "yuv420p", "-x265-params", "log-level=error"][..]),
        ("clip.webm", &["-c:v", "libvpx-vp9", "-b:v", "1M"][..]),
        ("clip.avi", &["-c:v", "mjpeg", "-q:v", "3"][..]),
    ] {
        let clip = encode(&frames, &dir.path().join(name), codec);
        let out = watch(&[clip.to_str().unwrap(), "--gallery", gallery.to_str().unwrap()]);
        assert!(out.status.success(), "{name}");
        let events = events(&out);
        assert_eq!(events[0]["fps"], 25.0, "{name}");
        assert_eq!(events[0]["width"], WIDTH, "{name}");
        assert_the_clip_is_told_right(&events, u64::from(FRAMES), name);
    }

    // The annotated copy has every frame, at the clip's size and rate; the report shows
    // each track with its best face.
    let annotated = dir.path().join("annotated.mp4");
    let report = dir.path().join("report");
    let out = watch(&[
        dir.path().join("clip.mkv").to_str().unwrap(),
        "--gallery",
        gallery.to_str().unwrap(),
        "--annotate",
        annotated.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_the_clip_is_told_right(&events(&out), u64::from(FRAMES), "annotated");
    assert_eq!(video_frames(&annotated), (FRAMES, WIDTH, HEIGHT));
    // Anna's box is drawn green around her face at frame 30 (she is named by then), and the
    // background far from anyone is left as it was.
    let frame = frame_of(&annotated, 30);
    let green = |p: &image::Rgb<u8>| p[1] > 150 && p[0] < 120 && p[2] < 140;
    assert!(frame.pixels().filter(|p| green(p)).count() > 200, "a green box");
    assert!(!green(frame.get_pixel(WIDTH - 5, HEIGHT - 5)));
    let page = std::fs::read_to_string(report.join("index.html")).unwrap();
    assert!(page.contains("anna") && page.contains("bert") && page.contains("nobody enrolled"), "{page}");
    for track in 1..=3 {
        let picture = image::open(report.join(format!("track-{track}.png"))).unwrap();
        assert_eq!(picture.height(), 120);
    }
}

/// (frames, width, height) of a video, counted by decoding it.
fn video_frames(video: &Path) -> (u32, u32, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .unwrap();
    assert!(out.status.success(), "{} is not playable", video.display());
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u32> = text.trim().split(',').map(|f| f.parse().unwrap()).collect();
    (fields[2], fields[0], fields[1])
}

/// Frame `n` of a video, decoded by FFmpeg.
fn frame_of(video: &Path, n: u32) -> RgbImage {
    let png = video.with_extension(format!("{n}.png"));
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(video)
        .args(["-vf", &format!("select=eq(n\\,{n})"), "-frames:v", "1"])
        .arg(&png)
        .status()
        .unwrap();
    assert!(status.success());
    image::open(&png).unwrap().to_rgb8()
}

/// An FFmpeg HTTP server on loopback sending `clip` at its own pace, once.
fn serve(clip: &Path, port: u16) -> Child {
    Command::new("ffmpeg")
        .args(["-v", "error", "-re", "-i"])
        .arg(clip)
        .args(["-c", "copy", "-f", "matroska", "-listen", "1"])
        .arg(format!("http://127.0.0.1:{port}/live.mkv"))
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg")
}

/// The gallery, the clip in Matroska and a server sending it on a free loopback port.
struct Served {
    gallery: PathBuf,
    clip: PathBuf,
    port: u16,
    url: String,
    server: Child,
}

fn served(dir: &Path) -> Served {
    let gallery = gallery(dir);
    let clip = encode(&frames(dir), &dir.join("clip.mkv"), &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let port = free_port();
    let server = serve(&clip, port);
    // Listening before the watch connects (a watch that came too early would retry anyway).
    std::thread::sleep(Duration::from_millis(500));
    Served { gallery, clip, port, url: format!("http://127.0.0.1:{port}/live.mkv"), server }
}

/// Reads events from a running watch until one of `kind` (or the end), returning those read.
fn read_until(lines: &mut impl Iterator<Item = String>, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line).unwrap();
        let done = event["event"] == kind;
        seen.push(event);
        if done {
            break;
        }
    }
    seen
}

#[test]
fn a_stream_that_drops_is_reconnected_and_one_that_stays_away_is_given_up() {
    let _machine = alone();
    let dir = tempfile::tempdir().unwrap();
    let Served { gallery, clip, port, url, server: mut first } = served(dir.path());
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["watch", &url, "--gallery", gallery.to_str().unwrap(), "--reconnect-for", "3", "--quiet"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines().map(Result::unwrap);
    let before = read_until(&mut lines, "stream_lost");
    assert!(first.wait().unwrap().success());
    assert_eq!(before.last().unwrap()["event"], "stream_lost", "{before:?}");
    let names: Vec<&str> = of_kind(&before, "identified").iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.contains(&"anna") && names.contains(&"bert"), "live frames identified: {names:?}");
    // The tracks end when the stream drops: none is carried across the gap.
    assert_eq!(of_kind(&before, "track_started").len(), of_kind(&before, "track_ended").len());

    // The server comes back on the same address: the watch picks it up again.
    let mut second = serve(&clip, port);
    let again = read_until(&mut lines, "stream_resumed");
    assert_eq!(again.last().unwrap()["event"], "stream_resumed", "{again:?}");
    let during = read_until(&mut lines, "track_started");
    assert_eq!(during.last().unwrap()["event"], "track_started");
    assert!(second.wait().unwrap().success());

    // Then it stays away: after --reconnect-for without a frame the watch gives up, with its
    // tracks ended and its totals written, and says so.
    let started = Instant::now();
    let rest: Vec<Value> = lines.map(|l| serde_json::from_str(&l).unwrap()).collect();
    let status = watcher.wait().unwrap();
    assert!(!status.success(), "a stream given up is a failure");
    assert!(started.elapsed() < Duration::from_secs(30), "gave up in time");
    assert_eq!(rest.last().unwrap()["event"], "finished", "{rest:?}");
}

/// A free port on loopback (TCP and, for RTP, the UDP pair above it unlikely taken).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_rtsp_stream_as_cameras_send_it_is_watched() {
    let _machine = alone();
    // Debian's rtsp-server-perl relays what FFmpeg pushes to it (as a camera or an encoder
    // would publish) to RTSP clients; scripts/setup-ffmpeg installs it for the tests.
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery(dir.path());
    // A key frame every second, as cameras send: a client joining mid-stream waits at most that.
    let clip = encode(
        &frames(dir.path()),
        &dir.path().join("camera.mkv"),
        &["-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p"],
    );
    let (clients, sources) = (free_port(), free_port());
    let rtp = 20_000 + (std::process::id() % 20_000) as u16;
    let _server = Killed(
        Command::new("rtsp-server-perl")
            .args(["--clientport", &clients.to_string(), "--serverport", &sources.to_string()])
            .args(["--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1"])
            .args(["--rtp_start_port", &rtp.to_string(), "--loglevel", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rtsp-server-perl (scripts/setup-ffmpeg installs it)"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let _camera = Killed(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "3", "-i"])
            .arg(&clip)
            .args(["-c", "copy", "-f", "rtsp"])
            .arg(format!("rtsp://127.0.0.1:{sources}/door"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let url = format!("rtsp://127.0.0.1:{clients}/door");
    let mut watcher = Killed(
        Command::new(env!("CARGO_BIN_EXE_maskid"))
            .args(["watch", &url, "--gallery", gallery.to_str().unwrap(), "--quiet"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(watcher.0.stdout.take().unwrap()).lines().map(Result::unwrap);
    let mut names = std::collections::BTreeSet::new();
    let started = Instant::now();
    for line in lines.by_ref() {
        let event: Value = serde_json::from_str(&line).unwrap();
        if event["event"] == "identified" {
            names.extend(event["name"].as_str().map(String::from));
        }
        if names.len() == 2 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    assert_eq!(names.into_iter().collect::<Vec<_>>(), ["anna", "bert"], "both people named from the RTSP stream");
    let interrupt = Command::new("kill").args(["-TERM", &watcher.0.id().to_string()]).status().unwrap();
    assert!(interrupt.success());
    let rest: Vec<Value> = lines.map(|l| serde_json::from_str(&l).unwrap()).collect();
    assert!(watcher.0.wait().unwrap().success());
    assert_eq!(rest.last().unwrap()["stopped"], true, "{rest:?}");
}

#[test]
fn ctrl_c_ends_the_tracks_and_writes_the_totals() {
    let _machine = shared();
    let dir = tempfile::tempdir().unwrap();
    let Served { gallery, url, mut server, .. } = served(dir.path());
    let events_file = dir.path().join("events.jsonl");
    let annotated = dir.path().join("so-far.mkv");
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_maskid"))
        .args(["watch", &url, "--gallery", gallery.to_str().unwrap()])
        .args(["--events", events_file.to_str().unwrap(), "--annotate", annotated.to_str().unwrap(), "--quiet"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The text lines on stdout: wait for the first track, then interrupt.
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines().map(Result::unwrap);
    assert!(lines.by_ref().any(|l| l.contains("track 1: a face")), "a track started");
    let interrupt = Command::new("kill").args(["-INT", &watcher.id().to_string()]).status().unwrap();
    assert!(interrupt.success());
    let rest: Vec<String> = lines.collect();
    assert!(watcher.wait().unwrap().success(), "a stop asked for is a success");
    let _ = server.kill();
    let _ = server.wait();
    assert!(rest.iter().any(|l| l.contains("track 1 ended")), "{rest:?}");
    let written: Vec<Value> =
        std::fs::read_to_string(&events_file).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let last = written.last().unwrap();
    assert_eq!(last["event"], "finished");
    assert_eq!(last["stopped"], true);
    let frames = last["frames"].as_u64().unwrap();
    assert!(frames < u64::from(FRAMES), "stopped before the end");
    // The annotated copy was closed properly: playable, with every frame seen.
    assert_eq!(u64::from(video_frames(&annotated).0), frames);
}

#[test]
fn bad_video_input_gets_a_clear_error_or_is_read_as_far_as_it_goes() {
    let _machine = shared();
    let dir = tempfile::tempdir().unwrap();
    let gallery = gallery(dir.path());
    let g = gallery.to_str().unwrap();
    let frames = frames(dir.path());
    let run = |source: &Path| watch(&[source.to_str().unwrap(), "--gallery", g]);

    // Not a video at all.
    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(100)).unwrap();
    let out = run(&text);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("not a video maskid can read"), "{}", common::stderr(&out));
    assert!(out.stdout.is_empty(), "no events for a source that never opened");

    // An mp4 cut before its index (written last): nothing to decode, said so.
    let mp4 = encode(&frames, &dir.path().join("clip.mp4"), &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let bytes = std::fs::read(&mp4).unwrap();
    let cut = dir.path().join("cut.mp4");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&cut);
    assert_eq!(out.status.code(), Some(2), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("cut.mp4"));

    // A Matroska file cut in half: read to where it stops.
    let mkv = encode(&frames, &dir.path().join("clip.mkv"), &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let bytes = std::fs::read(&mkv).unwrap();
    let half = dir.path().join("half.mkv");
    std::fs::write(&half, &bytes[..bytes.len() / 2]).unwrap();
    let out = run(&half);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let read = events(&out).last().unwrap()["frames"].as_u64().unwrap();
    assert!(read > 20 && read < u64::from(FRAMES), "{read} frames of half a file");

    // Garbage over packets in the middle of an MPEG-TS file (the container of broadcast and
    // camera streams, which resyncs at the next packet): the decoder complains, maskid says so
    // and goes on.
    let ts = encode(&frames, &dir.path().join("clip.ts"), &["-c:v", "libx264", "-pix_fmt", "yuv420p"]);
    let mut bytes = std::fs::read(&ts).unwrap();
    let middle = bytes.len() / 2;
    let mut state = 7u32;
    for b in &mut bytes[middle..middle + 512] {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        *b = (state >> 16) as u8;
    }
    let damaged = dir.path().join("damaged.ts");
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&damaged);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let told = events(&out);
    assert!(!of_kind(&told, "damaged").is_empty(), "the damage is reported");
    let read = told.last().unwrap()["frames"].as_u64().unwrap();
    assert!(read > 100, "the rest is read: {read} frames");

    // A codec FFmpeg does not know (the Matroska codec id renamed): a clear error, no hang.
    let mut bytes = std::fs::read(&mkv).unwrap();
    let id = b"V_MPEG4/ISO/AVC";
    let at = bytes.windows(id.len()).position(|w| w == id).expect("the codec id");
    bytes[at..at + id.len()].copy_from_slice(b"V_MASKID/NOSUCH");
    let unknown = dir.path().join("unknown.mkv");
    std::fs::write(&unknown, &bytes).unwrap();
    let out = run(&unknown);
    assert_eq!(out.status.code(), Some(2));
    assert!(common::stderr(&out).contains("unknown.mkv"), "{}", common::stderr(&out));

    // A folder with a broken frame: that frame is reported, the others read.
    std::fs::write(frames.join("0010.png"), b"\x89PNG\r\n\x1a\n broken").unwrap();
    let out = run(&frames);
    assert!(out.status.success());
    let told = events(&out);
    assert_eq!(of_kind(&told, "damaged").len(), 1);
    assert_eq!(told.last().unwrap()["frames"], u64::from(FRAMES) - 1);

    // No such file, an empty folder, a URL scheme that could read local files.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    for (source, says) in [
        ("/nonexistent/clip.mp4", "No such file"),
        (empty.to_str().unwrap(), "no frames"),
        ("file:///etc/passwd", "streams are read over"),
    ] {
        let out = watch(&[source, "--gallery", g]);
        assert_eq!(out.status.code(), Some(2), "{source}");
        assert!(common::stderr(&out).contains(says), "{source}: {}", common::stderr(&out));
    }
}
