//! `maskid bench --search`: gallery search over random unit vectors (512 values unless
//! `--search-dim`; 10k, 100k, 1M by default), exact and sketched: latency per query, recall@1 of the sketched search
//! against the exact one, build time and memory per vector.
//!
//! Two kinds of query: *probes*, each an enrolled vector turned to cosine 0.4 from it (a hard
//! genuine match, just above the teacher's threshold), and *random* unit vectors (nobody
//! enrolled: the best face lies near cosine 0.2, under every threshold, so which face it is
//! never changes a decision).
//!
//! Each size is also written to a gallery file (two faces per person, enrolled one by one as
//! `maskid enroll` does: the enrolment rate) to time a restart: opening the file and
//! rebuilding the index from the stored embeddings.
//!
//! With `--gallery postgres://...`, the same vectors also go into a scratch database on that
//! server (one face per person, by the bulk import `gallery import` uses; it is dropped
//! after), searched through the gallery as `identify` does: exact (every row scored on the
//! server) and by pgvector's HNSW index, against the same exact answers; then 1,000 more faces
//! enrolled one by one.

use std::time::Instant;

use maskid_core::Embedding;
use maskid_gallery::{
    ExportedFace, ExportedSubject, FaceIndex, Gallery, IndexKind, ModelRef, NewFace, PostgresOptions, ScratchDatabase,
    SqliteStore, SubjectIndex,
};
use serde::Serialize;

use crate::percentile;

/// Cosine between a probe and the enrolled vector it was made from.
const PROBE_COSINE: f32 = 0.4;

/// Exact searches timed one by one per size (each takes ~0.1 s at 1M).
const EXACT_TIMED: usize = 100;

/// One index at one gallery size.
#[derive(Serialize)]
pub struct SearchSpeed {
    /// `exact`, `sketch`, `postgres-exact` or `postgres-hnsw`.
    pub index: &'static str,
    /// Vectors searched.
    pub vectors: usize,
    /// Values per vector.
    pub dim: usize,
    /// Queries timed.
    pub queries: usize,
    /// Candidates rescored (sketch only).
    pub rescore: Option<usize>,
    /// Seconds to build the index (or load the vectors).
    pub build_s: f64,
    /// Median query time.
    pub p50_ms: f64,
    /// 99th percentile query time.
    pub p99_ms: f64,
    /// Top-1 equal to the exact top-1, for probes of enrolled vectors.
    pub recall_at_1_probes: f64,
    /// The same for random queries.
    pub recall_at_1_random: f64,
    /// Bytes the index holds per vector.
    pub bytes_per_vector: usize,
    /// Growth of the process's resident memory per vector while the index was built.
    pub resident_bytes_per_vector: Option<f64>,
    /// Opening a gallery file of these vectors and rebuilding this index from it (PostgreSQL:
    /// opening the gallery and answering a first query).
    pub restart_s: f64,
    /// Faces enrolled per second, one by one, each in its own transaction, into a gallery
    /// of this size.
    pub enrol_per_s: Option<f64>,
}

/// Where `--search` also measures PostgreSQL: a server URL (maskid creates and drops a
/// scratch database on it) and the HNSW search breadth.
pub struct PostgresBench<'a> {
    /// postgres://USER:PASSWORD@HOST:PORT/DB of a server with pgvector.
    pub url: &'a str,
    /// pgvector's `hnsw.ef_search`.
    pub ef_search: usize,
}

/// A seeded source of uniform numbers in [-1, 1) (xorshift).
struct Uniform(u64);

impl Uniform {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 23) as f32) - 1.0
    }

    /// `count` unit vectors laid end to end (uniform in the cube, then normalised: close enough
    /// to uniform on the sphere in 512-d for timing and recall).
    fn unit_vectors(&mut self, count: usize, dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            let v: Vec<f32> = (0..dim).map(|_| self.next()).collect();
            out.extend(normalised(v));
        }
        out
    }
}

