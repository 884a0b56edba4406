//! Open-set decisions by a target false-positive identification rate (FPIR).
//!
//! A stranger searched against a gallery of N faces gets N chances to pass the threshold, so a
//! threshold fit for one comparison lets more strangers through the larger the gallery. The
//! calibration of a model is the distribution of its impostor scores (cosine similarities of
//! two different people) per probe condition; from it, the threshold of a search is the score
//! that one impostor comparison passes with probability p = 1 - (1 - FPIR)^(1/N).
//!
//! The body of the distribution is kept as measured quantiles. Its tail, where a gallery of
//! thousands needs rates of 1e-7 and no sample of pairs reaches, is a generalised Pareto
//! distribution fitted to the scores above the 1e-3 quantile (peaks over threshold, by
//! probability-weighted moments: Hosking and Wallis, Technometrics 1987).
//!
//! Treating the N comparisons as independent overstates FPIR when some probes are alike to
//! everyone (the rate is concave in p), so the rule errs on the side of refusing strangers.

use serde::{Deserialize, Serialize};

/// Share of impostor pairs above the point where the fitted tail takes over from the
/// measured quantiles.
const TAIL_RATE: f64 = 1e-3;
/// Fewest impostor pairs above that point for a fit.
const MIN_EXCEEDANCES: usize = 100;

/// The impostor-score distribution of one model for one probe condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImpostorTail {
    /// Impostor pairs measured.
    pub pairs: u64,
    /// (rate, score): the score that a share `rate` of impostor pairs reaches, from rate 0.5
    /// down to `tail.rate`, ten points a decade.
    pub quantiles: Vec<(f64, f32)>,
    /// The fitted tail beyond the last quantile.
    pub tail: ParetoTail,
}

/// A generalised Pareto tail: above `start`, P(score > t) = rate (1 + shape (t - start) /
/// scale)^(-1 / shape).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParetoTail {
    /// The score the tail starts at.
    pub start: f32,
    /// Share of impostor pairs above it.
    pub rate: f64,
    /// Pairs above it (the fit's sample).
    pub exceedances: u64,
    /// Shape (negative: the tail ends, as cosine scores must, at start - scale / shape).
    pub shape: f64,
    /// Scale.
    pub scale: f64,
}

/// Why a calibration cannot be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{pairs} impostor pairs are too few to fit a tail: at least {needed} are needed")]
pub struct TooFewPairs {
    /// Pairs given.
    pub pairs: usize,
    /// Pairs needed.
    pub needed: usize,
}

impl ImpostorTail {
    /// Fits the distribution of `scores` (impostor pairs only; reordered in place).
    pub fn fit(scores: &mut [f32]) -> Result<Self, TooFewPairs> {
        let n = scores.len();
        let needed = (MIN_EXCEEDANCES as f64 / TAIL_RATE).ceil() as usize;
        if n < needed {
            return Err(TooFewPairs { pairs: n, needed });
        }
        scores.sort_unstable_by(|a, b| b.total_cmp(a));
        // The score reached by a share `rate` of the pairs: the k-th highest, k = rate * n.
        let at_rate = |rate: f64| scores[((rate * n as f64).round() as usize).clamp(1, n) - 1];
        let k = (TAIL_RATE * n as f64).round() as usize;
        let (start, rate) = (scores[k], k as f64 / n as f64);
        let mut quantiles: Vec<(f64, f32)> = (0..)
            .map(|step| 0.5 * 10f64.powf(-f64::from(step) / 10.0))
            .take_while(|r| *r > rate)
            .map(|r| (r, at_rate(r)))
            .collect();
        quantiles.push((rate, start));
        let mut above: Vec<f64> = scores[..k].iter().map(|s| f64::from(*s - start)).collect();
        above.reverse(); // ascending, for the plotting positions
        let (shape, scale) = pareto_pwm(&above);
        let tail = ParetoTail { start, rate, exceedances: k as u64, shape, scale };
        Ok(Self { pairs: n as u64, quantiles, tail })
    }

    /// The score that a share `rate` of impostor pairs reaches (the measured quantiles down
    /// to the tail, interpolated on a log scale; the fitted tail below).
    pub fn score_at_rate(&self, rate: f64) -> f32 {
        let rate = rate.clamp(f64::MIN_POSITIVE, 1.0);
        if rate < self.tail.rate {
            return self.tail.score_at_rate(rate);
        }
        let at = self.quantiles.partition_point(|(r, _)| *r > rate);
        match (at.checked_sub(1).map(|i| self.quantiles[i]), self.quantiles.get(at)) {
            (Some((r0, s0)), Some(&(r1, s1))) => {
                let w = (rate.ln() - r0.ln()) / (r1.ln() - r0.ln());
                s0 + (s1 - s0) * w as f32
            }
            (None, Some(&(_, s))) | (Some((_, s)), None) => s,
            (None, None) => self.tail.start,
        }
    }

