//! `maskid bench --service --data LFW`: a bounded load run of the HTTP service on loopback.
//! The gallery holds 10,000 real faces (the lfw DevTrain photos' teacher embeddings, clean,
//! then masked versions of the first ones); the requests are identify calls with real lfw
//! DevTest photos (people not enrolled: the same work as a match), sent at a fixed rate
//! (open loop: a late answer delays no later request) by client threads in this process.
//!
//! The gallery is an SQLite file, or with `--gallery postgres://...` a scratch database on
//! that server (dropped after); `--replicas 2` serves it from two services (each with its own
//! models and gallery connection, as two `maskid serve` would), requests alternating between
//! them. Filling the gallery, one enrolment at a time, gives the enrolment rate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use maskid_face::Parallelism;
use maskid_gallery::{Gallery, Location, NewFace, ScratchDatabase};
use maskid_mask::{image_seed, mask_face, Coverage, MaskSpec};
use maskid_pipeline::{Decision, ModelChoice, TeacherTargets, TEACHER_THRESHOLD};
use maskid_service::auth::{new_secret, secret_sha256};
use maskid_service::{Limits, Options, Service};
use serde::Serialize;

use crate::percentile;
use crate::Setup;

/// What a load run measured.
#[derive(Serialize)]
pub struct ServiceLoad {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Services sharing the gallery.
    pub replicas: usize,
    /// Faces enrolled per second while filling the gallery (one transaction each).
    pub enrol_per_s: f64,
    /// Faces in the gallery.
    pub gallery_faces: usize,
    /// People in the gallery.
    pub gallery_subjects: usize,
    /// Identify requests sent.
    pub requests: usize,
    /// Requests per second asked for (open loop).
    pub target_rate_per_s: f64,
    /// Requests per second answered.
    pub achieved_rate_per_s: f64,
    /// Answers 200.
    pub ok: usize,
    /// Other answers and failed connections.
    pub errors: usize,
    /// Median latency.
    pub p50_ms: f64,
    /// 90th percentile latency.
    pub p90_ms: f64,
    /// 99th percentile latency.
    pub p99_ms: f64,
    /// Slowest answer.
    pub max_ms: f64,
    /// Where the time went inside the services (their metrics): waiting for a model slot,
    /// then at work (decode, detect, align, embed, search).
    pub inside: Inside,
}

/// The services' own account of their model requests (`/metrics`).
#[derive(Serialize, Default)]
pub struct Inside {
    /// Mean wait for a model slot.
    pub wait_mean_ms: f64,
    /// The latency bucket holding the 99th percentile of the waits: at most this.
    pub wait_p99_at_most_ms: f64,
    /// Mean time at work.
    pub work_mean_ms: f64,
    /// The bucket holding the 99th percentile of the work.
    pub work_p99_at_most_ms: f64,
}

/// One histogram of the metrics text, summed over the services' texts: (bucket bounds with
/// cumulative counts, sum, count).
fn histogram(texts: &[String], name: &str) -> (Vec<(f64, f64)>, f64, f64) {
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut sum, mut count) = (0.0, 0.0);
    for text in texts {
        for line in text.lines() {
            let Some((key, value)) = line.rsplit_once(' ') else { continue };
            let value: f64 = value.parse().unwrap_or(0.0);
            if let Some(bound) = key.strip_prefix(&format!("{name}_bucket{{le=\"")).and_then(|b| b.strip_suffix("\"}"))
            {
                let bound = if bound == "+Inf" { f64::INFINITY } else { bound.parse().unwrap_or(f64::INFINITY) };
                match buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some(slot) => slot.1 += value,
                    None => buckets.push((bound, value)),
                }
            } else if key == format!("{name}_sum") {
                sum += value;
            } else if key == format!("{name}_count") {
                count += value;
            }
        }
    }
    (buckets, sum, count)
}

