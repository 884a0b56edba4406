//! Relation-based knowledge distillation (g2d-method.md, stage 2): the student sees masked
//! faces, the teacher the same faces unmasked; the student must reproduce the relations among
//! the teacher's embeddings. Terms after Park et al., "Relational Knowledge Distillation",
//! CVPR 2019, plus a direct feature term.

use burn::prelude::*;

use crate::config::RelationWeights;
use crate::model::l2_normalize;

/// Pairwise cosine similarities must match: mean squared difference of the two `[B, B]`
/// similarity matrices, off the diagonal (the diagonal is 1 for both).
///
/// # Shapes
/// `student`: `[B, D]`, `teacher`: `[B, T]`, both L2-normalised.
pub fn similarity_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [b, _] = student.dims();
    let s = student.clone().matmul(student.transpose());
    let t = teacher.clone().matmul(teacher.transpose());
    let off_diagonal = (b * b - b).max(1) as f32;
    (s - t).powf_scalar(2.0).sum().div_scalar(off_diagonal)
}

/// RKD distance term: pairwise Euclidean distances, each matrix divided by its mean
/// off-diagonal distance, compared with the Huber (smooth L1) loss.
pub fn rkd_distance_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [b, _] = student.dims();
    huber(normalised_distances(student), normalised_distances(teacher.detach()), b * b)
}

/// RKD angle term: for every triplet (i, j, k) the cosine of the angle at j between the
/// directions to i and to k must match; Huber loss over all `B^3` cosines.
pub fn rkd_angle_loss(student: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let [b, _] = student.dims();
    huber(triplet_angles(student), triplet_angles(teacher.detach()), b * b * b)
}

/// Direct approximation: the student's embedding, projected to the teacher's dimension by a
/// learned matrix and normalised, should point where the teacher's does: mean `1 - cos`.
///
/// # Shapes
/// `projected`: `[B, T]` (the projection's output), `teacher`: `[B, T]`, L2-normalised.
pub fn feature_approximation_loss(projected: Tensor<2>, teacher: Tensor<2>) -> Tensor<1> {
    let cos = (l2_normalize(projected) * teacher).sum_dim(1); // [B, 1]
    cos.neg().add_scalar(1.0).mean()
}

/// CosFace's margin and scale (Wang et al., CVPR 2018) for [`identity_margin_loss`].
const IDENTITY_MARGIN: f32 = 0.2;
const IDENTITY_SCALE: f32 = 30.0;

/// Identity margin within a batch of P people x K views: for each view, a softmax over its
/// cosines to the other views of the batch, where the views of the same person, their cosine
/// lowered by a margin, must win. The mean over views of `-log` of their people's share.
///
/// # Shapes
/// `student`: `[B, D]`, L2-normalised; `identities`: `[B]`.
pub fn identity_margin_loss(student: Tensor<2>, identities: Tensor<1, Int>) -> Tensor<1> {
    margin_softmax_loss(student.clone(), student, identities, false)
}

/// The identity margin from each student view (masked) to the teacher's embeddings of the
/// batch's faces (clean), as mask-probe compares them: the teacher's embeddings of the view's
/// own photo and of its person's other photos must win, by the margin, over everyone else's.
/// The teacher's side gets no gradient.
///
/// # Shapes
/// `student`: `[B, D]`, `teacher`: `[B, D]`, L2-normalised; `identities`: `[B]`.
pub fn cross_identity_loss(student: Tensor<2>, teacher: Tensor<2>, identities: Tensor<1, Int>) -> Tensor<1> {
    margin_softmax_loss(student, teacher.detach(), identities, true)
}

/// The cut [`verification_margin_loss`] aims at: near the thresholds that ten-fold mask-probe
/// picks for the teacher and the students (0.31-0.35 in teacher space), with room either side.
const VERIFY_THRESHOLD: f32 = 0.33;
const VERIFY_MARGIN: f32 = 0.1;

/// A margin at the verification threshold itself, masked to clean as mask-probe compares:
/// every student view (masked) must reach cosine `VERIFY_THRESHOLD + VERIFY_MARGIN` with the
/// teacher's clean embeddings of its person's photos (its own included) and stay below
/// `VERIFY_THRESHOLD - VERIFY_MARGIN` with everyone else's. Unlike the softmax margins, which
/// only rank a view's candidates, this asks for one cut that holds across all pairs, as a
/// verification threshold must; and, being a hinge, it costs nothing once a pair is clear.
/// The mean shortfall over genuine pairs plus the mean excess over impostor pairs; the
/// teacher's side gets no gradient.
///
/// # Shapes
/// `student`: `[B, D]`, `teacher`: `[B, D]`, L2-normalised; `identities`: `[B]`.
pub fn verification_margin_loss(student: Tensor<2>, teacher: Tensor<2>, identities: Tensor<1, Int>) -> Tensor<1> {
    let [b, _] = student.dims();
    let same = same_person(identities, b, &student.device()).float();
    let other = same.clone().neg().add_scalar(1.0);
    let cos = student.matmul(teacher.detach().transpose());
    let short = cos.clone().neg().add_scalar(VERIFY_THRESHOLD + VERIFY_MARGIN).clamp_min(0.0) * same.clone();
    let over = cos.sub_scalar(VERIFY_THRESHOLD - VERIFY_MARGIN).clamp_min(0.0) * other.clone();
    short.sum() / same.sum().clamp_min(1.0) + over.sum() / other.sum().clamp_min(1.0)
}