    /// Share of impostor pairs scoring at least `score` (the inverse of
    /// [`ImpostorTail::score_at_rate`], found by bisection; at most 0.5, the median).
    pub fn rate_at_score(&self, score: f32) -> f64 {
        let (mut lo, mut hi) = (1e-300f64.ln(), 0.5f64.ln());
        for _ in 0..100 {
            let mid = (lo + hi) / 2.0;
            if self.score_at_rate(mid.exp()) >= score {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo.exp()
    }
}

impl ParetoTail {
    /// The score a share `rate` (below `self.rate`) of impostor pairs passes.
    pub fn score_at_rate(&self, rate: f64) -> f32 {
        let ratio = rate / self.rate;
        let beyond = if self.shape.abs() < 1e-9 {
            -self.scale * ratio.ln()
        } else {
            self.scale / self.shape * (ratio.powf(-self.shape) - 1.0)
        };
        (f64::from(self.start) + beyond) as f32
    }
}

/// Generalised Pareto (shape, scale) of exceedances sorted ascending, by probability-weighted
/// moments: with a0 = E[Y] and a1 = E[Y (1 - F(Y))], shape = 2 - a0 / (a0 - 2 a1) and
/// scale = 2 a0 a1 / (a0 - 2 a1).
fn pareto_pwm(ascending: &[f64]) -> (f64, f64) {
    let n = ascending.len() as f64;
    let a0 = ascending.iter().sum::<f64>() / n;
    let a1 = ascending.iter().enumerate().map(|(i, y)| (1.0 - (i as f64 + 0.65) / n) * y).sum::<f64>() / n;
    let d = (a0 - 2.0 * a1).max(f64::MIN_POSITIVE);
    (2.0 - a0 / d, 2.0 * a0 * a1 / d)
}

/// The share of impostor comparisons one may pass so that a stranger searched against
/// `gallery_faces` faces is accepted with probability `fpir`: 1 - (1 - fpir)^(1/N).
pub fn comparison_rate(fpir: f64, gallery_faces: usize) -> f64 {
    let n = gallery_faces.max(1) as f64;
    -((-fpir).ln_1p() / n).exp_m1()
}

/// The probe conditions a model is calibrated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeCondition {
    /// Probe and reference without a mask.
    Clean,
    /// A masked probe against an unmasked reference.
    Masked,
}

impl ProbeCondition {
    /// Both conditions.
    pub const ALL: [ProbeCondition; 2] = [ProbeCondition::Clean, ProbeCondition::Masked];

    /// The condition's name.
    pub fn name(self) -> &'static str {
        match self {
            ProbeCondition::Clean => "clean",
            ProbeCondition::Masked => "masked",
        }
    }
}

/// Where a condition's impostor pairs came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationSource {
    /// The data set and what was taken from it.
    pub name: String,
    /// Photos embedded.
    pub photos: usize,
    /// Impostor pairs among them.
    pub pairs: u64,
    /// Whether they are part of the fit (else a check of it on other photos).
    pub fitted: bool,
    /// (rate, score): the score a share `rate` of them reaches, measured, at 1e-3, 1e-4, ...
    /// while ten pairs or more lie above it (how the sources agree, and how the fitted tail
    /// compares with pairs it was not fitted on).
    pub measured: Vec<(f64, f32)>,
}

/// One condition's calibration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionCalibration {
    /// The condition.
    pub condition: ProbeCondition,
    /// The data behind it.
    pub sources: Vec<CalibrationSource>,
    /// The impostor scores of the fitted sources.
    pub impostors: ImpostorTail,
}

/// A model's impostor-score calibration: what open-set decisions by FPIR need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// The model's id.
    pub model: String,
    /// SHA-256 of the model file it was measured with.
    pub model_sha256: String,
    /// How the probes were masked for the masked condition.
    pub masks: String,
    /// maskid version that measured it.
    pub maskid_version: String,
    /// Each condition.
    pub conditions: Vec<ConditionCalibration>,
}

impl Calibration {
    /// The threshold that keeps FPIR at `fpir` for a gallery of `gallery_faces` faces in every
    /// calibrated condition: a probe's condition is not known when it is searched, so the
    /// highest of the conditions' thresholds.
    pub fn threshold(&self, fpir: f64, gallery_faces: usize) -> f32 {
        let rate = comparison_rate(fpir, gallery_faces);
        self.conditions.iter().map(|c| c.impostors.score_at_rate(rate)).fold(f32::NEG_INFINITY, f32::max)
    }

    /// The threshold for probes known to be in `condition` (by the mask classifier), or for
    /// any probe ([`Calibration::threshold`]) when it is `None` or not calibrated.
    pub fn threshold_in(&self, condition: Option<ProbeCondition>, fpir: f64, gallery_faces: usize) -> f32 {
        match self.conditions.iter().find(|c| Some(c.condition) == condition) {
            Some(c) => c.impostors.score_at_rate(comparison_rate(fpir, gallery_faces)),
            None => self.threshold(fpir, gallery_faces),
        }
    }

