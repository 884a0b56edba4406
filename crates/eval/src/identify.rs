//! Identification metrics of protocols.md: rank-k, CMC, and the open-set measures of NIST's
//! FRVT 1:N: the false-negative identification rate (FNIR: a mated probe not found at rank 1
//! above the threshold) at false-positive identification rates (FPIR: non-mated probes, people
//! not enrolled, whose best score passes it), for the whole gallery and for smaller ones.

use serde::Serialize;

/// The FPIRs open-set results are reported at.
pub const FPIRS: [f64; 3] = [1e-1, 1e-2, 1e-3];

/// FNIR at one FPIR.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FnirAtFpir {
    /// Target false-positive identification rate.
    pub fpir: f64,
    /// Share of mated probes not identified at rank 1 above the threshold; `None` when there
    /// are fewer than 1/FPIR non-mated searches.
    pub fnir: Option<f64>,
    /// The threshold: the best score of the non-mated searches that a share FPIR passes.
    pub threshold: Option<f64>,
}

/// Open-set results of one gallery size.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpenSetResult {
    /// People enrolled.
    pub gallery: usize,
    /// Mated searches (probes of enrolled people).
    pub mated: usize,
    /// Non-mated searches.
    pub non_mated: usize,
    /// FNIR at each of [`FPIRS`].
    pub fnir_at_fpir: Vec<FnirAtFpir>,
    /// The DET curve: (FPIR, FNIR) with each distinct non-mated best score as the threshold,
    /// strictest first, ending at (1, FNIR with every score accepted).
    #[serde(skip)]
    pub det: Vec<(f64, f64)>,
}

/// Identification results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdentificationMetrics {
    /// Gallery size.
    pub gallery: usize,
    /// Enrolled probes.
    pub probes: usize,
    /// Non-enrolled probes (open set).
    pub non_enrolled: usize,
    /// Rank-1 identification rate.
    pub rank1: f64,
    /// Rank-5 identification rate.
    pub rank5: f64,
    /// CMC: identification rate at ranks 1..=min(gallery, 20).
    pub cmc: Vec<f64>,
    /// Where the non-mated searches come from: the non-enrolled probes, or (with none) every
    /// enrolled probe searched with its own person taken out of the gallery.
    pub non_mated_from: &'static str,
    /// Open set with the whole gallery.
    pub open_set: OpenSetResult,
    /// Open set with the first N people enrolled, for growing N (the probes of the others
    /// join the non-mated searches); the whole gallery last.
    pub by_gallery_size: Vec<OpenSetResult>,
}

/// Each probe's rank: 1 + the gallery entries other than its own person's scoring at least as
/// high (ties count against the probe). Arguments as for [`identification_metrics`].
pub fn probe_ranks(probe_scores: &[Vec<f32>], truth: &[usize]) -> Vec<usize> {
    probe_scores
        .iter()
        .zip(truth)
        .map(|(row, &t)| 1 + row.iter().enumerate().filter(|(g, s)| *g != t && **s >= row[t]).count())
        .collect()
}

/// The best score of a row over the gallery entries `keep` admits.
fn best(row: &[f32], keep: impl Fn(usize) -> bool) -> f64 {
    row.iter().enumerate().filter(|(g, _)| keep(*g)).map(|(_, s)| f64::from(*s)).fold(f64::NEG_INFINITY, f64::max)
}

/// Open-set results: `mated` are (rank, own score) of mated searches, `non_mated` the best
/// scores of non-mated ones.
fn open_set(gallery: usize, mated: &[(usize, f64)], mut non_mated: Vec<f64>) -> OpenSetResult {
    non_mated.sort_by(|a, b| b.total_cmp(a));
    let n = mated.len().max(1) as f64;
    let fnir_above = |cut: f64| mated.iter().filter(|(rank, score)| !(*rank == 1 && *score > cut)).count() as f64 / n;
    let fnir_at_fpir = FPIRS
        .into_iter()
        .map(|fpir| {
            if (non_mated.len() as f64) < 1.0 / fpir || mated.is_empty() {
                return FnirAtFpir { fpir, fnir: None, threshold: None };
            }
            let cut = non_mated[(fpir * non_mated.len() as f64).floor() as usize];
            FnirAtFpir { fpir, fnir: Some(fnir_above(cut)), threshold: Some(cut) }
        })
        .collect();
    // At each non-mated score as the threshold, the share strictly above it; then accept all.
    let total = non_mated.len().max(1) as f64;
    let mut det: Vec<(f64, f64)> = (0..non_mated.len())
        .filter(|&i| i == 0 || non_mated[i] < non_mated[i - 1])
        .map(|i| (i as f64 / total, fnir_above(non_mated[i])))
        .collect();
    det.push((1.0, fnir_above(f64::NEG_INFINITY)));
    OpenSetResult { gallery, mated: mated.len(), non_mated: non_mated.len(), fnir_at_fpir, det }
}

