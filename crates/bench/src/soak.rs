//! `maskid bench --soak --data LFW`: `maskid serve` (a child process, as shipped) under
//! minutes of mixed load at a fixed rate, with hostile and careless clients among the
//! callers (28%, see [`Kind::of`]): hang-ups before the answer and in the middle of a body,
//! slow headers, slow and trickling bodies, decompression bombs (a PNG of 8944x8944 16-bit
//! pixels, the header of a 20,000 x 20,000 one, a colour profile inflating to 4 GiB, a
//! 4000x4000 progressive JPEG), HEAD without a key, pipeliners that never read, crowds of
//! idle sockets from one address, bursts of bad keys, megabytes of metadata, metrics
//! scrapes and a transfer coding the service does not decode. Attackers that hold
//! connections come from 127.0.0.2, as another address would. The rest identify (42%), enrol
//! (15%) and verify (15%) real lfw photos. It reports every status by kind, `/healthz`
//! latency sampled every 100 ms throughout, the server's memory, file descriptors and threads
//! against their baseline, and whether every acknowledged enrolment is in the gallery
//! afterwards.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use maskid_face::{png_bomb, png_claiming, png_profile_bomb, progressive_jpeg};
use maskid_gallery::Gallery;
use maskid_pipeline::Progress;
use maskid_service::auth::{new_secret, secret_sha256};
use serde::Serialize;

mod attacks;

use crate::percentile;
use crate::service::open_loop;
use crate::Setup;

/// What a soak run measured.
#[derive(Serialize)]
pub struct Soak {
    /// Seconds of load.
    pub duration_s: f64,
    /// Requests per second started (open loop).
    pub rate_per_s: f64,
    /// Requests started.
    pub requests: usize,
    /// Requests by kind, then by status and error code ("0": no answer: the client hung up
    /// or was cut off).
    pub statuses: BTreeMap<String, BTreeMap<String, usize>>,
    /// Answers 500-599 other than 503 and 501 (the refused transfer coding), and
    /// connections the server never closed on a client that does not read: must be none.
    pub server_errors: usize,
    /// `/healthz` probes sent during the load.
    pub healthz_checks: usize,
    /// Their 99th percentile latency.
    pub healthz_p99_ms: f64,
    /// Their slowest.
    pub healthz_max_ms: f64,
    /// The server's resident memory before the load.
    pub rss_baseline_mib: u64,
    /// Its peak during the load.
    pub rss_peak_mib: u64,
    /// Open file descriptors before the load.
    pub fds_baseline: u64,
    /// And after it.
    pub fds_after: u64,
    /// Threads before the load.
    pub threads_baseline: u64,
    /// And after it.
    pub threads_after: u64,
    /// Enrolments the service answered 201.
    pub enrolments_acknowledged: usize,
    /// Of those, faces found in the gallery after the server stopped.
    pub enrolments_found: usize,
}

/// What one client does.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Identify,
    Enrol,
    Verify,
    HangUp,
    SlowHeaders,
    SlowBody,
    Bomb,
    HugeHeader,
    ProfileBomb,
    ProgressiveJpeg,
    HeadWithoutKey,
    NeverReads,
    IdleCrowd,
    BadKeys,
    TrickleBody,
    HangUpMidBody,
    BigMetadata,
    Metrics,
    GzipChunked,
}

