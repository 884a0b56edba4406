//! `maskid bench`: photo -> embedding latency on a 640x480 photo with one face, and
//! throughput over a data set (full chain, and embedding of prepared crops).

use std::io::Cursor;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use maskid_core::AlignedFace;
use maskid_face::{align_face, decode_image, select_faces, FacePolicy, Parallelism};
use maskid_pipeline::ModelChoice;
use rayon::prelude::*;
use serde::Serialize;

use crate::cmd::prepare::dataset_photos;
use crate::cmd::{bench_detect, bench_g2d, bench_search, bench_service, bench_soak};
use crate::common::{percentile, print_json, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// Timed runs of the single-photo latency benchmark.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// A data set (LFW root or one folder per person) for the throughput benchmarks.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Photos of the data set to use (spread evenly over it).
    #[arg(long, default_value_t = 1000)]
    photos: usize,
    /// G2D: train each stage of the `small` config for this many steps (batch 32) on --data
    /// and report images/s and peak memory (instead of the teacher benchmarks).
    #[arg(long, requires = "data")]
    train_steps: Option<usize>,
    /// G2D: time an exported backbone through ONNX Runtime, batch 1 and 32 (instead of the
    /// teacher benchmarks).
    #[arg(long)]
    model: Option<PathBuf>,
    /// With --model: the run folder it came from, to time burn on the same network.
    #[arg(long, requires = "model")]
    run: Option<PathBuf>,
    /// The HTTP service: a load run of identify requests on loopback against a gallery of
    /// --gallery-faces real faces (needs LFW as --data).
    #[arg(long, requires = "data")]
    service: bool,
    /// With --service: faces in the gallery.
    #[arg(long, default_value_t = 10_000)]
    gallery_faces: usize,
    /// With --service: identify requests sent.
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// With --service or --soak: requests per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// The HTTP service under hostile and careless clients: `maskid serve` (a child process)
    /// under mixed identify / enrol / verify load at --rate for --duration-s, 10% of clients
    /// hanging up, 5% slow, 5% sending decompression bombs (needs LFW as --data).
    #[arg(long, requires = "data", conflicts_with = "service")]
    soak: bool,
    /// With --soak: seconds of load.
    #[arg(long, default_value_t = 600)]
    duration_s: u64,
    /// Face detection over every photo under this folder: the share found and aligned, with
    /// the first pass alone and with the rescue pass, scores, extra detections.
    #[arg(long, value_name = "DIR")]
    detect: Option<PathBuf>,
    /// Gallery search over random unit vectors at each --search-sizes: the built-in index,
    /// and PostgreSQL + pgvector with --gallery.
    #[arg(long)]
    search: bool,
    /// With --search: gallery sizes.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    search_sizes: Vec<usize>,
    /// With --search: queries per size and kind (probes, random).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// With --search: candidates the sketched index rescores exactly.
    #[arg(long, default_value_t = maskid_gallery::DEFAULT_RESCORE)]
    rescore: usize,
    /// With --search: values per vector (maskid's models give 128).
    #[arg(long, default_value_t = 512)]
    search_dim: usize,
    /// With --search or --service: a PostgreSQL server with pgvector,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (maskid creates a scratch database on it for
    /// each run and drops it after: the user needs CREATEDB).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Option<maskid_gallery::Location>,
    /// With --service: services sharing the gallery (as `maskid serve` replicas would).
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// With --search --gallery: pgvector's HNSW search breadth (hnsw.ef_search).
    #[arg(long, default_value_t = 100)]
    ef_search: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize, Default)]
struct Latency {
    photo: String,
    iterations: usize,
    median_total_ms: f64,
    p90_total_ms: f64,
    median_decode_ms: f64,
    median_detect_ms: f64,
    median_align_ms: f64,
    median_embed_ms: f64,
}

#[derive(Serialize)]
struct Throughput {
    photos: usize,
    chain_photos_per_s: f64,
    embed_faces_per_s: f64,
}

