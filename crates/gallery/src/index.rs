//! Exact nearest-neighbour search by cosine similarity: the unit embeddings sit row by row in
//! one contiguous matrix, scanned in blocks of rows across threads, each block keeping its own
//! top k.

use rayon::prelude::*;

/// Rows per block: 4,096 rows of 512 floats is 8 MiB, a fair share of one core's cache walk.
const BLOCK_ROWS: usize = 4096;

/// One search hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The face id given when the row was added.
    pub id: i64,
    /// Cosine similarity to the query.
    pub score: f32,
}

/// All embeddings of one model, searched exhaustively.
#[derive(Debug, Clone, Default)]
pub struct ExactIndex {
    dim: usize,
    ids: Vec<i64>,
    rows: Vec<f32>,
}

impl ExactIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self { dim, ids: Vec::new(), rows: Vec::new() }
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds a vector; a wrong length is refused.
    pub fn add(&mut self, id: i64, vector: &[f32]) -> Result<(), String> {
        if vector.len() != self.dim {
            return Err(format!("vector of {} values in an index of dimension {}", vector.len(), self.dim));
        }
        self.ids.push(id);
        self.rows.extend_from_slice(vector);
        Ok(())
    }

    /// Removes the vector of `id` (the last row moves into its place); false if absent.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(i) = self.ids.iter().position(|&x| x == id) else { return false };
        let last = self.ids.len() - 1;
        self.ids.swap_remove(i);
        if i != last {
            let (head, tail) = self.rows.split_at_mut(last * self.dim);
            head[i * self.dim..(i + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
        }
        self.rows.truncate(last * self.dim);
        true
    }

    /// The `k` rows most similar to `query`, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        let best = self
            .rows
            .par_chunks(BLOCK_ROWS * self.dim)
            .enumerate()
            .map(|(block, rows)| {
                let mut top = Vec::with_capacity(k + 1);
                for (r, row) in rows.chunks_exact(self.dim).enumerate() {
                    let score: f32 = row.iter().zip(query).map(|(a, b)| a * b).sum();
                    push_top(&mut top, Hit { id: self.ids[block * BLOCK_ROWS + r], score }, k);
                }
                top
            })
            .reduce(Vec::new, |mut a, b| {
                for hit in b {
                    push_top(&mut a, hit, k);
                }
                a
            });
        best
    }
}

/// Keeps `top` sorted best first and at most `k` long.
fn push_top(top: &mut Vec<Hit>, hit: Hit, k: usize) {
    if top.len() == k && top[k - 1].score >= hit.score {
        return;
    }
    let at = top.partition_point(|h| h.score >= hit.score);
    top.insert(at, hit);
    top.truncate(k);
}