impl Kind {
    /// The kind of request `i`, by a seeded hash: 72% real work, 28% hostile or careless.
    fn of(i: usize) -> Kind {
        let r = (splitmix(i as u64) % 1000) as usize;
        match r {
            0..80 => Kind::HangUp,
            80..100 => Kind::SlowHeaders,
            100..120 => Kind::SlowBody,
            120..135 => Kind::Bomb,
            135..150 => Kind::HugeHeader,
            150..165 => Kind::ProfileBomb,
            165..175 => Kind::ProgressiveJpeg,
            175..185 => Kind::HeadWithoutKey,
            185..195 => Kind::NeverReads,
            195..205 => Kind::IdleCrowd,
            205..225 => Kind::BadKeys,
            225..235 => Kind::TrickleBody,
            235..245 => Kind::HangUpMidBody,
            245..255 => Kind::BigMetadata,
            255..270 => Kind::Metrics,
            270..280 => Kind::GzipChunked,
            280..700 => Kind::Identify,
            700..850 => Kind::Enrol,
            _ => Kind::Verify,
        }
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The server under test and how to reach it.
struct Target {
    child: Child,
    addr: String,
    key: String,
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the soak for `duration` at `rate` requests per second.
pub fn soak(setup: &Setup, lfw: &Path, duration: Duration, rate: f64) -> anyhow::Result<Soak> {
    anyhow::ensure!(rate > 0.0, "the rate must be positive");
    let photos = Photos::read(lfw)?;
    let bomb = png_bomb(8944, 8944);
    let huge_header = png_claiming(20_000, 20_000);
    let profile_bomb = Arc::new(png_profile_bomb(64, 64, 4 << 30));
    let progressive = Arc::new(progressive_jpeg(4000, 4000));
    let dir = tempfile::tempdir()?;
    let gallery = dir.path().join("soak.db");
    let key = new_secret().map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    Gallery::open(&gallery)?.add_key("soak", maskid_gallery::Role::Write, &secret_sha256(&key))?;
    let target = start_server(setup, &gallery, key)?;
    let pid = target.child.id();

    // Warm up every model session, worker thread and the allocator, four requests at a
    // time, then take the baseline.
    std::thread::scope(|scope| {
        let warm_ups: Vec<_> = photos
            .probes
            .chunks(10)
            .take(4)
            .map(|chunk| {
                let target = &target;
                scope.spawn(move || {
                    chunk.iter().try_for_each(|p| request(target, "POST", "/v1/identify", "image/jpeg", p).map(drop))
                })
            })
            .collect();
        warm_ups.into_iter().try_for_each(|w| {
            w.join().map_err(|_| anyhow::anyhow!("a warm-up client panicked"))?.map_err(anyhow::Error::from)
        })
    })?;
    std::thread::sleep(Duration::from_millis(500));
    let (rss_baseline, fds_baseline, threads_baseline) = (rss_mib(pid)?, fds(pid)?, threads(pid)?);

    let requests = (duration.as_secs_f64() * rate) as usize;
    let statuses = Arc::new(Mutex::new(BTreeMap::<String, BTreeMap<String, usize>>::new()));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, i64)>::new()));
    let done = Arc::new(AtomicBool::new(false));
    let target = Arc::new(target);
    let photos = Arc::new(photos);
    let (bomb, huge_header) = (Arc::new(bomb), Arc::new(huge_header));
    let answered = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(200);

