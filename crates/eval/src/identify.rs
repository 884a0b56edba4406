//! Identification metrics of protocols.md: rank-k, CMC, open-set detection and
//! identification rate.

use serde::Serialize;

/// Open-set detection-and-identification rate at one false-alarm rate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DirAtFar {
    /// False-alarm rate target (share of non-enrolled probes accepted).
    pub far: f64,
    /// Share of enrolled probes identified at rank 1 above the threshold; `None` when there
    /// are fewer than 1/FAR non-enrolled probes.
    pub dir: Option<f64>,
    /// Threshold used.
    pub threshold: Option<f64>,
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
    /// Open set at FAR 1e-2 and 1e-1.
    pub open_set: Vec<DirAtFar>,
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

/// `probe_scores[p][g]`: similarity of probe p to gallery entry g; `truth[p]`: the gallery
/// entry of p's identity. `non_enrolled_scores`: the same rows for people not in the gallery.
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

    let top = |row: &Vec<f32>| row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut alarms: Vec<f64> = non_enrolled_scores.iter().map(top).collect();
    alarms.sort_by(|a, b| b.total_cmp(a));
    let open_set = [1e-2, 1e-1]
        .into_iter()
        .map(|far| {
            if (alarms.len() as f64) < 1.0 / far || probe_scores.is_empty() {
                return DirAtFar { far, dir: None, threshold: None };
            }
            let cut = alarms[(far * alarms.len() as f64).floor() as usize];
            let hits = probe_scores
                .iter()
                .zip(&ranks)
                .zip(truth)
                .filter(|((row, rank), t)| **rank == 1 && f64::from(row[**t]) > cut)
                .count();
            DirAtFar { far, dir: Some(hits as f64 / n), threshold: Some(cut) }
        })
        .collect();

    IdentificationMetrics {
        gallery,
        probes: probe_scores.len(),
        non_enrolled: non_enrolled_scores.len(),
        rank1: rate_at(1),
        rank5: rate_at(5),
        cmc,
        open_set,
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
        assert!(m.open_set.iter().all(|d| d.dir.is_none()));
    }

    #[test]
    fn open_set_threshold_from_non_enrolled_probes() {
        // Ten non-enrolled probes with top scores 0.0..0.9; FAR 0.1 allows one alarm, so the
        // cut is the 2nd highest, 0.8. Probe 0 (rank 1, 0.85) passes; probe 1 (rank 1, 0.7)
        // does not.
        let non_enrolled: Vec<Vec<f32>> = (0..10).map(|i| vec![i as f32 / 10.0, 0.0]).collect();
        let m = identification_metrics(&[vec![0.85, 0.1], vec![0.2, 0.7]], &[0, 1], &non_enrolled);
        let at_01 = &m.open_set[1];
        assert_eq!(at_01.far, 0.1);
        assert!((at_01.threshold.unwrap() - 0.8).abs() < 1e-6);
        assert_eq!(at_01.dir, Some(0.5));
        assert_eq!(m.open_set[0].dir, None, "1e-2 needs 100 non-enrolled probes");
    }
}
