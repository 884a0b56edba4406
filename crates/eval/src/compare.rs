//! Two models on the same pairs: is the difference more than the pairs' own noise? One point
//! of lfw-devtest is ten pairs, so a gap of a few pairs between two good models says little
//! alone. The ten-fold decisions are compared pair by pair (McNemar's exact test on the pairs
//! only one model gets right); TAR at each FAR gets a paired bootstrap interval, resampling
//! genuine pairs by person (a person's pairs share photos, so they are not independent) and
//! impostor pairs one by one.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dataset::{splitmix64, Pair};
use crate::verify::{tar_at, ten_fold_thresholds, FAR_TARGETS};

/// Bootstrap resamples behind each interval.
pub const RESAMPLES: usize = 2000;
/// The bootstrap's seed: the same pairs and scores always give the same interval.
const BOOTSTRAP_SEED: u64 = 0x6d61_736b_6964;

/// A model against a baseline on one protocol's pairs or probes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// The model compared.
    pub model: String,
    /// The model it is compared with.
    pub baseline: String,
    /// Decisions compared one by one: each pair's ten-fold decision (pair protocols) or each
    /// probe's rank-1 answer (identification).
    pub decisions: Discordance,
    /// TAR at each FAR target, the difference and its interval (pair protocols; empty for
    /// identification).
    pub tar_at_far: Vec<TarDifference>,
    /// Bootstrap resamples behind the intervals.
    pub resamples: usize,
}

/// Where two models' decisions on the same items part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Discordance {
    /// Items (pairs or probes) both decided.
    pub items: usize,
    /// Items the model gets right and the baseline wrong.
    pub model_only_right: usize,
    /// Items the baseline gets right and the model wrong.
    pub baseline_only_right: usize,
    /// Two-sided exact McNemar p-value of those two counts: the chance of a split at least
    /// this uneven if the two models were equally good on these items.
    pub mcnemar_p: f64,
}

/// Two lists that must go item for item do not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {left} against {right}; both must cover the same items")]
pub struct ItemMismatch {
    /// What was compared.
    pub what: &'static str,
    /// Items on the model's side.
    pub left: usize,
    /// Items on the other side.
    pub right: usize,
}

/// `Ok` when `left` and `right` items go one for one.
fn same_items(what: &'static str, left: usize, right: usize) -> Result<(), ItemMismatch> {
    if left == right {
        Ok(())
    } else {
        Err(ItemMismatch { what, left, right })
    }
}

impl Discordance {
    /// From each item's right/wrong under the model and under the baseline.
    pub fn of(model_right: &[bool], baseline_right: &[bool]) -> Result<Self, ItemMismatch> {
        same_items("decisions of the model and the baseline", model_right.len(), baseline_right.len())?;
        let model_only_right = model_right.iter().zip(baseline_right).filter(|(m, b)| **m && !**b).count();
        let baseline_only_right = model_right.iter().zip(baseline_right).filter(|(m, b)| !**m && **b).count();
        Ok(Self {
            items: model_right.len(),
            model_only_right,
            baseline_only_right,
            mcnemar_p: mcnemar_exact(model_only_right, baseline_only_right),
        })
    }
}

/// TAR of both models at one FAR target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TarDifference {
    /// The FAR target.
    pub far: f64,
    /// The model's TAR (`None`: not estimable with these impostors).
    pub model: Option<f64>,
    /// The baseline's TAR.
    pub baseline: Option<f64>,
    /// Model minus baseline.
    pub difference: Option<f64>,
    /// 95% percentile interval of the difference over the paired resamples.
    pub interval_95: Option<(f64, f64)>,
}

/// Compares `model_scores` with `baseline_scores`, both one score per pair of `pairs`.
pub fn compare_verification(
    pairs: &[Pair],
    (model, model_scores): (&str, &[f32]),
    (baseline, baseline_scores): (&str, &[f32]),
) -> Result<Comparison, ItemMismatch> {
    same_items("pairs and the model's scores", pairs.len(), model_scores.len())?;
    same_items("pairs and the baseline's scores", pairs.len(), baseline_scores.len())?;
    let decisions = Discordance::of(&ten_fold_right(pairs, model_scores), &ten_fold_right(pairs, baseline_scores))?;
    let bootstrap = Bootstrap::new(pairs);
    let resampled = bootstrap.differences(model_scores, baseline_scores);
    let all_genuine: Vec<usize> = bootstrap.genuine_by_person.concat();
    let tar_at_far = FAR_TARGETS
        .iter()
        .zip(resampled)
        .map(|(&far, differences)| {
            let tar = |scores: &[f32]| {
                let mut impostors = gather(scores, &bootstrap.impostors);
                tar_at(&gather(scores, &all_genuine), &mut impostors, far).map(|(tar, _)| tar)
            };
            let (m, b) = (tar(model_scores), tar(baseline_scores));
            let difference = m.zip(b).map(|(m, b)| m - b);
            TarDifference { far, model: m, baseline: b, difference, interval_95: percentile_interval(differences) }
        })
        .collect();
    Ok(Comparison {
        model: model.to_owned(),
        baseline: baseline.to_owned(),
        decisions,
        tar_at_far,
        resamples: RESAMPLES,
    })
}

