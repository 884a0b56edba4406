//! `maskid serve --gallery FILE --bind 127.0.0.1:8080`: the HTTP service (see
//! crates/service). Stops on SIGTERM or Ctrl-C after answering the requests in flight, for at
//! most `--shutdown-timeout-s`.

use std::process::ExitCode;
use std::time::Duration;

use maskid_face::Parallelism;
use maskid_gallery::{Gallery, IndexKind, Location, PostgresOptions};
use maskid_pipeline::{Decision, ModelChoice, DEFAULT_FPIR};
use maskid_service::{Limits, Options, Service};

use crate::common::{gallery_model, GlobalArgs};

#[derive(clap::Args)]
pub struct Args {
    /// The gallery: an SQLite file (created if missing) or a PostgreSQL database,
    /// postgres://USER:PASSWORD@HOST:PORT/DB (docs/postgres.md).
    #[arg(long, env = "MASKID_GALLERY", hide_env_values = true)]
    gallery: Location,
    /// Address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    bind: String,
    /// teacher, g2d, auto or FILE.onnx (default: the model the gallery's faces were enrolled with;
    /// any model of their embedding space serves them).
    #[arg(long)]
    model: Option<ModelChoice>,
    /// Default cosine threshold of verify, and of identify instead of a target FPIR (default:
    /// the model's).
    #[arg(long)]
    threshold: Option<f32>,
    /// Default target FPIR of identify: the share of people not enrolled to be taken for
    /// someone (docs/cli.md).
    #[arg(long, default_value_t = DEFAULT_FPIR, conflicts_with = "threshold")]
    fpir: f64,
    /// Largest request body, MiB.
    #[arg(long, default_value_t = 10)]
    max_body_mb: usize,
    /// Longest a request may take, seconds.
    #[arg(long, default_value_t = 30)]
    timeout_s: u64,
    /// Requests in flight at once; more are refused with 503.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Seconds a client may take to send a request's headers (and to start the next one on
    /// a kept-alive connection).
    #[arg(long, default_value_t = 10)]
    header_timeout_s: u64,
    /// Open connections at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
    /// Open connections from one address at once; more are answered 503 and closed.
    #[arg(long, default_value_t = 128, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_connections_per_peer: usize,
    /// Connections beyond --max-connections kept for /healthz, /readyz and /metrics.
    #[arg(long, default_value_t = 16)]
    ops_reserve: usize,
    /// Seconds a connection's answer may wait for its client to read before it is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    write_timeout_s: u64,
    /// Slowest a request body may arrive, KiB a second on average (after 2 s); slower: 408.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..))]
    min_body_kib_s: u64,
    /// Memory all request bodies being read or worked on may hold together, MiB; past it
    /// uploads are refused with 503.
    #[arg(long, default_value_t = 512)]
    body_memory_mb: u64,
    /// Seconds a stop waits for open connections before closing them.
    #[arg(long, default_value_t = 10)]
    shutdown_timeout_s: u64,
    /// Memory all image decodes in progress may hold together, MiB; a photo that alone needs
    /// more is refused with 413.
    #[arg(long, default_value_t = 1024)]
    decode_memory_mb: u64,
    /// Face detections + embeddings run at once (default: the number of cores).
    #[arg(long)]
    max_concurrent: Option<usize>,
    /// Keep enrolled faces' aligned crops (biometric data; off by default), for
    /// `maskid gallery reembed`.
    #[arg(long)]
    keep_crops: bool,
    /// Gallery search: exact, sketch (approximate: sign sketches in a file, HNSW on
    /// PostgreSQL) or auto (approximate from 20,000 faces on).
    #[arg(long, default_value = "auto")]
    index: IndexKind,
    /// PostgreSQL gallery: database connections at most; requests beyond wait for one.
    #[arg(long, default_value_t = 16)]
    db_pool: usize,
    /// PostgreSQL gallery: seconds a request waits for a connection, and that the server
    /// lets one statement run, before the request fails with 503.
    #[arg(long, default_value_t = 5)]
    db_timeout_s: u64,
    /// PostgreSQL gallery: HNSW search breadth (hnsw.ef_search); higher finds the true best
    /// face more often, slower.
    #[arg(long, default_value_t = 100)]
    ef_search: usize,
}

pub fn run(global: &GlobalArgs, args: Args) -> anyhow::Result<ExitCode> {
    // One single-threaded session per core: concurrent requests run side by side instead of
    // queueing for one pool of all cores (at 50 identify/s on 2 cores: 40/s served and
    // seconds of queue with the shared pool; all served, p99 54 ms, with these).
    let postgres = PostgresOptions {
        max_connections: args.db_pool,
        wait_timeout: Duration::from_secs(args.db_timeout_s),
        statement_timeout: Duration::from_secs(args.db_timeout_s),
        ef_search: args.ef_search,
    };
    let gallery = Gallery::open_with(&args.gallery, &postgres)?.with_index(args.index);
    let model = gallery_model(&gallery, args.model.clone())?;
    let recognizer = global.recognizer(&model, Parallelism::Throughput)?;
    let threshold = recognizer.threshold(args.threshold)?;
    let identify = args.threshold.map_or(Decision::Fpir(args.fpir), Decision::Threshold);
    // Refused now, not at the first request, when the model has no calibration.
    recognizer.open_set_threshold(&gallery, identify)?;
    let options = Options { threshold, identify, keep_crops: args.keep_crops, access_log: !global.quiet };
    let defaults = Limits::default();
    let limits = Limits {
        max_body_bytes: args.max_body_mb << 20,
        request_timeout: Duration::from_secs(args.timeout_s),
        max_in_flight: args.max_in_flight,
        max_concurrent: args.max_concurrent.unwrap_or(defaults.max_concurrent),
        header_timeout: Duration::from_secs(args.header_timeout_s),
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        ops_reserve: args.ops_reserve,
        write_timeout: Duration::from_secs(args.write_timeout_s),
        min_body_rate: args.min_body_kib_s << 10,
        body_budget_bytes: args.body_memory_mb << 20,
        decode_budget_bytes: args.decode_memory_mb << 20,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout_s),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let service = Service::bind(recognizer, gallery, options, &args.bind, limits).await?;
        // Tests and scripts read the port from this line.
        eprintln!("maskid: listening on http://{} (gallery {})", service.local_addr()?, args.gallery);
        service.run(maskid_service::shutdown_signal()).await;
        anyhow::Ok(())
    })?;
    // Model work still running for a request whose client is gone ends within its decode;
    // a stop does not wait longer than that.
    runtime.shutdown_timeout(Duration::from_secs(5));
    eprintln!("maskid: stopped");
    Ok(ExitCode::SUCCESS)
}
