//! Sign sketches for approximate search (SimHash, Charikar 2002): each vector becomes 512 bits,
//! the signs of a fixed random rotation of it. Two vectors at angle θ differ in a fraction θ/π of
//! the bits, so the Hamming distance between sketches orders a gallery nearly as cosine does,
//! at 64 bytes and a few popcounts per face. The rotation is a randomised Hadamard transform
//! (sign flips, then the fast Walsh-Hadamard transform, twice): O(d log d) instead of a dense
//! d x d matrix, and as good a mixer for this purpose.
//!
//! Why not a graph index (HNSW): on random 512-d vectors, usearch's HNSW (M 32, ef_construction
//! 256) reached recall@1 0.98 at 100k faces for probes at cosine 0.4 only with ef 512 (3.4 ms),
//! took 75 s to build 100k on two cores and grows worse with size; a sketch scan touches 64 MB
//! at 1M faces, builds in seconds and keeps recall by rescoring more candidates.

use rayon::prelude::*;

/// Bits per sketch.
const BITS: usize = 512;
const WORDS: usize = BITS / 64;

/// Sketches per parallel block.
const BLOCK: usize = 16_384;

type Sketch = [u64; WORDS];
type Histogram = [u32; BITS + 1];

/// The sketches of an index's rows, in row order.
#[derive(Debug, Clone)]
pub struct Sketches {
    rotation: Rotation,
    codes: Vec<Sketch>,
}

impl Sketches {
    /// Bytes per sketch.
    pub const BYTES: usize = BITS / 8;

    /// No sketches yet, for `dim`-dimensional vectors.
    pub fn new(dim: usize) -> Self {
        Self { rotation: Rotation::new(dim), codes: Vec::new() }
    }

    /// Sketches one more row.
    pub fn push(&mut self, vector: &[f32]) {
        self.codes.push(self.rotation.sketch(vector));
    }

    /// Sketches rows laid end to end, in parallel.
    pub fn extend(&mut self, rows: &[f32]) {
        let rotation = &self.rotation;
        let codes: Vec<Sketch> = rows.par_chunks_exact(rotation.dim).map(|row| rotation.sketch(row)).collect();
        self.codes.extend(codes);
    }

    /// Mirrors [`crate::ExactIndex::remove`]: the last sketch moves into `row`.
    pub fn swap_remove(&mut self, row: usize) {
        self.codes.swap_remove(row);
    }

    /// Rows whose sketches are nearest the query's: `count` of them (all, if fewer), those
    /// under the cut-off distance in row order, then enough of those at it.
    pub fn candidates(&self, query: &[f32], count: usize) -> Vec<usize> {
        let q = self.rotation.sketch(query);
        // Taken out and put back (not borrowed): a nested search on this thread gets a new one.
        let mut distances = DISTANCES.take();
        distances.resize(self.codes.len(), 0);
        // Distances and a histogram of them per block; the histogram gives the cut-off.
        let histogram = self
            .codes
            .par_chunks(BLOCK)
            .zip(distances.par_chunks_mut(BLOCK))
            .map(|(codes, out)| block_distances(codes, &q, out))
            .reduce(|| [0; BITS + 1], |a, b| std::array::from_fn(|d| a[d] + b[d]));
        let (cutoff, below) = cutoff(&histogram, count);
        // Everything under the cut-off, and of the rows at it only as many as are needed.
        let (mut rows, ties) = distances
            .par_chunks(BLOCK)
            .enumerate()
            .map(|(block, distances)| {
                let (mut under, mut at) = (Vec::new(), Vec::new());
                for (i, &d) in distances.iter().enumerate() {
                    if d < cutoff {
                        under.push(block * BLOCK + i);
                    } else if d == cutoff {
                        at.push(block * BLOCK + i);
                    }
                }
                (under, at)
            })
            .reduce(
                || (Vec::new(), Vec::new()),
                |(mut a, mut b), (c, d)| {
                    a.extend(c);
                    b.extend(d);
                    (a, b)
                },
            );
        rows.extend(ties.into_iter().take(count.saturating_sub(below)));
        DISTANCES.set(distances);
        rows
    }
}

thread_local! {
    /// Each searching thread's buffer of distances, kept between queries (2 MB at 1M faces).
    static DISTANCES: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
}

/// The smallest distance with at least `count` rows at or under it, and the rows under it.
fn cutoff(histogram: &[u32], count: usize) -> (u16, usize) {
    let mut below = 0usize;
    for (d, &n) in histogram.iter().enumerate() {
        if below + n as usize >= count {
            return (d as u16, below);
        }
        below += n as usize;
    }
    (histogram.len() as u16, below)
}