/// Compares two models' rank-1 answers to the same probes (`true`: the probe's own person
/// came first).
pub fn compare_identification(
    (model, model_hits): (&str, &[bool]),
    (baseline, baseline_hits): (&str, &[bool]),
) -> Result<Comparison, ItemMismatch> {
    Ok(Comparison {
        model: model.to_owned(),
        baseline: baseline.to_owned(),
        decisions: Discordance::of(model_hits, baseline_hits)?,
        tar_at_far: Vec::new(),
        resamples: 0,
    })
}

/// Whether each pair's ten-fold decision (its fold's threshold, chosen on the other folds) is
/// right.
fn ten_fold_right(pairs: &[Pair], scores: &[f32]) -> Vec<bool> {
    let items: Vec<(f64, bool)> = scores.iter().zip(pairs).map(|(s, p)| (f64::from(*s), p.genuine)).collect();
    let folds: Vec<usize> = pairs.iter().map(|p| p.fold).collect();
    let thresholds = ten_fold_thresholds(&items, &folds);
    items
        .iter()
        .zip(&folds)
        .map(|((score, genuine), fold)| {
            let threshold = thresholds[*fold].expect("BUG: a pair's fold has pairs");
            (*score >= threshold) == *genuine
        })
        .collect()
}

/// The scores of the pairs `indices` picks (repeats kept).
fn gather(scores: &[f32], indices: &[usize]) -> Vec<f64> {
    indices.iter().map(|&i| f64::from(scores[i])).collect()
}

/// Paired resampling of one protocol's pairs: the genuine pairs of as many people as there
/// are, drawn with replacement, and as many impostor pairs as there are.
struct Bootstrap {
    genuine_by_person: Vec<Vec<usize>>,
    impostors: Vec<usize>,
}

impl Bootstrap {
    fn new(pairs: &[Pair]) -> Self {
        let mut by_person: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut impostors = Vec::new();
        for (i, pair) in pairs.iter().enumerate() {
            match pair.genuine {
                true => by_person.entry(pair.a.identity.as_str()).or_default().push(i),
                false => impostors.push(i),
            }
        }
        Self { genuine_by_person: by_person.into_values().collect(), impostors }
    }

    /// For each FAR target, the TAR differences (model - baseline) over the resamples where
    /// both are estimable.
    fn differences(&self, model: &[f32], baseline: &[f32]) -> Vec<Vec<f64>> {
        let mut differences = vec![Vec::with_capacity(RESAMPLES); FAR_TARGETS.len()];
        if self.genuine_by_person.is_empty() || self.impostors.is_empty() {
            return differences;
        }
        let mut state = BOOTSTRAP_SEED;
        let mut draw = |below: usize| (splitmix64(&mut state) % below as u64) as usize;
        let (mut genuine, mut impostors) = (Vec::new(), Vec::new());
        for _ in 0..RESAMPLES {
            genuine.clear();
            for _ in 0..self.genuine_by_person.len() {
                genuine.extend(&self.genuine_by_person[draw(self.genuine_by_person.len())]);
            }
            impostors.clear();
            impostors.extend((0..self.impostors.len()).map(|_| self.impostors[draw(self.impostors.len())]));
            let (model_genuine, mut model_impostors) = (gather(model, &genuine), gather(model, &impostors));
            let (baseline_genuine, mut baseline_impostors) = (gather(baseline, &genuine), gather(baseline, &impostors));
            for (k, &far) in FAR_TARGETS.iter().enumerate() {
                let m = tar_at(&model_genuine, &mut model_impostors, far);
                let b = tar_at(&baseline_genuine, &mut baseline_impostors, far);
                if let (Some((m, _)), Some((b, _))) = (m, b) {
                    differences[k].push(m - b);
                }
            }
        }
        differences
    }
}