/// Mean and the upper bound of the bucket holding the 99th percentile, in ms.
fn mean_and_p99(texts: &[String], name: &str) -> (f64, f64) {
    let (buckets, sum, count) = histogram(texts, name);
    let p99 = buckets.iter().find(|(_, below)| *below >= 0.99 * count).map_or(f64::NAN, |(bound, _)| bound * 1e3);
    (sum / count.max(1.0) * 1e3, p99)
}

/// Where and how the service under load keeps its gallery.
pub struct Backend<'a> {
    /// A PostgreSQL server URL (a scratch database is made on it), else an SQLite file.
    pub postgres: Option<&'a str>,
    /// Services sharing the gallery.
    pub replicas: usize,
}

/// Fills a gallery of `faces` faces, serves it, and sends `requests` identify calls at `rate`.
pub fn load_run(
    setup: &Setup,
    lfw: &Path,
    faces: usize,
    requests: usize,
    rate: f64,
    backend: &Backend,
) -> anyhow::Result<ServiceLoad> {
    anyhow::ensure!(rate > 0.0 && requests > 0, "the rate and the request count must be positive");
    anyhow::ensure!(backend.replicas >= 1, "--replicas must be at least 1");
    let home = setup.assets.home().to_path_buf();
    // As `maskid serve` loads them.
    let recognizer = setup.recognizer(&ModelChoice::Teacher, Parallelism::Throughput)?;
    let set = maskid_pipeline::training_set(
        &home,
        recognizer.models(),
        lfw,
        None,
        &Default::default(),
        TeacherTargets::Face,
        setup.progress,
    )?;
    let dir = tempfile::tempdir()?;
    let scratch = match backend.postgres {
        Some(url) => Some(ScratchDatabase::create(url, &format!("maskid_bench_service_{}", std::process::id()))?),
        None => None,
    };
    let location = match &scratch {
        Some(db) => db.location().clone(),
        None => Location::File(dir.path().join("bench.db")),
    };
    let gallery = Gallery::open(&location)?;
    let model = recognizer.model();
    let filling = Instant::now();
    for (k, face) in set.faces.iter().cycle().take(faces).enumerate() {
        let name = &set.identities[face.identity as usize];
        // Past the clean photos, masked versions of them: a second enrolment per photo.
        let embedding = if k < set.faces.len() {
            face.teacher.clone()
        } else {
            let spec = MaskSpec::from_seed(image_seed(name, k as u64), None, Coverage::Random);
            let masked = mask_face(&face.face, &face.landmarks, &spec)?.0;
            recognizer.embed(&[masked])?.remove(0)
        };
        let source_sha256 = format!("bench-{k}");
        let face = NewFace { embedding, model: model.clone(), source_sha256, score: 1.0, crop: None, mask: None };
        gallery.enroll(name, &serde_json::json!({}), &face)?;
    }
    let enrol_per_s = faces as f64 / filling.elapsed().as_secs_f64();
    let secret = new_secret().map_err(|e| anyhow::anyhow!("no random source: {e}"))?;
    gallery.add_key("bench", maskid_gallery::Role::Read, &secret_sha256(&secret))?;
    let probes: Vec<Vec<u8>> = devtest_photos(lfw, 200)?;

    let gallery_subjects = gallery.subjects()?.len();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let options =
        Options { threshold: TEACHER_THRESHOLD, identify: Decision::default(), keep_crops: false, access_log: false };
    let mut galleries = vec![(recognizer, gallery)];
    for _ in 1..backend.replicas {
        let recognizer = setup.recognizer(&ModelChoice::Teacher, Parallelism::Throughput)?;
        galleries.push((recognizer, Gallery::open(&location)?));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut addrs = Vec::new();
    let mut servers = Vec::new();
    for (recognizer, gallery) in galleries {
        let service =
            runtime.block_on(Service::bind(recognizer, gallery, options, "127.0.0.1:0", Limits::default()))?;
        addrs.push(service.local_addr()?.to_string());
        let mut stopped = stopped.clone();
        servers.push(runtime.spawn(service.run(async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })));
    }

    let (service_addrs, key) = (addrs.clone(), secret.clone());
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let errors = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(200);
    let clients = {
        let (latencies, errors) = (latencies.clone(), errors.clone());
        open_loop(16, requests, rate, start, move |i, due| {
            let ok = identify(&addrs[i % addrs.len()], &secret, &probes[i % probes.len()]).unwrap_or(false);
            // From the time the request was due: a queue in front of the server counts.
            latencies.lock().unwrap_or_else(|e| e.into_inner()).push(due.elapsed().as_secs_f64() * 1e3);
            if !ok {
                errors.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    for c in clients {
        c.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let texts: Vec<String> = service_addrs.iter().map(|addr| metrics(addr, &key)).collect::<std::io::Result<_>>()?;
    let ((wait_mean_ms, wait_p99_at_most_ms), (work_mean_ms, work_p99_at_most_ms)) =
        (mean_and_p99(&texts, "maskid_model_wait_seconds"), mean_and_p99(&texts, "maskid_model_work_seconds"));
    let inside = Inside { wait_mean_ms, wait_p99_at_most_ms, work_mean_ms, work_p99_at_most_ms };
    let _ = stop.send(true);
    for server in servers {
        runtime.block_on(server).context("server task")?;
    }
    let mut ms = Arc::try_unwrap(latencies).map_err(|_| anyhow::anyhow!("clients still hold results"))?.into_inner()?;
    ms.sort_by(f64::total_cmp);
    let errors = errors.load(Ordering::SeqCst);
    Ok(ServiceLoad {
        backend: if backend.postgres.is_some() { "postgres" } else { "sqlite" },
        replicas: backend.replicas,
        enrol_per_s,
        gallery_faces: faces,
        gallery_subjects,
        requests,
        target_rate_per_s: rate,
        achieved_rate_per_s: requests as f64 / elapsed,
        ok: requests - errors,
        errors,
        p50_ms: percentile(&ms, 0.5),
        p90_ms: percentile(&ms, 0.9),
        p99_ms: percentile(&ms, 0.99),
        max_ms: *ms.last().expect("at least one request"),
        inside,
    })
}

/// Open-loop load: request `i` is due `i / rate` seconds after `start`; each of `clients`
/// threads takes the next request, waits until it is due and calls `send(i, due)`, so a
/// late answer delays no later request while a client is free.
pub fn open_loop(
    clients: usize,
    requests: usize,
    rate: f64,
    start: Instant,
    send: impl Fn(usize, Instant) + Send + Sync + 'static,
) -> Vec<std::thread::JoinHandle<()>> {
    let next = Arc::new(AtomicUsize::new(0));
    let send = Arc::new(send);
    (0..clients)
        .map(|_| {
            let (next, send) = (next.clone(), send.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= requests {
                    break;
                }
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                send(i, due);
            })
        })
        .collect()
}

/// First photos of lfw-devtest people, read into memory.
fn devtest_photos(lfw: &Path, count: usize) -> anyhow::Result<Vec<Vec<u8>>> {
    let lfw = maskid_eval::Lfw::open(lfw)?;
    lfw.people("peopleDevTest.txt")?
        .into_iter()
        .take(count)
        .map(|(name, _)| {
            let path = lfw.root().join(maskid_eval::Lfw::image(&name, 1).path);
            std::fs::read(&path).with_context(|| path.display().to_string())
        })
        .collect()
}

/// The service's metrics text.
fn metrics(addr: &str, key: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    let head =
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// One identify call; whether it answered 200.
fn identify(addr: &str, key: &str, photo: &[u8]) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let head = format!(
        "POST /v1/identify HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        photo.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(photo)?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(response.starts_with(b"HTTP/1.1 200"))
}