#[derive(Serialize)]
struct BenchReport {
    cores: usize,
    masks_per_s: f64,
    latency: Latency,
    throughput: Option<Throughput>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// The 640x480 test photo: a sample photo cropped to 4:3 and resized, as a JPEG.
fn test_photo(global: &GlobalArgs) -> anyhow::Result<Vec<u8>> {
    let path = global.assets().get(&maskid_assets::SAMPLE_PHOTOS[2])?;
    let image = maskid_face::load_image(&path, maskid_face::DEFAULT_MAX_PIXELS)?;
    let (w, h) = image.dimensions();
    let (cw, ch) = if w * 3 > h * 4 { (h * 4 / 3, h) } else { (w, w * 3 / 4) };
    let cropped = image::imageops::crop_imm(&image, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
    let resized = image::imageops::resize(&cropped, 640, 480, image::imageops::FilterType::Triangle);
    let mut jpeg = Cursor::new(Vec::new());
    resized.write_to(&mut jpeg, image::ImageFormat::Jpeg)?;
    Ok(jpeg.into_inner())
}

/// Random masks (style, colour, coverage from the seed) on 20,000 aligned faces in parallel.
fn mask_throughput(jpeg: &[u8]) -> anyhow::Result<f64> {
    let photo = decode_image(jpeg, u64::MAX)?;
    let face = image::imageops::resize(&photo, 112, 112, image::imageops::FilterType::Triangle).into_raw();
    let template = maskid_core::Landmarks5(maskid_core::ALIGNMENT_TEMPLATE);
    let count = 20_000u64;
    let start = Instant::now();
    (0..count).into_par_iter().try_for_each(|seed| -> anyhow::Result<()> {
        let mut rgb = face.clone();
        let spec = maskid_mask::MaskSpec::from_seed(seed, None, maskid_mask::Coverage::Random);
        maskid_mask::render_mask(&mut maskid_mask::RgbImageMut::new(112, 112, &mut rgb)?, &template, &spec)?;
        Ok(())
    })?;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// The PostgreSQL server of `--gallery` (the benchmarks compare a file with PostgreSQL).
fn postgres_server(args: &Args) -> anyhow::Result<Option<&str>> {
    match &args.gallery {
        Some(maskid_gallery::Location::Postgres(url)) => Ok(Some(url)),
        Some(other) => {
            anyhow::bail!("--gallery {other}: the benchmarks use an SQLite file of their own; give a postgres:// URL")
        }
        None => Ok(None),
    }
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.iterations > 0, "--iterations must be at least 1");
    if args.train_steps.is_some() || args.model.is_some() {
        return g2d(global, &args);
    }
    if args.search {
        let postgres =
            postgres_server(&args)?.map(|url| bench_search::PostgresBench { url, ef_search: args.ef_search });
        let speeds = bench_search::search_speed(
            &args.search_sizes,
            args.queries,
            args.rescore,
            args.search_dim,
            postgres.as_ref(),
        )?;
        if args.json {
            print_json(&speeds)?;
        } else {
            for s in &speeds {
                println!(
                    "{:>14} index, {:>8} vectors of {}: {} queries, p50 {:.2} ms, p99 {:.2} ms, recall@1 {:.3} \
                     (probes) {:.3} (random), {} bytes/vector ({:.0} resident), built in {:.1} s, restart {:.1} s, \
                     enrol {:.0} faces/s",
                    s.index,
                    s.vectors,
                    s.dim,
                    s.queries,
                    s.p50_ms,
                    s.p99_ms,
                    s.recall_at_1_probes,
                    s.recall_at_1_random,
                    s.bytes_per_vector,
                    s.resident_bytes_per_vector.unwrap_or(f64::NAN),
                    s.build_s,
                    s.restart_s,
                    s.enrol_per_s.unwrap_or(f64::NAN)
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.detect {
        let rate = bench_detect::detection_rate(global, dir)?;
        if args.json {
            print_json(&rate)?;
        } else {
            println!(
                "{}: {} photos, {} unreadable, score threshold {}",
                dir.display(),
                rate.photos,
                rate.unreadable,
                rate.score_threshold
            );
            for (name, pass) in [("first pass", &rate.first_pass), ("with rescue", &rate.with_rescue)] {
                println!(
                    "  {name:<12} face found and aligned in {} ({:.2}%); {:.3} faces per photo, {} photos with several; \
                     best-face score p5 {:.2}, p25 {:.2}, p50 {:.2}",
                    pass.found,
                    100.0 * pass.found_share,
                    pass.faces_per_photo,
                    pass.photos_with_several,
                    pass.score_p5,
                    pass.score_p25,
                    pass.score_p50
                );
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.soak {
        let data = args.data.as_ref().expect("clap: --soak requires --data");
        let soak = bench_soak::soak(global, data, Duration::from_secs(args.duration_s), args.rate)?;
        if args.json {
            print_json(&soak)?;
        } else {
            println!(
                "soak: {} requests in {:.0} s at {:.0}/s; statuses {:?}\n\
                 server errors other than 503: {}; /healthz p99 {:.1} ms, max {:.1} ms ({} checks)\n\
                 RSS {} -> peak {} MiB; file descriptors {} -> {}; threads {} -> {}; \
                 enrolments acknowledged {}, found afterwards {}",
                soak.requests,
                soak.duration_s,
                soak.rate_per_s,
                soak.statuses,
                soak.server_errors,
                soak.healthz_p99_ms,
                soak.healthz_max_ms,
                soak.healthz_checks,
                soak.rss_baseline_mib,
                soak.rss_peak_mib,
                soak.fds_baseline,
                soak.fds_after,
                soak.threads_baseline,
                soak.threads_after,
                soak.enrolments_acknowledged,
                soak.enrolments_found
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.service {
        let data = args.data.as_ref().expect("clap: --service requires --data");
        let backend = bench_service::Backend { postgres: postgres_server(&args)?, replicas: args.replicas };
        let load = bench_service::load_run(global, data, args.gallery_faces, args.requests, args.rate, &backend)?;
        if args.json {
            print_json(&load)?;
        } else {
            println!(
                "service on loopback ({} gallery, {} replica(s)), gallery {} faces of {} people (enrolled at \
                 {:.0}/s): {} identify requests at {:.0}/s -> {:.1}/s achieved, {} errors; latency p50 {:.1} ms, \
                 p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                load.backend,
                load.replicas,
                load.gallery_faces,
                load.gallery_subjects,
                load.enrol_per_s,
                load.requests,
                load.target_rate_per_s,
                load.achieved_rate_per_s,
                load.errors,
                load.p50_ms,
                load.p90_ms,
                load.p99_ms,
                load.max_ms
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jpeg = test_photo(global)?;
    let models = global.models(Parallelism::Latency)?;
    let (mut total, mut decode, mut detect, mut align, mut embed) = (vec![], vec![], vec![], vec![], vec![]);
    for i in 0..args.iterations + 5 {
        let t0 = Instant::now();
        let image = decode_image(&jpeg, u64::MAX)?;
        let t1 = Instant::now();
        let found = models.detector.detect(&image)?;
        let face = select_faces(found, FacePolicy::RequireOne, image.dimensions(), global.score_threshold)?[0];
        let t2 = Instant::now();
        let crop = align_face(&image, &face.landmarks)?;
        let t3 = Instant::now();
        models.teacher.embed(std::slice::from_ref(&crop))?;
        if i >= 5 {
            // the first runs warm caches and thread pools
            total.push(ms(t0));
            decode.push((t1 - t0).as_secs_f64() * 1e3);
            detect.push((t2 - t1).as_secs_f64() * 1e3);
            align.push((t3 - t2).as_secs_f64() * 1e3);
            embed.push(ms(t3));
        }
    }
    let latency = Latency {
        photo: "sample person_b_1 cropped to 4:3, resized to 640x480, JPEG".into(),
        iterations: args.iterations,
        median_total_ms: median(&mut total),
        p90_total_ms: percentile(&total, 0.9), // `median` sorted it
        median_decode_ms: median(&mut decode),
        median_detect_ms: median(&mut detect),
        median_align_ms: median(&mut align),
        median_embed_ms: median(&mut embed),
    };
    drop(models);
    let masks_per_s = mask_throughput(&jpeg)?;

    let throughput = match &args.data {
        None => None,
        Some(root) => {
            let all = dataset_photos(root)?;
            let step = (all.len() / args.photos.max(1)).max(1);
            let chosen: Vec<PathBuf> = all.iter().step_by(step).take(args.photos).map(|p| root.join(p)).collect();
            let recognizer = global.recognizer(&ModelChoice::Teacher, Parallelism::Throughput)?;
            let start = Instant::now();
            let crops: Vec<AlignedFace> = chosen
                .par_iter()
                .filter_map(|p| {
                    recognizer.open_photo(p).and_then(|photo| recognizer.face(&photo, FacePolicy::Center)).ok()
                })
                .map(|found| found.face)
                .collect();
            let chain_photos_per_s = chosen.len() as f64 / start.elapsed().as_secs_f64();
            let start = Instant::now();
            crops.par_chunks(32).try_for_each(|c| recognizer.embed(c).map(drop))?;
            let embed_faces_per_s = crops.len() as f64 / start.elapsed().as_secs_f64();
            Some(Throughput { photos: chosen.len(), chain_photos_per_s, embed_faces_per_s })
        }
    };
    let report = BenchReport { cores, masks_per_s, latency, throughput };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let l = &report.latency;
    println!("{} cores; {} ({} runs)", report.cores, l.photo, l.iterations);
    println!(
        "photo -> embedding: median {:.1} ms, p90 {:.1} ms (decode {:.1}, detect {:.1}, align {:.2}, embed {:.1})",
        l.median_total_ms, l.p90_total_ms, l.median_decode_ms, l.median_detect_ms, l.median_align_ms, l.median_embed_ms
    );
    println!("masks on aligned 112x112 faces (random styles, all cores): {:.0} masks/s", report.masks_per_s);
    if let Some(t) = &report.throughput {
        println!(
            "over {} data set photos: full chain {:.1} photos/s; teacher embedding {:.1} faces/s (batch 32)",
            t.photos, t.chain_photos_per_s, t.embed_faces_per_s
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--train-steps` and `--model`: the G2D benchmarks.
fn g2d(global: &GlobalArgs, args: &Args) -> anyhow::Result<ExitCode> {
    let mut report = serde_json::json!({ "cores": std::thread::available_parallelism().map_or(1, |n| n.get()) });
    if let (Some(steps), Some(data)) = (args.train_steps, &args.data) {
        anyhow::ensure!(steps >= 2, "--train-steps must be at least 2");
        let stages = bench_g2d::train_throughput(global, data, steps)?;
        if !args.json {
            for s in &stages {
                let peak = s.peak_memory_mib.map_or("?".into(), |m| format!("{m:.0} MiB"));
                println!(
                    "train {:<10} {:>6.1} images/s (batch 32, {} steps), peak memory {peak}",
                    s.stage, s.images_per_s, s.steps
                );
            }
        }
        report["train"] = serde_json::to_value(&stages)?;
    }
    if let Some(model) = &args.model {
        let models = global.models(Parallelism::Latency)?;
        let faces = crate::cmd::export::parity_faces(global, &models, None)?;
        drop(models);
        let speed = bench_g2d::backbone_speed(model, args.run.as_deref(), &faces, args.iterations)?;
        if !args.json {
            println!(
                "backbone {}: ONNX Runtime batch 1 {:.2} ms, batch 32 {:.0} faces/s",
                speed.model, speed.onnx_batch1_ms, speed.onnx_batch32_faces_per_s
            );
            if let (Some(ms), Some(fps)) = (speed.burn_batch1_ms, speed.burn_batch32_faces_per_s) {
                println!("same network on burn (flex CPU): batch 1 {ms:.2} ms, batch 32 {fps:.0} faces/s");
            }
        }
        report["backbone"] = serde_json::to_value(&speed)?;
    }
    if args.json {
        print_json(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}