/// The central 95% of `values` (at least 20 of them, or `None`).
fn percentile_interval(mut values: Vec<f64>) -> Option<(f64, f64)> {
    if values.len() < 20 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let at = |q: f64| values[(q * (values.len() - 1) as f64).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// Two-sided exact McNemar test: twice the binomial(b + c, 1/2) tail at the smaller count,
/// capped at 1.
fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=b.min(c) {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose - n as f64 * std::f64::consts::LN_2).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ImageRef;

    fn pair(a: &str, b: &str, fold: usize) -> Pair {
        let image = |name: &str| ImageRef { identity: name.into(), path: PathBuf::from(format!("{name}.jpg")) };
        Pair { a: image(a), b: image(b), genuine: a == b, fold }
    }

    /// 40 people with 5 genuine pairs each and 2,000 impostor pairs, in ten folds; genuine
    /// scores spread from 0.2 to 0.9, impostors from -0.2 to 0.4.
    fn protocol() -> (Vec<Pair>, Vec<f32>) {
        let mut pairs = Vec::new();
        let mut scores = Vec::new();
        for person in 0..40 {
            for k in 0..5 {
                pairs.push(pair(&format!("p{person}"), &format!("p{person}"), (person * 5 + k) % 10));
                scores.push(0.2 + 0.7 * ((person * 5 + k) as f32 / 199.0));
            }
        }
        for i in 0..2000 {
            pairs.push(pair(&format!("p{}", i % 40), &format!("p{}", (i + 1 + i / 40) % 40 + 40), i % 10));
            scores.push(-0.2 + 0.6 * ((i * 7919) % 2000) as f32 / 1999.0);
        }
        (pairs, scores)
    }

    #[test]
    fn a_model_compared_with_itself_differs_by_nothing() {
        let (pairs, scores) = protocol();
        let c = compare_verification(&pairs, ("a", &scores), ("b", &scores)).unwrap();
        let d = &c.decisions;
        assert_eq!((d.items, d.model_only_right, d.baseline_only_right, d.mcnemar_p), (2200, 0, 0, 1.0));
        let at_1e2 = &c.tar_at_far[0];
        assert_eq!(at_1e2.difference, Some(0.0));
        assert_eq!(at_1e2.interval_95, Some((0.0, 0.0)));
        assert!(
            c.tar_at_far[1].model.is_some() && c.tar_at_far[2].model.is_none(),
            "2,000 impostors: 1e-3 but not 1e-4"
        );
    }

    #[test]
    fn a_clearly_better_model_gets_an_interval_above_zero() {
        let (pairs, baseline) = protocol();
        // Every genuine score raised by 0.15: more genuine pairs clear the same impostors.
        let model: Vec<f32> = baseline.iter().zip(&pairs).map(|(s, p)| if p.genuine { s + 0.15 } else { *s }).collect();
        let c = compare_verification(&pairs, ("better", &model), ("base", &baseline)).unwrap();
        let d = &c.decisions;
        assert!(d.model_only_right > d.baseline_only_right + 10, "{c:?}");
        assert!(d.mcnemar_p < 0.01, "{}", d.mcnemar_p);
        let at = &c.tar_at_far[0];
        let (low, high) = at.interval_95.unwrap();
        assert!(
            at.difference.unwrap() > 0.1
                && low > 0.0
                && low <= at.difference.unwrap()
                && high >= at.difference.unwrap(),
            "{at:?}"
        );
        // Swapping the roles swaps the signs.
        let back = compare_verification(&pairs, ("base", &baseline), ("better", &model)).unwrap();
        assert_eq!(back.tar_at_far[0].difference, at.difference.map(|d| -d));
        assert_eq!(
            (back.decisions.model_only_right, back.decisions.baseline_only_right),
            (d.baseline_only_right, d.model_only_right)
        );
    }

    #[test]
    fn identification_compares_rank_1_answers_probe_by_probe() {
        let model = [true, true, true, false, true];
        let baseline = [true, false, false, false, true];
        let c = compare_identification(("a", &model), ("b", &baseline)).unwrap();
        let d = &c.decisions;
        assert_eq!((d.items, d.model_only_right, d.baseline_only_right), (5, 2, 0));
        let short = compare_identification(("a", &model), ("b", &baseline[..4])).unwrap_err();
        assert_eq!((short.left, short.right), (5, 4));
        assert!(short.to_string().contains("5 against 4"), "{short}");
        assert!((d.mcnemar_p - 0.5).abs() < 1e-12, "2 to 0: 2 * 0.5^2");
        assert!(c.tar_at_far.is_empty());
    }

    #[test]
    fn mcnemar_worked_by_hand() {
        // 7 to 0: 2 * 0.5^7. 3 to 1: 2 * (1 + 4) / 16. Ties: 1.
        assert!((mcnemar_exact(7, 0) - 2.0 / 128.0).abs() < 1e-12);
        assert!((mcnemar_exact(1, 3) - 10.0 / 16.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
    }
}