/// `[B, B]`: whether views i and j show the same person, on the graph's device.
fn same_person(identities: Tensor<1, Int>, b: usize, device: &Device) -> Tensor<2, Bool> {
    let identities = Tensor::<1, Int>::from_data(identities.into_data(), device);
    identities.clone().reshape([b, 1]).equal(identities.reshape([1, b]))
}

/// CosFace over a batch: row i of `anchors` against every row of `targets`, the rows of i's
/// person (row i itself only when `self_is_positive`; otherwise it is left out) lowered by
/// the margin. Each anchor's loss is the mean `-log` share of its positives (SupCon's form);
/// the result is the mean over anchors that have a positive.
fn margin_softmax_loss(
    anchors: Tensor<2>,
    targets: Tensor<2>,
    identities: Tensor<1, Int>,
    self_is_positive: bool,
) -> Tensor<1> {
    let [b, _] = anchors.dims();
    let device = anchors.device();
    let index = Tensor::<1, Int>::arange(0..b as i64, &device);
    let diagonal = index.clone().reshape([b, 1]).equal(index.reshape([1, b]));
    let same = same_person(identities, b, &device).float();
    let cos = anchors.matmul(targets.transpose());
    let positive = match self_is_positive {
        true => same,
        false => same - diagonal.clone().float(), // 1 for the other views of one's person
    };
    let logits = (cos - positive.clone().mul_scalar(IDENTITY_MARGIN)).mul_scalar(IDENTITY_SCALE);
    let logits = match self_is_positive {
        true => logits,
        false => logits.mask_fill(diagonal, -1e4),
    };
    let log_share = burn::tensor::activation::log_softmax(logits, 1);
    let positives = positive.clone().sum_dim(1); // [B, 1]
    let per_view = (log_share * positive).sum_dim(1).neg() / positives.clone().clamp_min(1.0);
    per_view.sum().div(positives.clamp_max(1.0).sum().clamp_min(1.0))
}