    let watch = {
        let (target, done) = (target.clone(), done.clone());
        std::thread::spawn(move || watch_server(&target, pid, &done))
    };
    // Slow clients sleep most of their time: enough threads that they never hold up the rest.
    let clients = {
        let (statuses, acknowledged, answered) = (statuses.clone(), acknowledged.clone(), answered.clone());
        let (target, photos, bomb, huge_header) = (target.clone(), photos.clone(), bomb.clone(), huge_header.clone());
        let (profile_bomb, progressive) = (profile_bomb.clone(), progressive.clone());
        open_loop(96, requests, rate, start, move |i, _| {
            let kind = Kind::of(i);
            let answer = match kind {
                Kind::Identify => exchange(&target, "POST", "/v1/identify", "image/jpeg", photos.probe(i)),
                Kind::Verify => {
                    let (ct, body) = photos.pair(i);
                    exchange(&target, "POST", "/v1/verify", &ct, &body)
                }
                Kind::Enrol => {
                    let (name, photo) = photos.enrolment(i);
                    // As a client enrolling a portrait would: the face in the middle.
                    let path = format!("/v1/subjects/{name}/faces?face=center");
                    exchange(&target, "POST", &path, "image/jpeg", photo).inspect(|(status, body)| {
                        if *status == 201 {
                            let answer = serde_json::from_slice::<serde_json::Value>(body).ok();
                            let id = answer.and_then(|v| v["face_id"].as_i64()).unwrap_or(-1);
                            acknowledged.lock().unwrap_or_else(|e| e.into_inner()).push((name.to_string(), id));
                        }
                    })
                }
                Kind::HangUp => hang_up(&target, photos.probe(i), Duration::from_millis(splitmix(i as u64 ^ 7) % 200)),
                Kind::SlowHeaders => slow_headers(&target),
                Kind::SlowBody => slow_body(&target, photos.probe(i)),
                Kind::Bomb => exchange(&target, "POST", "/v1/identify", "image/png", &bomb),
                Kind::HugeHeader => exchange(&target, "POST", "/v1/identify", "image/png", &huge_header),
                Kind::ProfileBomb => exchange(&target, "POST", "/v1/identify", "image/png", &profile_bomb),
                Kind::ProgressiveJpeg => exchange(&target, "POST", "/v1/identify", "image/jpeg", &progressive),
                Kind::HeadWithoutKey => attacks::head_without_key(&target),
                Kind::NeverReads => attacks::never_reads(&target),
                Kind::IdleCrowd => attacks::idle_crowd(&target),
                Kind::BadKeys => attacks::bad_keys(&target),
                Kind::TrickleBody => attacks::trickle_body(&target),
                Kind::HangUpMidBody => attacks::hang_up_mid_body(&target),
                Kind::BigMetadata => {
                    let body =
                        serde_json::json!({ "name": format!("big{i}"), "metadata": { "blob": "x".repeat(1 << 20) } });
                    exchange(&target, "POST", "/v1/subjects", "application/json", body.to_string().as_bytes())
                }
                Kind::Metrics => exchange(&target, "GET", "/metrics", "text/plain", b""),
                Kind::GzipChunked => attacks::gzip_chunked(&target),
            };
            let outcome = answer.map_or_else(|_| "0".to_string(), |(status, body)| outcome(status, &body));
            let mut statuses = statuses.lock().unwrap_or_else(|e| e.into_inner());
            *statuses.entry(format!("{kind:?}")).or_default().entry(outcome).or_default() += 1;
            answered.fetch_add(1, Ordering::SeqCst);
        })
    };
    let report = setup.progress;
    while clients.iter().any(|c| !c.is_finished()) {
        report(Progress { stage: "soak", done: answered.load(Ordering::SeqCst), total: requests });
        std::thread::sleep(Duration::from_millis(500));
    }
    report(Progress { stage: "soak", done: requests, total: requests });
    for c in clients {
        c.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let the last abandoned work and closing connections end, then look again.
    // (tokio ends idle blocking threads after 10 s).
    std::thread::sleep(Duration::from_secs(15));
    done.store(true, Ordering::SeqCst);
    let watched = watch.join().map_err(|_| anyhow::anyhow!("the watcher panicked"))??;
    let (fds_after, threads_after) = (fds(pid)?, threads(pid)?);
    let rss_last = rss_mib(pid)?;
    drop(target); // stops the server

    let acknowledged = acknowledged.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let gallery = Gallery::open(&gallery)?;
    let found = acknowledged
        .iter()
        .filter(|(name, id)| gallery.faces(name).is_ok_and(|faces| faces.iter().any(|f| f.id == *id)))
        .count();
    let statuses = statuses.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let server_errors = statuses
        .values()
        .flat_map(|s| s.iter())
        .filter(|(outcome, _)| {
            outcome.starts_with('5') && !outcome.starts_with("503") && !outcome.starts_with("501")
                || **outcome == attacks::NEVER_CLOSED.to_string()
        })
        .map(|(_, n)| n)
        .sum();
    let mut healthz = watched.healthz_ms;
    healthz.sort_by(f64::total_cmp);
    Ok(Soak {
        duration_s: elapsed,
        rate_per_s: rate,
        requests,
        statuses,
        server_errors,
        healthz_checks: healthz.len(),
        healthz_p99_ms: percentile(&healthz, 0.99),
        healthz_max_ms: healthz.last().copied().unwrap_or(f64::NAN),
        rss_baseline_mib: rss_baseline,
        rss_peak_mib: watched.rss_peak_mib.max(rss_last),
        fds_baseline,
        fds_after,
        threads_baseline,
        threads_after,
        enrolments_acknowledged: acknowledged.len(),
        enrolments_found: found,
    })
}

/// `maskid serve` from this binary on a free loopback port, shipped defaults.
fn start_server(setup: &Setup, gallery: &Path, key: String) -> anyhow::Result<Target> {
    let mut command = Command::new(std::env::current_exe()?);
    command.args(["serve", "--quiet", "--bind", "127.0.0.1:0", "--gallery"]).arg(gallery);
    if let Some(dir) = &setup.models_dir {
        command.arg("--models-dir").arg(dir);
    }
    let mut child = command.stderr(Stdio::piped()).spawn().context("start maskid serve")?;
    let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
    let addr = loop {
        let line = lines.next().context("maskid serve exited before listening")??;
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split_whitespace().next().unwrap_or_default().to_string();
        }
    };
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    Ok(Target { child, addr, key })
}

/// The photos the clients send: lfw-devtest probes, DevTrain people to enrol.
struct Photos {
    probes: Vec<Vec<u8>>,
    enrolments: Vec<(String, Vec<u8>)>,
}

impl Photos {
    fn read(lfw: &Path) -> anyhow::Result<Self> {
        let lfw = maskid_eval::Lfw::open(lfw)?;
        let read = |name: &str, n: usize| {
            let path = lfw.root().join(maskid_eval::Lfw::image(name, n).path);
            std::fs::read(&path).with_context(|| path.display().to_string())
        };
        let probes = lfw
            .people("peopleDevTest.txt")?
            .iter()
            .take(200)
            .map(|(name, _)| read(name, 1))
            .collect::<anyhow::Result<_>>()?;
        let mut enrolments = Vec::new();
        for (name, count) in lfw.people("peopleDevTrain.txt")? {
            for n in 1..=count.min(4) {
                enrolments.push((name.clone(), read(&name, n)?));
            }
        }
        Ok(Self { probes, enrolments })
    }

