//! Verification metrics of protocols.md. A pair is accepted when its score is at least the
//! threshold.

use serde::Serialize;

/// TAR at one FAR target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TarAtFar {
    /// The FAR target.
    pub far: f64,
    /// True accept rate; `None` ("not estimable") when there are fewer than 1/FAR impostors.
    pub tar: Option<f64>,
    /// Threshold reaching it.
    pub threshold: Option<f64>,
}

/// Every verification number a report carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerificationMetrics {
    /// Genuine pairs.
    pub genuine: usize,
    /// Impostor pairs.
    pub impostor: usize,
    /// Mean of the per-fold accuracies (threshold chosen on the other nine folds).
    pub accuracy_mean: f64,
    /// Population standard deviation of the per-fold accuracies.
    pub accuracy_std: f64,
    /// Accuracy of each fold.
    pub fold_accuracies: Vec<f64>,
    /// Threshold applied to each fold.
    pub fold_thresholds: Vec<f64>,
    /// Area under the ROC curve.
    pub auc: f64,
    /// Equal error rate.
    pub eer: f64,
    /// TAR at FAR 1e-2, 1e-3 and 1e-4.
    pub tar_at_far: Vec<TarAtFar>,
    /// The threshold maximising accuracy over all pairs.
    pub threshold: f64,
    /// False match rate at `threshold`.
    pub fmr: f64,
    /// False non-match rate at `threshold`.
    pub fnmr: f64,
    /// ROC points (FAR, TAR), from (0, 0) to (1, 1).
    pub roc: Vec<(f64, f64)>,
}

/// Threshold maximising accuracy over `items` (score, genuine): the midpoint between the two
/// scores where the best cut falls (or just outside the range at the ends).
fn best_threshold(items: &[(f64, bool)]) -> f64 {
    if items.is_empty() {
        return 0.0;
    }
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Start by rejecting everything: correct = impostor count.
    let mut correct = sorted.iter().filter(|(_, g)| !g).count() as i64;
    let (mut best, mut best_at) = (correct, sorted[0].0 + 1e-6);
    let mut i = 0;
    while i < sorted.len() {
        let score = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == score {
            correct += if sorted[i].1 { 1 } else { -1 };
            i += 1;
        }
        if correct > best {
            best = correct;
            best_at = match sorted.get(i) {
                Some(next) => (score + next.0) / 2.0,
                None => score - 1e-6,
            };
        }
    }
    best_at
}

fn accuracy(items: &[(f64, bool)], threshold: f64) -> f64 {
    let correct = items.iter().filter(|(s, g)| (*s >= threshold) == *g).count();
    correct as f64 / items.len().max(1) as f64
}

/// ROC points over all distinct thresholds, highest score first.
fn roc(items: &[(f64, bool)], genuine: usize, impostor: usize) -> Vec<(f64, f64)> {
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < sorted.len() {
        let score = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == score {
            if sorted[i].1 {
                tp += 1
            } else {
                fp += 1
            }
            i += 1;
        }
        points.push((fp as f64 / impostor.max(1) as f64, tp as f64 / genuine.max(1) as f64));
    }
    points
}

