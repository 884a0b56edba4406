//! `maskid bench`: the flags of the benchmarks of `maskid-bench`, and their reports printed.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use maskid_bench::{detect as bench_detect, g2d as bench_g2d, photo, search as bench_search};
use maskid_bench::{
    service as bench_service, soak as bench_soak, strangers as bench_strangers, video as bench_video, Setup,
};
use maskid_face::Parallelism;
use serde::Serialize;

use crate::common::{print_json, GlobalArgs};

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
    /// Open-set decisions with strangers: LFW DevTest people enrolled from one photo each
    /// (--data), then searched for with photos of people not enrolled (LFW, and the real
    /// masked photos under this masked-wild folder) and of the enrolled (clean, and masked on
    /// the photo) at each --fpirs.
    #[arg(long, value_name = "MASKED_WILD", requires = "data")]
    strangers: Option<PathBuf>,
    /// With --strangers: the model (teacher, g2d, auto or FILE.onnx with its calibration beside).
    #[arg(long, default_value = "teacher")]
    strangers_model: maskid_pipeline::ModelChoice,
    /// With --strangers: masked-wild photos searched for (spread evenly).
    #[arg(long, default_value_t = 1000)]
    masked_photos: usize,
    /// With --strangers: target FPIRs.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.001")]
    fpirs: Vec<f64>,
    /// Video: clips of LFW DevTest people walking past (--data), some masked, some not
    /// enrolled, encoded with H.264 and watched as `maskid watch` does: identities, strangers,
    /// switches, time to the right name and throughput.
    #[arg(long, requires = "data")]
    video: bool,
    /// With --video: clips made and watched.
    #[arg(long, default_value_t = 20)]
    clips: usize,
    /// With --video: seconds per clip.
    #[arg(long, default_value_t = 6.0)]
    clip_seconds: f64,
    /// With --video: frame size, WIDTHxHEIGHT.
    #[arg(long, default_value = "1280x720")]
    clip_size: String,
    /// With --video: `watch --detect-every`.
    #[arg(long, default_value_t = 3)]
    detect_every: u64,
    /// With --video: keep the clips in this folder.
    #[arg(long, value_name = "DIR")]
    keep_clips: Option<PathBuf>,
    /// With --video: the model (teacher, g2d, auto).
    #[arg(long, default_value = "teacher")]
    video_model: maskid_pipeline::ModelChoice,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BenchReport {
    cores: usize,
    masks_per_s: f64,
    latency: photo::Latency,
    throughput: Option<photo::Throughput>,
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
    let progress = global.progress();
    let setup = Setup {
        assets: global.assets(),
        models: global.models_config(Parallelism::Latency)?,
        models_dir: global.models_dir.clone(),
        progress: &progress,
    };
    if args.train_steps.is_some() || args.model.is_some() {
        return g2d(&setup, &args);
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
    if let Some(masked_wild) = &args.strangers {
        let data = bench_strangers::StrangerData {
            lfw: args.data.clone().expect("clap: --strangers requires --data"),
            masked_wild: masked_wild.clone(),
            masked_photos: args.masked_photos,
        };
        let trial = bench_strangers::stranger_trial(&setup, &args.strangers_model, &data, &args.fpirs)?;
        if args.json {
            print_json(&trial)?;
        } else {
            println!("{}: {} people enrolled, one photo each", trial.model, trial.enrolled);
            for kind in &trial.kinds {
                let what = if kind.enrolled { "found" } else { "taken for someone" };
                println!("  {} ({} searched, {} without a face):", kind.kind, kind.searches, kind.unusable);
                for o in &kind.outcomes {
                    println!(
                        "    FPIR {:.0e} (threshold {:.3} unmasked, {:.3} masked; {} called masked): {what} {} ({:.2}%)",
                        o.fpir,
                        o.threshold,
                        o.masked_threshold,
                        o.called_masked,
                        o.count,
                        100.0 * o.share
                    );
                }
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(dir) = &args.detect {
        let rate = bench_detect::detection_rate(&setup, dir)?;
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
    if args.video {
        return video(&setup, &args);
    }
    if args.soak {
        let data = args.data.as_ref().expect("clap: --soak requires --data");
        let soak = bench_soak::soak(&setup, data, Duration::from_secs(args.duration_s), args.rate)?;
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
        let load = bench_service::load_run(&setup, data, args.gallery_faces, args.requests, args.rate, &backend)?;
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
            let inside = &load.inside;
            println!(
                "inside the service: waiting for a model slot {:.1} ms on average (p99 at most {:.0} ms), at work \
                 (decode, detect, align, embed, search) {:.1} ms (p99 at most {:.0} ms)",
                inside.wait_mean_ms, inside.wait_p99_at_most_ms, inside.work_mean_ms, inside.work_p99_at_most_ms
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let jpeg = photo::test_photo(&setup)?;
    let latency = photo::latency(&setup, &jpeg, args.iterations)?;
    let masks_per_s = photo::mask_throughput(&jpeg)?;
    let throughput = args.data.as_deref().map(|root| photo::throughput(&setup, root, args.photos)).transpose()?;
    let report = BenchReport { cores, masks_per_s, latency, throughput };
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let l = &report.latency;
    println!("{} cores; {} ({} runs)", report.cores, l.photo, l.iterations);
    println!(
        "photo -> embedding: median {:.1} ms, p90 {:.1} ms (decode {:.1}, detect {:.1}, align {:.2}, mask {:.2}, embed {:.1})",
        l.median_total_ms,
        l.p90_total_ms,
        l.median_decode_ms,
        l.median_detect_ms,
        l.median_align_ms,
        l.median_mask_ms,
        l.median_embed_ms
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

/// `--video`: `maskid watch` on clips made from LFW.
fn video(setup: &Setup, args: &Args) -> anyhow::Result<ExitCode> {
    let data = args.data.as_ref().expect("clap: --video requires --data");
    let size = args.clip_size.split_once('x').and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    let Some((width, height)) = size.filter(|&(w, h): &(u32, u32)| w >= 64 && h >= 64) else {
        anyhow::bail!("--clip-size must be WIDTHxHEIGHT, at least 64x64, got {}", args.clip_size);
    };
    let options = bench_video::VideoOptions {
        clips: args.clips,
        seconds: args.clip_seconds,
        width,
        height,
        detect_every: args.detect_every,
        model: args.video_model.clone(),
        keep: args.keep_clips.clone(),
        ..Default::default()
    };
    let report = bench_video::video_bench(setup, data, &options)?;
    if args.json {
        print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} clips, {} frames of {}x{} at {} fps, --detect-every {}, model {}, {} people enrolled",
        report.clips,
        report.frames,
        report.width,
        report.height,
        report.fps,
        report.detect_every,
        report.model,
        report.enrolled
    );
    println!(
        "{:<38} {:>6} {:>7} {:>7} {:>10} {:>8} {:>8}",
        "appearances", "count", "named", "share", "within 1s", "median", "p95"
    );
    for r in &report.rows {
        let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s:.2} s"));
        println!(
            "{:<38} {:>6} {:>7} {:>6.1}% {:>10} {:>8} {:>8}",
            r.kind,
            r.count,
            r.named,
            100.0 * r.share,
            r.within_1s,
            secs(r.median_s),
            secs(r.p95_s)
        );
    }
    println!(
        "named tracks {} (precision {:.1}%), wrong names {}, switches {}, tracks per appearance {:.2}, false tracks {}, bystanders' tracks {}",
        report.named_tracks,
        100.0 * report.precision,
        report.wrong_names,
        report.switches,
        report.tracks_per_appearance,
        report.false_tracks,
        report.bystander_tracks
    );
    println!("appearances never tracked {}, followed by more than one track {}", report.unseen, report.split);
    println!(
        "clips whose every enrolled person was named within 1 s: {} of {}",
        report.clips_all_within_1s, report.clips
    );
    for m in &report.misses {
        println!(
            "  missed in clip {:03}: {}{} (frames {}-{}, photo {} px high): {}",
            m.clip,
            m.person,
            if m.masked { ", masked" } else { "" },
            m.frames.0,
            m.frames.1,
            m.photo_px,
            m.what
        );
    }
    let s = &report.stages;
    println!(
        "throughput {:.1} frames/s ({:.2}x real time); seconds: wait for frames {:.1}, detect {:.1}, embed {:.1}, track {:.2}, identify {:.2}; FFmpeg decode CPU {:.1}",
        report.processed_fps, report.realtime_factor, s.wait_s, s.detect_s, s.embed_s, s.track_s, s.identify_s, s.decode_cpu_s
    );
    Ok(ExitCode::SUCCESS)
}

/// `--train-steps` and `--model`: the G2D benchmarks.
fn g2d(setup: &Setup, args: &Args) -> anyhow::Result<ExitCode> {
    let mut report = serde_json::json!({ "cores": std::thread::available_parallelism().map_or(1, |n| n.get()) });
    if let (Some(steps), Some(data)) = (args.train_steps, &args.data) {
        anyhow::ensure!(steps >= 2, "--train-steps must be at least 2");
        let stages = bench_g2d::train_throughput(setup, data, steps)?;
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
        let models = setup.models(Parallelism::Latency)?;
        let faces = maskid_pipeline::parity_faces(&setup.assets, &models, None)?;
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