/// Hamming distances from `q` to one block's sketches and their histogram, with the CPU's
/// popcount instruction when it has one.
fn block_distances(codes: &[Sketch], q: &Sketch, out: &mut [u16]) -> Histogram {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("popcnt") {
        // SAFETY: the CPU has popcnt, checked just above.
        return unsafe { block_distances_popcnt(codes, q, out) };
    }
    block_distances_portable(codes, q, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
fn block_distances_popcnt(codes: &[Sketch], q: &Sketch, out: &mut [u16]) -> Histogram {
    block_distances_portable(codes, q, out)
}

#[inline(always)]
fn block_distances_portable(codes: &[Sketch], q: &Sketch, out: &mut [u16]) -> Histogram {
    let mut histogram = [0; BITS + 1];
    for (code, d) in codes.iter().zip(out) {
        *d = code.iter().zip(q).map(|(a, b)| (a ^ b).count_ones() as u16).sum();
        histogram[*d as usize] += 1;
    }
    histogram
}

/// A fixed random rotation of `dim`-dimensional vectors, read out as `BITS` signs: the vector
/// is zero-padded to a power of two and rotated as many times (with different signs) as it
/// takes to give that many coordinates.
#[derive(Debug, Clone)]
struct Rotation {
    dim: usize,
    padded: usize,
    /// Per round, two passes of ±1 factors.
    signs: Vec<[Vec<f32>; 2]>,
}

impl Rotation {
    fn new(dim: usize) -> Self {
        let padded = dim.next_power_of_two().max(2);
        let rounds = BITS.div_ceil(padded);
        // A fixed seed: the same vector always gets the same sketch.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut sign = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if state & 1 == 0 {
                1.0
            } else {
                -1.0
            }
        };
        let signs = (0..rounds)
            .map(|_| [(0..padded).map(|_| sign()).collect(), (0..padded).map(|_| sign()).collect()])
            .collect();
        Self { dim, padded, signs }
    }

    fn sketch(&self, vector: &[f32]) -> Sketch {
        let mut code = [0u64; WORDS];
        let mut bit = 0;
        let mut x = vec![0f32; self.padded];
        let used = self.dim.min(vector.len());
        for [first, second] in &self.signs {
            x.fill(0.0);
            x[..used].copy_from_slice(&vector[..used]);
            for pass in [first, second] {
                x.iter_mut().zip(pass).for_each(|(v, s)| *v *= s);
                walsh_hadamard(&mut x);
            }
            for &v in x.iter().take(BITS - bit) {
                if v > 0.0 {
                    code[bit / 64] |= 1 << (bit % 64);
                }
                bit += 1;
            }
        }
        code
    }
}

/// The fast Walsh-Hadamard transform in place (unnormalised: only signs are read).
fn walsh_hadamard(x: &mut [f32]) {
    let mut h = 1;
    while h < x.len() {
        for pair in x.chunks_exact_mut(2 * h) {
            let (a, b) = pair.split_at_mut(h);
            for (u, v) in a.iter_mut().zip(b) {
                (*u, *v) = (*u + *v, *u - *v);
            }
        }
        h *= 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hamming distance between the sketches of two vectors.
    fn distance(sketches: &Sketches, a: &[f32], b: &[f32]) -> u32 {
        let (a, b) = (sketches.rotation.sketch(a), sketches.rotation.sketch(b));
        a.iter().zip(&b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    #[test]
    fn hamming_distance_tracks_the_angle() {
        // Vectors at known angles from e0 in 64-d: the fraction of differing bits approaches θ/π.
        let dim = 64;
        let sketches = Sketches::new(dim);
        let e0: Vec<f32> = (0..dim).map(|i| if i == 0 { 1.0 } else { 0.0 }).collect();
        for degrees in [10.0f32, 45.0, 90.0, 135.0] {
            let theta = degrees.to_radians();
            // Spread the orthogonal part over many coordinates so the rotation sees a generic vector.
            let mut v = vec![theta.sin() / ((dim - 1) as f32).sqrt(); dim];
            v[0] = theta.cos();
            let fraction = distance(&sketches, &e0, &v) as f32 / BITS as f32;
            assert!((fraction - degrees / 180.0).abs() < 0.1, "{degrees}°: {fraction}");
        }
    }

    #[test]
    fn block_distances_are_hamming_distances_with_their_histogram() {
        let dim = 16;
        let mut state = 3u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        };
        let rows: Vec<f32> = (0..64 * dim).map(|_| next()).collect();
        let mut sketches = Sketches::new(dim);
        sketches.extend(&rows);
        let query = &rows[5 * dim..6 * dim];
        let q = sketches.rotation.sketch(query);
        let (mut fast, mut portable) = ([0u16; 64], [0u16; 64]);
        let histogram = block_distances(&sketches.codes, &q, &mut fast);
        let same = block_distances_portable(&sketches.codes, &q, &mut portable);
        assert_eq!((histogram, fast), (same, portable), "popcount and portable code agree");
        assert_eq!(fast[5], 0, "the query's own row");
        for (i, &d) in fast.iter().enumerate() {
            assert_eq!(d as u32, distance(&sketches, query, &rows[i * dim..(i + 1) * dim]));
        }
        assert_eq!(histogram.iter().sum::<u32>(), 64);
        let opposite: Vec<f32> = query.iter().map(|x| -x).collect();
        assert_eq!(distance(&sketches, query, &opposite), BITS as u32, "a vector and its opposite differ in every bit");
    }
}