/// `probe_scores[p][g]`: similarity of probe p to gallery entry g; `truth[p]`: the gallery
/// entry of p's identity. `non_enrolled_scores`: the same rows for people not in the gallery;
/// when there are none, each enrolled probe searched without its own person stands in.
/// Ties count against the probe (its rank is 1 + the entries scoring at least as high).
pub fn identification_metrics(
    probe_scores: &[Vec<f32>],
    truth: &[usize],
    non_enrolled_scores: &[Vec<f32>],
) -> IdentificationMetrics {
    assert_eq!(probe_scores.len(), truth.len(), "BUG: one truth per probe");
    let gallery = probe_scores.first().or(non_enrolled_scores.first()).map_or(0, Vec::len);
    let ranks = probe_ranks(probe_scores, truth);
    let n = ranks.len().max(1) as f64;
    let rate_at = |k: usize| ranks.iter().filter(|r| **r <= k).count() as f64 / n;
    let cmc: Vec<f64> = (1..=gallery.min(20)).map(rate_at).collect();

    // Open set with the first `size` people: mated searches are their probes (ranked among
    // them), non-mated ones the others' probes and the non-enrolled ones, over those people.
    let mate_removed = non_enrolled_scores.is_empty();
    let with_first = |size: usize| {
        let keep = |g: usize| g < size;
        let (mut mated, mut non_mated) = (Vec::new(), Vec::new());
        for (row, &t) in probe_scores.iter().zip(truth) {
            if t < size {
                let rank = 1 + row.iter().enumerate().filter(|(g, s)| keep(*g) && *g != t && **s >= row[t]).count();
                mated.push((rank, f64::from(row[t])));
                if mate_removed && size > 1 {
                    non_mated.push(best(row, |g| keep(g) && g != t));
                }
            } else {
                non_mated.push(best(row, keep));
            }
        }
        non_mated.extend(non_enrolled_scores.iter().map(|row| best(row, keep)));
        open_set(size, &mated, non_mated)
    };
    let mut sizes: Vec<usize> = [10, 30, 100, 300, 1000, 3000].into_iter().filter(|&s| s < gallery).collect();
    sizes.push(gallery);
    let by_gallery_size: Vec<OpenSetResult> = sizes.into_iter().map(with_first).collect();

    IdentificationMetrics {
        gallery,
        probes: probe_scores.len(),
        non_enrolled: non_enrolled_scores.len(),
        rank1: rate_at(1),
        rank5: rate_at(5),
        cmc,
        non_mated_from: if mate_removed { "enrolled probes, own person taken out" } else { "non-enrolled probes" },
        open_set: by_gallery_size.last().expect("BUG: the whole gallery is a size").clone(),
        by_gallery_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_and_cmc_worked_by_hand() {
        // Gallery of 3. Probe 0 is right at rank 1, probe 1 at rank 2, probe 2 ties with
        // another entry and so counts as rank 2, probe 3 is at rank 3.
        let scores = vec![vec![0.9, 0.1, 0.2], vec![0.5, 0.4, 0.1], vec![0.3, 0.3, 0.0], vec![0.1, 0.2, 0.3]];
        let truth = [0, 1, 0, 0];
        let m = identification_metrics(&scores, &truth, &[]);
        assert_eq!(m.rank1, 0.25);
        assert_eq!(m.cmc, vec![0.25, 0.75, 1.0]);
        assert_eq!(m.rank5, 1.0);
        // Without non-enrolled probes, each probe searched without its own person stands
        // in: too few for any FPIR.
        assert_eq!(m.open_set.non_mated, 4);
        assert!(m.open_set.fnir_at_fpir.iter().all(|d| d.fnir.is_none()));
    }

    #[test]
    fn open_set_threshold_from_non_enrolled_probes() {
        // Ten non-enrolled probes with top scores 0.0..0.9; FPIR 0.1 allows one, so the cut
        // is the 2nd highest, 0.8. Probe 0 (rank 1, 0.85) passes; probe 1 (rank 1, 0.7) does
        // not: FNIR 0.5.
        let non_enrolled: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32 / 10.0, 0.0]).collect();
        let m = identification_metrics(&[vec![0.85, 0.1], vec![0.2, 0.7]], &[0, 1], &non_enrolled);
        let at_01 = &m.open_set.fnir_at_fpir[0];
        assert_eq!(at_01.fpir, 0.1);
        assert!((at_01.threshold.unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(at_01.fnir, Some(0.5));
        assert_eq!(m.open_set.fnir_at_fpir[1].fnir, None, "1e-2 needs 100 non-mated searches");
        // The DET curve runs from the strictest cut to the loosest.
        assert_eq!(m.open_set.det[..2], [(0.0, 1.0), (0.1, 0.5)]);
        assert_eq!(m.open_set.det.last(), Some(&(1.0, 0.0)));
    }

    #[test]
    fn smaller_galleries_turn_the_others_probes_into_non_mated_searches() {
        // Three people; probes 0 and 1 of person 0, probe 2 of person 2.
        let scores = vec![vec![0.9, 0.2, 0.1], vec![0.6, 0.7, 0.1], vec![0.3, 0.1, 0.8]];
        let m = identification_metrics(&scores, &[0, 0, 2], &[vec![0.4, 0.5, 0.0]]);
        assert_eq!(m.by_gallery_size.len(), 1, "galleries smaller than 10 are not split");
        let m = identification_metrics(&[], &[], &[]);
        assert_eq!((m.open_set.mated, m.open_set.non_mated), (0, 0));
        // With ten people, the first ten are the whole gallery.
        let row = |own: usize| (0..12).map(|g| if g == own { 0.9 } else { 0.1 }).collect::<Vec<f32>>();
        let m = identification_metrics(&[row(0), row(11)], &[0, 11], &[]);
        let ten = &m.by_gallery_size[0];
        assert_eq!((ten.gallery, ten.mated, ten.non_mated), (10, 1, 2), "probe of person 11 is non-mated at 10");
    }
}