/// Computes all metrics from per-pair scores, labels and folds (0..10).
pub fn verification_metrics(scores: &[f32], genuine: &[bool], folds: &[usize]) -> VerificationMetrics {
    assert_eq!(scores.len(), genuine.len(), "BUG: one label per score");
    assert_eq!(scores.len(), folds.len(), "BUG: one fold per score");
    let items: Vec<(f64, bool)> = scores.iter().map(|&s| f64::from(s)).zip(genuine.iter().copied()).collect();
    let n_gen = genuine.iter().filter(|g| **g).count();
    let n_imp = items.len() - n_gen;

    let mut fold_accuracies = Vec::new();
    let mut fold_thresholds = Vec::new();
    for (fold, t) in ten_fold_thresholds(&items, folds).into_iter().enumerate() {
        let Some(t) = t else { continue };
        let test: Vec<(f64, bool)> = items.iter().zip(folds).filter(|(_, f)| **f == fold).map(|(i, _)| *i).collect();
        fold_thresholds.push(t);
        fold_accuracies.push(accuracy(&test, t));
    }
    let k = fold_accuracies.len().max(1) as f64;
    let accuracy_mean = fold_accuracies.iter().sum::<f64>() / k;
    let accuracy_std = (fold_accuracies.iter().map(|a| (a - accuracy_mean).powi(2)).sum::<f64>() / k).sqrt();

    let roc = roc(&items, n_gen, n_imp);
    let auc = roc.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).sum();
    let eer = equal_error_rate(&roc);

    let mut impostor_scores: Vec<f64> = items.iter().filter(|(_, g)| !g).map(|(s, _)| *s).collect();
    let genuine_scores: Vec<f64> = items.iter().filter(|(_, g)| *g).map(|(s, _)| *s).collect();
    let tar_at_far = FAR_TARGETS
        .into_iter()
        .map(|far| match tar_at(&genuine_scores, &mut impostor_scores, far) {
            Some((tar, cut)) => TarAtFar { far, tar: Some(tar), threshold: Some(cut) },
            None => TarAtFar { far, tar: None, threshold: None },
        })
        .collect();

    let threshold = best_threshold(&items);
    let fmr = items.iter().filter(|(s, g)| !g && *s >= threshold).count() as f64 / n_imp.max(1) as f64;
    let fnmr = items.iter().filter(|(s, g)| *g && *s < threshold).count() as f64 / n_gen.max(1) as f64;

    VerificationMetrics {
        genuine: n_gen,
        impostor: n_imp,
        accuracy_mean,
        accuracy_std,
        fold_accuracies,
        fold_thresholds,
        auc,
        eer,
        tar_at_far,
        threshold,
        fmr,
        fnmr,
        roc,
    }
}

/// The FAR targets at which TAR is reported.
pub(crate) const FAR_TARGETS: [f64; 3] = [1e-2, 1e-3, 1e-4];

/// TAR at `far` and the cut reaching it: only scores above the (k+1)-th highest impostor are
/// accepted, so at most k = floor(far * impostors) false accepts. `None` ("not estimable")
/// with fewer than 1/far impostors or no genuine pair. Reorders `impostors` (a linear-time
/// selection, not a sort: the bootstrap of `compare` calls it thousands of times).
pub(crate) fn tar_at(genuine: &[f64], impostors: &mut [f64], far: f64) -> Option<(f64, f64)> {
    if (impostors.len() as f64) < 1.0 / far || genuine.is_empty() {
        return None;
    }
    let allowed = (far * impostors.len() as f64).floor() as usize;
    let (_, cut, _) = impostors.select_nth_unstable_by(allowed, |a, b| b.total_cmp(a));
    let cut = *cut;
    Some((genuine.iter().filter(|s| **s > cut).count() as f64 / genuine.len() as f64, cut))
}

/// Each fold's threshold, chosen on the other folds' pairs (`None` for a fold without pairs):
/// the ten-fold rule of protocols.md.
pub(crate) fn ten_fold_thresholds(items: &[(f64, bool)], folds: &[usize]) -> Vec<Option<f64>> {
    let fold_count = folds.iter().max().map_or(0, |m| m + 1);
    (0..fold_count)
        .map(|fold| {
            if !folds.contains(&fold) {
                return None;
            }
            let train: Vec<(f64, bool)> =
                items.iter().zip(folds).filter(|(_, f)| **f != fold).map(|(i, _)| *i).collect();
            Some(best_threshold(&train))
        })
        .collect()
}