fn normalised(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A unit vector at exactly `cosine` from the unit vector `target`, in a random direction.
fn probe_of(target: &[f32], cosine: f32, random: &mut Uniform) -> Vec<f32> {
    let u: Vec<f32> = target.iter().map(|_| random.next()).collect();
    let along: f32 = u.iter().zip(target).map(|(a, b)| a * b).sum();
    let side = normalised(u.iter().zip(target).map(|(a, b)| a - along * b).collect());
    let sine = (1.0 - cosine * cosine).sqrt();
    target.iter().zip(&side).map(|(t, s)| cosine * t + sine * s).collect()
}

/// Resident memory of this process, where /proc tells it.
fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096.0)
}

/// Times `queries` top-10 searches of each index at each size.
pub fn search_speed(
    sizes: &[usize],
    queries: usize,
    rescore: usize,
    dim: usize,
    postgres: Option<&PostgresBench>,
) -> anyhow::Result<Vec<SearchSpeed>> {
    anyhow::ensure!(queries > 0, "--queries must be at least 1");
    anyhow::ensure!(dim >= 2, "--search-dim must be at least 2");
    let mut out = Vec::new();
    for &n in sizes {
        anyhow::ensure!(n > 0, "a gallery size of 0");
        eprintln!("maskid: search over {n} vectors: generating them");
        let mut random = Uniform(n as u64 | 1);
        let vectors = random.unit_vectors(n, dim);
        let probes: Vec<f32> = (0..queries)
            .flat_map(|q| {
                let target = (q * 7919) % n;
                probe_of(&vectors[target * dim..(target + 1) * dim], PROBE_COSINE, &mut random)
            })
            .collect();
        let randoms = random.unit_vectors(queries, dim);
        eprintln!("maskid: search over {n} vectors: writing them to a gallery file");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bench.db");
        let start = Instant::now();
        write_gallery(&path, &vectors, dim)?;
        let sqlite_enrol_per_s = n as f64 / start.elapsed().as_secs_f64();
        let restart = |kind: IndexKind| -> anyhow::Result<f64> {
            let start = Instant::now();
            let index = SubjectIndex::load(&SqliteStore::open(&path)?, kind)?;
            anyhow::ensure!(index.len() == n, "the gallery gave back {} faces of {n}", index.len());
            Ok(start.elapsed().as_secs_f64())
        };
        let (exact_restart_s, sketch_restart_s) = (restart(IndexKind::Exact)?, restart(IndexKind::Sketch)?);
        drop(dir);

        let before = resident_bytes();
        let start = Instant::now();
        let mut index = FaceIndex::new(IndexKind::Exact, dim).with_rescore(rescore);
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            index.add(i as i64, v).map_err(anyhow::Error::msg)?;
        }
        let exact_build_s = start.elapsed().as_secs_f64();
        let exact_resident = before.zip(resident_bytes()).map(|(a, b)| (b - a) / n as f64);

        eprintln!("maskid: search over {n} vectors: exact answers for {} queries", 2 * queries);
        let truth = |queries: &[f32]| -> Vec<i64> {
            index.exact().search_many(queries, 1).into_iter().map(|hits| hits[0].id).collect()
        };
        let (truth_probes, truth_random) = (truth(&probes), truth(&randoms));

        let timed = |index: &FaceIndex, queries: &[f32], limit: usize| -> (Vec<f64>, Vec<i64>) {
            let mut ms = Vec::new();
            let mut best = Vec::new();
            for q in queries.chunks_exact(dim).take(limit) {
                let t = Instant::now();
                let hits = index.search(q, 10);
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                best.push(hits[0].id);
            }
            (ms, best)
        };

        eprintln!("maskid: search over {n} vectors: timing the exact index");
        let (mut ms, _) = timed(&index, &probes, EXACT_TIMED);
        ms.sort_by(f64::total_cmp);
        out.push(SearchSpeed {
            index: "exact",
            vectors: n,
            dim,
            queries: ms.len(),
            rescore: None,
            build_s: exact_build_s,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            recall_at_1_probes: 1.0,
            recall_at_1_random: 1.0,
            bytes_per_vector: index.bytes_per_vector(),
            resident_bytes_per_vector: exact_resident,
            restart_s: exact_restart_s,
            enrol_per_s: Some(sqlite_enrol_per_s),
        });

        eprintln!("maskid: search over {n} vectors: sketching and timing the sketched index");
        let before = resident_bytes();
        let start = Instant::now();
        index.set_kind(IndexKind::Sketch);
        let sketch_build_s = start.elapsed().as_secs_f64();
        let sketch_resident = before.zip(resident_bytes()).map(|(a, b)| (b - a) / n as f64);
        let (mut ms, found_probes) = timed(&index, &probes, queries);
        let (random_ms, found_random) = timed(&index, &randoms, queries);
        ms.extend(random_ms);
        ms.sort_by(f64::total_cmp);
        out.push(SearchSpeed {
            index: "sketch",
            vectors: n,
            dim,
            queries: ms.len(),
            rescore: Some(rescore),
            build_s: exact_build_s + sketch_build_s,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            recall_at_1_probes: recall_at_1(&found_probes, &truth_probes),
            recall_at_1_random: recall_at_1(&found_random, &truth_random),
            bytes_per_vector: index.bytes_per_vector(),
            resident_bytes_per_vector: exact_resident.zip(sketch_resident).map(|(a, b)| a + b),
            restart_s: sketch_restart_s,
            enrol_per_s: Some(sqlite_enrol_per_s),
        });
        drop(index);
        if let Some(pg) = postgres {
            let truth = Truth { probes: &truth_probes, random: &truth_random };
            out.extend(postgres_speed(pg, &vectors, dim, &probes, &randoms, &truth)?);
        }
    }
    Ok(out)
}

