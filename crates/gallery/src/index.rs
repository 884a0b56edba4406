//! Nearest-neighbour search by cosine similarity. [`ExactIndex`] keeps the unit embeddings row
//! by row in one contiguous matrix and scans it in blocks across threads; [`FaceIndex`] adds,
//! for large galleries, 512-bit sign sketches of every row ([`Sketches`]) that pick a short
//! list of candidates which the exact rows then rescore.

use std::collections::HashMap;
use std::str::FromStr;

use rayon::prelude::*;

use crate::sketch::Sketches;

/// Rows per block: 4,096 rows of 512 floats is 8 MiB, a fair share of one core's cache walk.
const BLOCK_ROWS: usize = 4096;

/// Rows per block when several queries share the walk: small enough that the block stays in
/// the L2 cache while every query passes over it.
const MANY_BLOCK_ROWS: usize = 256;

/// Rescored rows per parallel task.
const RESCORE_CHUNK: usize = 256;

/// Faces from which `IndexKind::Auto` searches by sketches: below it an exact scan takes
/// about 2 ms or less on two cores (BENCHMARKS.md, "Gallery search").
pub const AUTO_SKETCH_FACES: usize = 20_000;

/// Candidates the sketches hand to the exact rows: at 1M faces, enough for recall@1 above 0.99
/// for probes at cosine 0.4 from their match (BENCHMARKS.md); each costs one scattered row read.
pub const DEFAULT_RESCORE: usize = 1000;

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
    row_of: HashMap<i64, usize>,
}

impl ExactIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self { dim, ..Self::default() }
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

    /// Bytes held per vector: the row, its id and its slot in the id map.
    pub fn bytes_per_vector(&self) -> usize {
        self.dim * 4 + 8 + 16
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.rows[i * self.dim..(i + 1) * self.dim]
    }

    /// Adds a vector; a wrong length or an id already there is refused.
    pub fn add(&mut self, id: i64, vector: &[f32]) -> Result<(), String> {
        if vector.len() != self.dim {
            return Err(format!("vector of {} values in an index of dimension {}", vector.len(), self.dim));
        }
        if self.row_of.contains_key(&id) {
            return Err(format!("face {id} is already in the index"));
        }
        self.row_of.insert(id, self.ids.len());
        self.ids.push(id);
        self.rows.extend_from_slice(vector);
        Ok(())
    }

    /// Removes the vector of `id`, the last row moving into its place; returns the row it had.
    pub fn remove(&mut self, id: i64) -> Option<usize> {
        let i = self.row_of.remove(&id)?;
        let last = self.ids.len() - 1;
        self.ids.swap_remove(i);
        if i != last {
            self.row_of.insert(self.ids[i], i);
            let (head, tail) = self.rows.split_at_mut(last * self.dim);
            head[i * self.dim..(i + 1) * self.dim].copy_from_slice(&tail[..self.dim]);
        }
        self.rows.truncate(last * self.dim);
        Some(i)
    }

    /// The `k` rows most similar to `query`, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        if k == 0 || self.is_empty() || query.len() != self.dim {
            return Vec::new();
        }
        self.rows
            .par_chunks(BLOCK_ROWS * self.dim)
            .enumerate()
            .map(|(block, rows)| {
                let mut top = Vec::with_capacity(k + 1);
                self.score_block(block * BLOCK_ROWS, rows, query, &mut top, k);
                top
            })
            .reduce(Vec::new, merge_top(k))
    }

    /// The `k` best rows for each of several queries (laid end to end): one pass over the
    /// matrix, each block of rows scored against every query while it sits in cache.
    pub fn search_many(&self, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
        let count = queries.len().checked_div(self.dim).unwrap_or(0);
        if k == 0 || self.is_empty() || queries.len() != count * self.dim {
            return vec![Vec::new(); count];
        }
        self.rows
            .par_chunks(MANY_BLOCK_ROWS * self.dim)
            .enumerate()
            .map(|(block, rows)| {
                let mut tops = vec![Vec::with_capacity(k + 1); count];
                for (query, top) in queries.chunks_exact(self.dim).zip(&mut tops) {
                    self.score_block(block * MANY_BLOCK_ROWS, rows, query, top, k);
                }
                tops
            })
            .reduce(|| vec![Vec::new(); count], |a, b| a.into_iter().zip(b).map(|(a, b)| merge_top(k)(a, b)).collect())
    }

    /// Scores consecutive `rows` (the first is row `first`) against `query` into `top`.
    fn score_block(&self, first: usize, rows: &[f32], query: &[f32], top: &mut Vec<Hit>, k: usize) {
        for (r, row) in rows.chunks_exact(self.dim).enumerate() {
            push_top(top, Hit { id: self.ids[first + r], score: dot(row, query) }, k);
        }
    }

    /// The `k` best of the given rows.
    fn rescore(&self, rows: &[usize], query: &[f32], k: usize) -> Vec<Hit> {
        rows.par_chunks(RESCORE_CHUNK)
            .map(|rows| {
                let mut top = Vec::with_capacity(k + 1);
                for (n, &i) in rows.iter().enumerate() {
                    // Scattered rows miss every cache: ask for the next ones while scoring this one.
                    if let Some(&ahead) = rows.get(n + PREFETCH_AHEAD) {
                        prefetch(self.row(ahead));
                    }
                    push_top(&mut top, Hit { id: self.ids[i], score: dot(self.row(i), query) }, k);
                }
                top
            })
            .reduce(Vec::new, merge_top(k))
    }
}

