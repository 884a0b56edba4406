//! `maskid bench --search`: gallery search over random unit vectors of 512 values (10k, 100k,
//! 1M by default): latency per query and memory per vector.

use std::time::Instant;

use maskid_gallery::ExactIndex;
use serde::Serialize;

/// One gallery size.
#[derive(Serialize)]
pub struct SearchSpeed {
    pub index: &'static str,
    pub vectors: usize,
    pub dim: usize,
    pub queries: usize,
    pub build_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub bytes_per_vector: f64,
}

/// Seeded random unit vectors (xorshift, Box-Muller-free: uniform in [-1, 1] then normalised,
/// which is enough for timing and recall).
fn unit_vectors(count: usize, dim: usize, seed: u64) -> Vec<f32> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(count * dim);
    for _ in 0..count {
        let start = out.len();
        for _ in 0..dim {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.push(((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0);
        }
        let norm = out[start..].iter().map(|v| v * v).sum::<f32>().sqrt();
        out[start..].iter_mut().for_each(|v| *v /= norm);
    }
    out
}

/// Times `queries` top-10 searches of the exact index at each size.
pub fn search_speed(sizes: &[usize], queries: usize) -> anyhow::Result<Vec<SearchSpeed>> {
    let dim = 512;
    let probes = unit_vectors(queries, dim, 99);
    let mut out = Vec::new();
    for &n in sizes {
        let vectors = unit_vectors(n, dim, n as u64);
        let start = Instant::now();
        let mut index = ExactIndex::new(dim);
        for (i, v) in vectors.chunks_exact(dim).enumerate() {
            index.add(i as i64, v).map_err(anyhow::Error::msg)?;
        }
        let build_s = start.elapsed().as_secs_f64();
        drop(vectors);
        let mut ms: Vec<f64> = probes
            .chunks_exact(dim)
            .map(|q| {
                let t = Instant::now();
                std::hint::black_box(index.search(q, 10));
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        out.push(SearchSpeed {
            index: "exact",
            vectors: n,
            dim,
            queries,
            build_s,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
            bytes_per_vector: (dim * 4 + 8) as f64,
        });
    }
    Ok(out)
}