/// The exact answers (face ids) of the probes and of the random queries.
struct Truth<'a> {
    probes: &'a [i64],
    random: &'a [i64],
}

/// The same vectors in a scratch PostgreSQL database: exact and HNSW search through the
/// gallery, as `identify` runs them.
fn postgres_speed(
    pg: &PostgresBench,
    vectors: &[f32],
    dim: usize,
    probes: &[f32],
    randoms: &[f32],
    truth: &Truth,
) -> anyhow::Result<Vec<SearchSpeed>> {
    let n = vectors.len() / dim;
    let scratch = ScratchDatabase::create(pg.url, &format!("maskid_bench_{}_{n}", std::process::id()))?;
    let options = PostgresOptions { ef_search: pg.ef_search, ..Default::default() };
    let created = "2026-01-01T00:00:00Z".to_string();
    let subjects: Vec<ExportedSubject> = (0..n)
        .map(|i| ExportedSubject { name: format!("f{i}"), metadata: serde_json::json!({}), created: created.clone() })
        .collect();
    let model = bench_model();
    let faces: Vec<ExportedFace> = vectors
        .chunks_exact(dim)
        .enumerate()
        .map(|(i, v)| ExportedFace {
            subject: format!("f{i}"),
            embedding: v.to_vec(),
            model: model.clone(),
            source_sha256: format!("{i:064x}"),
            score: 1.0,
            crop: None,
            mask: None,
            created: created.clone(),
        })
        .collect();
    eprintln!("maskid: search over {n} vectors: loading them into PostgreSQL and building the HNSW index");
    let start = Instant::now();
    Gallery::open_with(scratch.location(), &options)?.add_exported(&subjects, &faces)?;
    let build_s = start.elapsed().as_secs_f64();
    drop((subjects, faces));
    let mut out = Vec::new();
    for (name, kind, limit) in
        [("postgres-exact", IndexKind::Exact, EXACT_TIMED), ("postgres-hnsw", IndexKind::Sketch, probes.len())]
    {
        eprintln!("maskid: search over {n} vectors: timing {name}");
        let start = Instant::now();
        let gallery = Gallery::open_with(scratch.location(), &options)?.with_index(kind);
        let model = bench_model();
        gallery.identify(&Embedding::from_unit(randoms[..dim].to_vec()), &model, 10, 0.0)?;
        let restart_s = start.elapsed().as_secs_f64();
        let timed = |queries: &[f32], limit: usize| -> anyhow::Result<(Vec<f64>, Vec<i64>)> {
            let (mut ms, mut best) = (Vec::new(), Vec::new());
            for q in queries.chunks_exact(dim).take(limit) {
                let t = Instant::now();
                let found = gallery.identify(&Embedding::from_unit(q.to_vec()), &model, 10, 0.0)?;
                ms.push(t.elapsed().as_secs_f64() * 1e3);
                best.push(found.first().and_then(|c| c.name[1..].parse().ok()).unwrap_or(-1));
            }
            Ok((ms, best))
        };
        let (mut ms, found_probes) = timed(probes, limit)?;
        let (random_ms, found_random) = timed(randoms, limit)?;
        ms.extend(random_ms);
        ms.sort_by(f64::total_cmp);
        let storage = gallery.storage()?;
        out.push(SearchSpeed {
            index: name,
            vectors: n,
            dim,
            queries: ms.len(),
            rescore: None,
            build_s,
            p50_ms: percentile(&ms, 0.5),
            p99_ms: percentile(&ms, 0.99),
            recall_at_1_probes: recall_at_1(&found_probes, truth.probes),
            recall_at_1_random: recall_at_1(&found_random, truth.random),
            bytes_per_vector: match kind {
                IndexKind::Exact => storage.bytes as usize / n,
                _ => storage.search_index_bytes.unwrap_or(0) as usize / n,
            },
            resident_bytes_per_vector: None,
            restart_s,
            enrol_per_s: None,
        });
    }
    eprintln!("maskid: search over {n} vectors: enrolling 1,000 more faces one by one into PostgreSQL");
    let gallery = Gallery::open_with(scratch.location(), &options)?;
    let mut random = Uniform(n as u64 ^ 0x5eed);
    let extra = random.unit_vectors(1000, dim);
    let start = Instant::now();
    for (i, v) in extra.chunks_exact(dim).enumerate() {
        gallery.enroll(&format!("extra-{i}"), &serde_json::json!({}), &random_face(v, format!("extra-{i}")))?;
    }
    let enrol_per_s = 1000.0 / start.elapsed().as_secs_f64();
    for row in &mut out {
        row.enrol_per_s = Some(enrol_per_s);
    }
    Ok(out)
}