    fn probe(&self, i: usize) -> &[u8] {
        &self.probes[i % self.probes.len()]
    }

    /// A photo of a person not yet enrolled from it (each photo once while they last).
    fn enrolment(&self, i: usize) -> (&str, &[u8]) {
        let (name, photo) = &self.enrolments[i % self.enrolments.len()];
        (name, photo)
    }

    /// A multipart body of two probes.
    fn pair(&self, i: usize) -> (String, Vec<u8>) {
        let boundary = "maskidsoak";
        let mut body = Vec::new();
        for (field, photo) in [("a", self.probe(i)), ("b", self.probe(i + 1))] {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{field}.jpg\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(photo);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        (format!("multipart/form-data; boundary={boundary}"), body)
    }
}

fn head(target: &Target, method: &str, path: &str, content_type: &str, length: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\
         Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n",
        target.addr, target.key
    )
}

fn connect(target: &Target) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(&target.addr)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    Ok(stream)
}

/// One request; its status and body.
fn exchange(
    target: &Target,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(head(target, method, path, content_type, body.len()).as_bytes())?;
    // The service may answer (401, 413, 503) and close before taking the whole body: read
    // its answer even when the rest cannot be written.
    let _ = stream.write_all(body);
    read_answer(&mut stream)
}

/// "STATUS" or, for an error, "STATUS code" (e.g. "503 busy").
fn outcome(status: u16, body: &[u8]) -> String {
    let code = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(String::from));
    match code {
        Some(code) if status >= 400 => format!("{status} {code}"),
        _ => status.to_string(),
    }
}

/// One request; its status.
fn request(target: &Target, method: &str, path: &str, content_type: &str, body: &[u8]) -> std::io::Result<u16> {
    Ok(exchange(target, method, path, content_type, body)?.0)
}

/// The status and body of an HTTP/1.1 answer read to the end (`Connection: close`).
pub fn read_answer(stream: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(parse_answer(&answer))
}

/// The status (0: none) and body of the bytes of an HTTP/1.1 answer.
fn parse_answer(answer: &[u8]) -> (u16, Vec<u8>) {
    let status = answer.get(9..12).and_then(|s| std::str::from_utf8(s).ok()?.parse().ok()).unwrap_or(0);
    let body = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(Vec::new(), |p| answer[p + 4..].to_vec());
    (status, body)
}

/// Sends an identify request and hangs up after `after`, unanswered (status 0).
fn hang_up(target: &Target, photo: &[u8], after: Duration) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(head(target, "POST", "/v1/identify", "image/jpeg", photo.len()).as_bytes())?;
    stream.write_all(photo)?;
    std::thread::sleep(after);
    Ok((0, Vec::new()))
}

/// Headers at 10 bytes per second: the server cuts the connection (status 0) or answers.
fn slow_headers(target: &Target) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    let text = head(target, "GET", "/v1/subjects", "application/json", 0);
    for chunk in text.as_bytes().chunks(1) {
        if stream.write_all(chunk).is_err() {
            return Ok((0, Vec::new()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    read_answer(&mut stream)
}

/// A photo sent at 2 KB/s: answered once it is all there, or cut off by the request timeout.
fn slow_body(target: &Target, photo: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = connect(target)?;
    stream.write_all(head(target, "POST", "/v1/identify", "image/jpeg", photo.len()).as_bytes())?;
    for chunk in photo.chunks(200) {
        if stream.write_all(chunk).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    read_answer(&mut stream)
}

/// What the watcher saw of the server.
struct Watched {
    healthz_ms: Vec<f64>,
    rss_peak_mib: u64,
}

/// `/healthz` every 100 ms and the server's memory, until `done`.
fn watch_server(target: &Target, pid: u32, done: &AtomicBool) -> anyhow::Result<Watched> {
    let mut watched = Watched { healthz_ms: Vec::new(), rss_peak_mib: 0 };
    while !done.load(Ordering::SeqCst) {
        let t = Instant::now();
        let mut stream = connect(target)?;
        stream.write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", target.addr).as_bytes(),
        )?;
        let (status, _) = read_answer(&mut stream)?;
        anyhow::ensure!(status == 200, "/healthz answered {status}");
        watched.healthz_ms.push(t.elapsed().as_secs_f64() * 1e3);
        watched.rss_peak_mib = watched.rss_peak_mib.max(rss_mib(pid)?);
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
    }
    Ok(watched)
}

fn proc_status(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("the server is gone")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn rss_mib(pid: u32) -> anyhow::Result<u64> {
    Ok(proc_status(pid, "VmRSS:")? >> 10)
}

fn threads(pid: u32) -> anyhow::Result<u64> {
    proc_status(pid, "Threads:")
}

fn fds(pid: u32) -> anyhow::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}