/// Where FNMR = 1 - TAR meets FAR along the ROC, interpolated linearly between points.
fn equal_error_rate(roc: &[(f64, f64)]) -> f64 {
    for w in roc.windows(2) {
        let (far0, tar0) = w[0];
        let (far1, tar1) = w[1];
        let d0 = (1.0 - tar0) - far0;
        let d1 = (1.0 - tar1) - far1;
        if d0 >= 0.0 && d1 <= 0.0 {
            let t = if d0 == d1 { 0.0 } else { d0 / (d0 - d1) };
            return far0 + t * (far1 - far0);
        }
    }
    1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfectly_separated_scores() {
        let scores = [0.9, 0.8, 0.7, 0.2, 0.1, 0.0];
        let genuine = [true, true, true, false, false, false];
        let m = verification_metrics(&scores, &genuine, &[0, 1, 2, 0, 1, 2]);
        assert_eq!(m.accuracy_mean, 1.0);
        assert_eq!(m.auc, 1.0);
        assert_eq!(m.eer, 0.0);
        assert_eq!((m.fmr, m.fnmr), (0.0, 0.0));
        assert!(m.threshold > 0.2 && m.threshold <= 0.7, "{}", m.threshold);
        // 3 impostors < 1/0.01: not estimable.
        assert!(m.tar_at_far.iter().all(|t| t.tar.is_none()));
    }

    #[test]
    fn one_swapped_pair_worked_by_hand() {
        // Genuine 0.9, 0.4; impostor 0.6, 0.1. Sorted: 0.9g 0.6i 0.4g 0.1i.
        // ROC: (0,0) (0,.5) (.5,.5) (.5,1) (1,1): AUC = 0.75. EER = 0.5.
        let scores = [0.9, 0.4, 0.6, 0.1];
        let genuine = [true, true, false, false];
        let m = verification_metrics(&scores, &genuine, &[0, 0, 0, 0]);
        assert!((m.auc - 0.75).abs() < 1e-12);
        assert!((m.eer - 0.5).abs() < 1e-12);
        // Best cut on all pairs: accept >= 0.9 only (3 of 4 right) -> FNMR 1/2, FMR 0.
        assert_eq!((m.fmr, m.fnmr), (0.0, 0.5));
    }

    #[test]
    fn ten_fold_threshold_comes_from_the_other_folds() {
        // Fold 1 (0.6 genuine, 0.3 impostor) puts fold 0's threshold at 0.45, which rejects
        // fold 0's genuine 0.44; fold 0 puts fold 1's at 0.32, which gets fold 1 right.
        let scores = [0.44, 0.2, 0.6, 0.3];
        let genuine = [true, false, true, false];
        let m = verification_metrics(&scores, &genuine, &[0, 0, 1, 1]);
        assert!((m.fold_thresholds[0] - 0.45).abs() < 1e-6);
        assert!((m.fold_thresholds[1] - 0.32).abs() < 1e-6);
        assert_eq!(m.fold_accuracies, vec![0.5, 1.0]);
        assert_eq!(m.accuracy_mean, 0.75);
        assert_eq!(m.accuracy_std, 0.25);
    }

    #[test]
    fn tar_at_far_with_enough_impostors() {
        // 100 impostors at 0.00..0.99, genuine at 0.985 and 0.5. FAR 1e-2 allows 1 false
        // accept: the cut is the 2nd highest impostor, 0.98; only 0.985 is above it.
        let mut scores: Vec<f32> = (0..100).map(|i| i as f32 / 100.0).collect();
        let mut genuine = vec![false; 100];
        scores.extend([0.985, 0.5]);
        genuine.extend([true, true]);
        let folds = vec![0; scores.len()];
        let m = verification_metrics(&scores, &genuine, &folds);
        assert_eq!(m.tar_at_far[0].tar, Some(0.5));
        assert!((m.tar_at_far[0].threshold.unwrap() - 0.98).abs() < 1e-6);
        assert_eq!(m.tar_at_far[1].tar, None, "1e-3 needs 1000 impostors");
    }
}