/// The weighted sum of the terms that `weights` turns on, and each term's value for the logs.
/// `projected` is needed when the feature term is on.
pub fn relation_loss(
    student: Tensor<2>,
    projected: Option<Tensor<2>>,
    teacher: Tensor<2>,
    identities: Tensor<1, Int>,
    weights: &RelationWeights,
) -> (Tensor<1>, Vec<(&'static str, Tensor<1>)>) {
    let mut terms: Vec<(&'static str, f32, Tensor<1>)> = Vec::new();
    if weights.identity > 0.0 {
        terms.push(("identity", weights.identity, identity_margin_loss(student.clone(), identities.clone())));
    }
    if weights.cross_identity > 0.0 {
        let loss = cross_identity_loss(student.clone(), teacher.clone(), identities.clone());
        terms.push(("cross_identity", weights.cross_identity, loss));
    }
    if weights.verification > 0.0 {
        let loss = verification_margin_loss(student.clone(), teacher.clone(), identities);
        terms.push(("verification", weights.verification, loss));
    }
    if weights.similarity > 0.0 {
        terms.push(("similarity", weights.similarity, similarity_loss(student.clone(), teacher.clone())));
    }
    if weights.rkd_distance > 0.0 {
        terms.push(("rkd_distance", weights.rkd_distance, rkd_distance_loss(student.clone(), teacher.clone())));
    }
    if weights.rkd_angle > 0.0 {
        terms.push(("rkd_angle", weights.rkd_angle, rkd_angle_loss(student.clone(), teacher.clone())));
    }
    if weights.feature > 0.0 {
        let projected = projected.expect("BUG: the feature term needs the projection");
        terms.push(("feature", weights.feature, feature_approximation_loss(projected, teacher)));
    }
    let total = terms
        .iter()
        .map(|(_, w, t)| t.clone().mul_scalar(*w))
        .reduce(|a, b| a + b)
        .expect("BUG: the config checks that a relation term is on");
    (total, terms.into_iter().map(|(name, _, t)| (name, t)).collect())
}

/// `[B, D]` -> `[B, B]` distances over their mean off-diagonal value.
fn normalised_distances(x: Tensor<2>) -> Tensor<2> {
    let [b, _] = x.dims();
    let squared = x.clone().powf_scalar(2.0).sum_dim(1); // [B, 1]
    let gram = x.clone().matmul(x.transpose());
    let d2 = squared.clone() + squared.transpose() - gram.mul_scalar(2.0);
    // The clamp keeps sqrt's gradient finite on the diagonal.
    let d = d2.clamp_min(1e-12).sqrt();
    let mean = d.clone().sum().div_scalar((b * b - b).max(1) as f32).clamp_min(1e-12);
    d / mean.reshape([1, 1])
}

/// `[B, D]` -> `[B, B, B]`: entry (j, i, k) is the cosine between `x_i - x_j` and `x_k - x_j`.
fn triplet_angles(x: Tensor<2>) -> Tensor<3> {
    let [b, d] = x.dims();
    let rows = x.clone().reshape([1, b, d]);
    let centres = x.reshape([b, 1, d]);
    let diff = rows - centres; // [j, i, D]
                               // Clamped before the square root: at i == j the difference is 0 and sqrt's gradient there
                               // is infinite (NaN after the chain rule).
    let norm = diff.clone().powf_scalar(2.0).sum_dim(2).clamp_min(1e-12).sqrt(); // [j, i, 1]
    let unit = diff / norm;
    unit.clone().matmul(unit.swap_dims(1, 2))
}

/// Mean Huber loss (delta 1) between two tensors of `count` entries.
fn huber<const N: usize>(a: Tensor<N>, b: Tensor<N>, count: usize) -> Tensor<1> {
    let diff = (a - b).abs();
    let quadratic = diff.clone().clamp_max(1.0);
    let linear = diff - quadratic.clone();
    (quadratic.powf_scalar(2.0).mul_scalar(0.5) + linear).sum().div_scalar(count as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit_rows(values: &[[f32; 3]]) -> Tensor<2> {
        let flat: Vec<f32> = values.iter().flatten().copied().collect();
        l2_normalize(Tensor::<1>::from_floats(flat.as_slice(), &Device::flex()).reshape([values.len(), 3]))
    }

    #[test]
    fn every_term_is_zero_when_the_student_is_a_rotation_of_the_teacher() {
        let teacher = unit_rows(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.6, 0.8, 0.0], [0.0, 0.6, 0.8]]);
        // A rotation about z keeps every relation.
        let student = unit_rows(&[[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [-0.8, 0.6, 0.0], [-0.6, 0.0, 0.8]]);
        for loss in [
            similarity_loss(student.clone(), teacher.clone()),
            rkd_distance_loss(student.clone(), teacher.clone()),
            rkd_angle_loss(student.clone(), teacher.clone()),
        ] {
            assert!(loss.into_scalar::<f32>().abs() < 1e-5);
        }
        // ...but not the direct feature term, which compares coordinates.
        assert!(feature_approximation_loss(student, teacher.clone()).into_scalar::<f32>() > 0.1);
    }

    #[test]
    fn a_wrong_relation_costs_and_the_sum_follows_the_weights() {
        let teacher = unit_rows(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        let student = unit_rows(&[[1.0, 0.0, 0.0], [1.0, 0.1, 0.0], [0.0, 0.0, 1.0]]);
        let sim = similarity_loss(student.clone(), teacher.clone()).into_scalar::<f32>();
        // Rows 0 and 1: student cos ~0.995 vs teacher 0, in two off-diagonal cells of six.
        assert!((sim - 2.0 * 0.995f32.powi(2) / 6.0).abs() < 0.01, "{sim}");
        assert!(rkd_distance_loss(student.clone(), teacher.clone()).into_scalar::<f32>() > 0.01);
        assert!(rkd_angle_loss(student.clone(), teacher.clone()).into_scalar::<f32>() > 0.01);
        let weights = RelationWeights { similarity: 2.0, feature: 0.0, ..RelationWeights::default() };
        let identities = Tensor::<1, Int>::from_ints([0, 1, 2], &Device::flex());
        let (total, terms) = relation_loss(student, None, teacher, identities, &weights);
        assert_eq!(terms.len(), 1);
        assert!((total.into_scalar::<f32>() - 2.0 * sim).abs() < 1e-6);
    }

    #[test]
    fn the_identity_margin_wants_each_person_closer_to_themself_than_to_anyone_else() {
        let device = Device::flex();
        let people = || Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
        // Each person's two views agree: only the margin costs (slightly).
        let apart = unit_rows(&[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]);
        // The same four rows with the views of person 0 and person 1 swapped over.
        let swapped = unit_rows(&[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let good = identity_margin_loss(apart, people()).into_scalar::<f32>();
        let bad = identity_margin_loss(swapped, people()).into_scalar::<f32>();
        // Matched views: cos 1 - margin 0.2 against two impostors at cos 0, at scale 30.
        let expected = -(24.0f32.exp() / (24.0f32.exp() + 2.0)).ln();
        assert!((good - expected).abs() < 1e-5, "{good} vs {expected}");
        assert!(bad > 20.0, "{bad}");
    }

    #[test]
    fn the_cross_identity_margin_wants_each_masked_view_nearest_its_persons_clean_photos() {
        let device = Device::flex();
        let people = || Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
        let teacher = unit_rows(&[[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]);
        let near = unit_rows(&[[0.9, 0.1, 0.0], [1.0, 0.0, 0.1], [0.0, 1.0, 0.1], [0.1, 0.9, 0.0]]);
        let swapped = unit_rows(&[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
        let exact = cross_identity_loss(teacher.clone(), teacher.clone(), people()).into_scalar::<f32>();
        // Each view's own photo and its person's other photo are both positives: at best each
        // holds half the share, cos 1 - margin 0.2 (twice) against two impostors at cos 0.
        let expected = -(24.0f32.exp() / (2.0 * 24.0f32.exp() + 2.0)).ln();
        assert!((exact - expected).abs() < 1e-5, "{exact} vs {expected}");
        let near = cross_identity_loss(near, teacher.clone(), people()).into_scalar::<f32>();
        let bad = cross_identity_loss(swapped, teacher.clone(), people()).into_scalar::<f32>();
        assert!(near < expected + 0.1 && bad > 10.0, "near {near}, swapped {bad}");
        // It is the term the weights name, and the only one turned on.
        let weights =
            RelationWeights { similarity: 0.0, feature: 0.0, cross_identity: 0.5, ..RelationWeights::default() };
        let (total, terms) = relation_loss(teacher.clone(), None, teacher, people(), &weights);
        assert_eq!(terms.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["cross_identity"]);
        assert!((total.into_scalar::<f32>() - 0.5 * exact).abs() < 1e-5);
    }

    #[test]
    fn the_verification_margin_costs_only_pairs_on_the_wrong_side_of_the_cut() {
        let device = Device::flex();
        let people = || Tensor::<1, Int>::from_ints([0, 0, 1, 1], &device);
        // Clean photos: each person's two photos at cos 0.8, the two people at cos 0 or below.
        let teacher = unit_rows(&[[1.0, 0.0, 0.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0], [-0.6, 0.0, 0.8]]);
        let exact = verification_margin_loss(teacher.clone(), teacher.clone(), people()).into_scalar::<f32>();
        assert!(exact.abs() < 1e-6, "every pair clears the cut: {exact}");
        // View 0 turns half-way to person 1: its four cosines decide the cost, each genuine
        // shortfall below 0.43 and each impostor excess over 0.23 divided by the 8 pairs of
        // its kind.
        let turned = unit_rows(&[[1.0, 0.0, 1.0], [0.8, 0.6, 0.0], [0.0, 0.0, 1.0], [-0.6, 0.0, 0.8]]);
        let cost = verification_margin_loss(turned.clone(), teacher.clone(), people()).into_scalar::<f32>();
        let cos = turned
            .clone()
            .slice([0..1, 0..3])
            .matmul(teacher.clone().transpose())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let expected = (0.43 - cos[0]).max(0.0) / 8.0
            + (0.43 - cos[1]).max(0.0) / 8.0
            + (cos[2] - 0.23).max(0.0) / 8.0
            + (cos[3] - 0.23).max(0.0) / 8.0;
        assert!((cost - expected).abs() < 1e-5 && cost > 0.05, "{cost} vs {expected}");
        let weights =
            RelationWeights { similarity: 0.0, feature: 0.0, verification: 2.0, ..RelationWeights::default() };
        let (total, terms) = relation_loss(turned, None, teacher, people(), &weights);
        assert_eq!(terms.iter().map(|(name, _)| *name).collect::<Vec<_>>(), ["verification"]);
        assert!((total.into_scalar::<f32>() - 2.0 * cost).abs() < 1e-5);
    }

    #[test]
    fn rkd_gradients_are_finite_when_a_batch_repeats_a_face() {
        // P x K batches repeat the photo of a person with one photo: equal teacher rows, and
        // zero differences on every diagonal.
        let device = Device::flex().autodiff();
        let values = [0.6f32, 0.8, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let student = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([3, 3]).require_grad();
        let teacher = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([3, 3]);
        let loss = rkd_distance_loss(student.clone(), teacher.clone()) + rkd_angle_loss(student.clone(), teacher);
        let grads = loss.backward();
        let grad = student.grad(&grads).expect("a gradient").into_data().try_to_vec::<f32>().unwrap();
        assert!(grad.iter().all(|g| g.is_finite()), "{grad:?}");
    }
}