    /// A calibration of `--model auto`-like pairs: `clean`'s clean condition and `masked`'s
    /// masked one.
    pub fn combined(model: &str, clean: &Calibration, masked: &Calibration) -> Calibration {
        fn pick(from: &Calibration, condition: ProbeCondition) -> impl Iterator<Item = ConditionCalibration> + '_ {
            from.conditions.iter().filter(move |c| c.condition == condition).cloned()
        }
        Calibration {
            model: model.to_string(),
            model_sha256: format!("{} + {}", clean.model_sha256, masked.model_sha256),
            masks: masked.masks.clone(),
            maskid_version: masked.maskid_version.clone(),
            conditions: pick(clean, ProbeCondition::Clean).chain(pick(masked, ProbeCondition::Masked)).collect(),
        }
    }

    /// The FPIR a threshold stands for with a gallery of `gallery_faces` faces: that of the
    /// condition letting most strangers through.
    pub fn fpir_at(&self, threshold: f32, gallery_faces: usize) -> f64 {
        let rate = self.conditions.iter().map(|c| c.impostors.rate_at_score(threshold)).fold(0.0, f64::max);
        -(gallery_faces.max(1) as f64 * (-rate).ln_1p()).exp_m1()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores whose exact survival function is known: uniform on [0, 1] (a Pareto tail of
    /// shape -1).
    fn uniform(n: usize) -> Vec<f32> {
        (0..n).map(|i| (i as f32 + 0.5) / n as f32).collect()
    }

    #[test]
    fn the_rate_per_comparison_compounds_to_the_target_over_the_gallery() {
        let p = comparison_rate(1e-3, 500);
        assert!((1.0 - (1.0 - p).powi(500) - 1e-3).abs() < 1e-12);
        assert_eq!(comparison_rate(1e-2, 1), 1e-2);
        assert_eq!(comparison_rate(1e-2, 0), 1e-2, "an empty gallery is treated as one face");
        assert!(comparison_rate(1e-3, 1_000_000) > 0.0 && comparison_rate(1e-3, 1_000_000) < 1.1e-9);
    }

    #[test]
    fn quantiles_and_tail_match_a_known_distribution() {
        let mut scores = uniform(200_000);
        let fit = ImpostorTail::fit(&mut scores).unwrap();
        assert_eq!(fit.pairs, 200_000);
        assert_eq!(fit.tail.exceedances, 200);
        assert!((fit.tail.shape + 1.0).abs() < 0.15, "uniform's tail has shape -1: {:?}", fit.tail);
        for rate in [0.5, 0.1, 1e-2, 2e-3, 1e-4, 1e-5] {
            let got = fit.score_at_rate(rate);
            assert!((f64::from(got) - (1.0 - rate)).abs() < 1e-3, "rate {rate}: {got}");
            // f32 scores resolve 6e-8 near 1: the rate comes back to 1% at 1e-5.
            assert!((fit.rate_at_score(got) - rate).abs() / rate < 1e-2, "inverse at {rate}");
        }
        // Rarer means higher, never past the end of the distribution.
        assert!(fit.score_at_rate(1e-9) > fit.score_at_rate(1e-6) && fit.score_at_rate(1e-12) <= 1.0001);
    }

    #[test]
    fn an_exponential_tail_extrapolates_beyond_the_measured_pairs() {
        // Scores with P(S > t) = exp(-t / 0.05): the fitted tail at 1e-7 (far past the 1e-5
        // the 100,000 pairs reach) is 0.05 ln 1e7 = 0.806.
        let n = 100_000;
        let mut scores: Vec<f32> = (0..n).map(|i| (-0.05 * ((i as f64 + 0.5) / n as f64).ln()) as f32).collect();
        let fit = ImpostorTail::fit(&mut scores).unwrap();
        assert!(fit.tail.shape.abs() < 0.1, "{:?}", fit.tail);
        assert!((fit.score_at_rate(1e-7) - 0.806).abs() < 0.02, "{}", fit.score_at_rate(1e-7));
    }

    #[test]
    fn too_few_pairs_is_refused() {
        assert_eq!(ImpostorTail::fit(&mut uniform(5_000)), Err(TooFewPairs { pairs: 5_000, needed: 100_000 }));
    }

    #[test]
    fn the_threshold_is_the_strictest_condition_and_grows_with_the_gallery() {
        let tail = |shift: f32| {
            let mut s: Vec<f32> = uniform(100_000).iter().map(|x| x * 0.5 + shift).collect();
            ImpostorTail::fit(&mut s).unwrap()
        };
        let calibration = Calibration {
            model: "m".into(),
            model_sha256: "00".into(),
            masks: "none".into(),
            maskid_version: "0".into(),
            conditions: vec![
                ConditionCalibration { condition: ProbeCondition::Clean, sources: vec![], impostors: tail(0.1) },
                ConditionCalibration { condition: ProbeCondition::Masked, sources: vec![], impostors: tail(0.0) },
            ],
        };
        let (small, large) = (calibration.threshold(1e-2, 10), calibration.threshold(1e-2, 1000));
        assert!((small - (0.1 + 0.5 * (1.0 - 1e-3))).abs() < 1e-3, "{small}");
        assert!(large > small);
        assert!((calibration.fpir_at(small, 10) - 1e-2).abs() < 1e-4, "{}", calibration.fpir_at(small, 10));
    }
}