/// A gallery file holding `vectors`, two faces per person, written in one transaction per face
/// as `maskid enroll` writes them.
fn write_gallery(path: &std::path::Path, vectors: &[f32], dim: usize) -> anyhow::Result<()> {
    let mut gallery = SqliteStore::open(path)?;
    let mut subject = 0;
    for (i, v) in vectors.chunks_exact(dim).enumerate() {
        if i % 2 == 0 {
            subject = gallery.add_subject(&format!("person-{}", i / 2), &serde_json::json!({}))?;
        }
        gallery.enroll(subject, &random_face(v, format!("{i:064x}")))?;
    }
    Ok(())
}

/// The model the benchmark's random vectors are enrolled as.
fn bench_model() -> ModelRef {
    ModelRef::new("bench-random", "0".repeat(64), None)
}

/// A random unit vector as a face to enrol.
fn random_face(values: &[f32], source_sha256: String) -> NewFace {
    NewFace {
        embedding: Embedding::from_unit(values.to_vec()),
        model: bench_model(),
        source_sha256,
        score: 1.0,
        crop: None,
        mask: None,
    }
}

/// The share of queries whose top-1 equals the exact top-1.
fn recall_at_1(found: &[i64], truth: &[i64]) -> f64 {
    found.iter().zip(truth).filter(|(a, b)| a == b).count() as f64 / found.len() as f64
}