/// Which search a [`FaceIndex`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IndexKind {
    /// Exact below [`AUTO_SKETCH_FACES`] faces, sketched from there on.
    #[default]
    Auto,
    /// Every row scored: always the true best, slower on large galleries.
    Exact,
    /// Sign sketches pick candidates, exact rows rescore them: approximate, fast at any size.
    Sketch,
}

impl FromStr for IndexKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "exact" => Ok(Self::Exact),
            "sketch" => Ok(Self::Sketch),
            _ => Err(format!("unknown index {s:?}: auto, exact or sketch")),
        }
    }
}

/// The face index of a gallery: exact rows, plus sketches of them when the kind asks for it.
#[derive(Debug, Clone)]
pub struct FaceIndex {
    kind: IndexKind,
    exact: ExactIndex,
    sketches: Option<Sketches>,
    rescore: usize,
}

impl FaceIndex {
    /// An empty index of `dim`-dimensional vectors.
    pub fn new(kind: IndexKind, dim: usize) -> Self {
        let mut this = Self { kind, exact: ExactIndex::new(dim), sketches: None, rescore: DEFAULT_RESCORE };
        this.follow_kind();
        this
    }

    /// Sets how many sketch candidates the exact rows rescore (more: better recall, slower).
    pub fn with_rescore(mut self, rescore: usize) -> Self {
        self.rescore = rescore.max(1);
        self
    }

    /// The kind it was made with.
    pub fn kind(&self) -> IndexKind {
        self.kind
    }

    /// Switches the kind, sketching every row at once (in parallel) or dropping the sketches.
    pub fn set_kind(&mut self, kind: IndexKind) {
        self.kind = kind;
        if kind == IndexKind::Exact {
            self.sketches = None;
        }
        self.follow_kind();
    }

    /// Vectors held.
    pub fn len(&self) -> usize {
        self.exact.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.exact.dim()
    }

    /// The exact rows (for exact answers whatever the kind).
    pub fn exact(&self) -> &ExactIndex {
        &self.exact
    }

    /// Whether searches go through sketches now.
    pub fn is_sketched(&self) -> bool {
        self.sketches.is_some()
    }

    /// Bytes held per vector.
    pub fn bytes_per_vector(&self) -> usize {
        self.exact.bytes_per_vector() + if self.is_sketched() { Sketches::BYTES } else { 0 }
    }

    /// Adds a vector (see [`ExactIndex::add`]).
    pub fn add(&mut self, id: i64, vector: &[f32]) -> Result<(), String> {
        self.exact.add(id, vector)?;
        match &mut self.sketches {
            Some(sketches) => sketches.push(vector),
            None => self.follow_kind(),
        }
        Ok(())
    }

    /// Removes the vector of `id`; false if absent.
    pub fn remove(&mut self, id: i64) -> bool {
        let Some(row) = self.exact.remove(id) else { return false };
        if let Some(sketches) = &mut self.sketches {
            sketches.swap_remove(row);
        }
        true
    }

    /// The `k` rows most similar to `query`, best first.
    pub fn search(&self, query: &[f32], k: usize) -> Vec<Hit> {
        match &self.sketches {
            Some(sketches) if query.len() == self.dim() => {
                let rows = sketches.candidates(query, self.rescore.max(k));
                self.exact.rescore(&rows, query, k)
            }
            _ => self.exact.search(query, k),
        }
    }

    /// Sketches every row once `Auto` reaches its size, or from the start for `Sketch`.
    fn follow_kind(&mut self) {
        let wanted = match self.kind {
            IndexKind::Exact => false,
            IndexKind::Sketch => true,
            IndexKind::Auto => self.len() >= AUTO_SKETCH_FACES,
        };
        if wanted && self.sketches.is_none() && self.dim() > 0 {
            let mut sketches = Sketches::new(self.dim());
            sketches.extend(&self.exact.rows);
            self.sketches = Some(sketches);
        }
    }
}

/// Rows ahead of the one being rescored whose memory is requested early.
const PREFETCH_AHEAD: usize = 2;

/// Asks the CPU to bring `row` into cache (a hint; no effect elsewhere than on x86-64).
fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in row.chunks(16) {
        // SAFETY: a prefetch only hints at an address, here one inside `row`; it cannot fault.
        unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Cosine similarity of two unit vectors; sixteen running sums let the compiler vectorise it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (a16, b16) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = a16.remainder().iter().zip(b16.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in a16.zip(b16) {
        for i in 0..16 {
            lanes[i] += x[i] * y[i];
        }
    }
    lanes.iter().sum::<f32>() + tail
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

/// Merges two best-first lists into the best `k`.
fn merge_top(k: usize) -> impl Fn(Vec<Hit>, Vec<Hit>) -> Vec<Hit> {
    move |mut a, b| {
        for hit in b {
            push_top(&mut a, hit, k);
        }
        a
    }
}
