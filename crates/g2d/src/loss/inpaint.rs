//! Inpainting losses of ICT's upsampler (after Liu et al., 2018): hole-weighted L1, a
//! least-squares adversarial term, and perceptual and style terms on critic features.

use burn::prelude::*;

/// `hole_weight * L1 inside the covered region + valid_weight * L1 outside`, each averaged over
/// all pixels (so a small hole weighs little, as in Liu et al.).
///
/// # Shapes
/// `restored`, `clean`: `[batch, 3, H, W]`; `hole`: `[batch, 1, H, W]` in 0..1 (1 = covered).
pub fn reconstruction_loss(
    restored: Tensor<4>,
    clean: Tensor<4>,
    hole: Tensor<4>,
    hole_weight: f32,
    valid_weight: f32,
) -> Tensor<1> {
    let error = (restored - clean).abs();
    let valid = hole.clone().neg().add_scalar(1.0);
    let in_hole = (error.clone() * hole).mean();
    let outside = (error * valid).mean();
    in_hole.mul_scalar(hole_weight) + outside.mul_scalar(valid_weight)
}

/// Least-squares GAN, critic side: real patches toward 1, restored ones toward 0.
pub fn adversarial_critic_loss(real_scores: Tensor<4>, fake_scores: Tensor<4>) -> Tensor<1> {
    (real_scores.sub_scalar(1.0).powf_scalar(2.0).mean() + fake_scores.powf_scalar(2.0).mean()).mul_scalar(0.5)
}

/// Least-squares GAN, generator side: restored patches toward 1.
pub fn adversarial_generator_loss(fake_scores: Tensor<4>) -> Tensor<1> {
    fake_scores.sub_scalar(1.0).powf_scalar(2.0).mean()
}

/// Perceptual term: mean L1 between feature maps of the restored and the clean face.
pub fn feature_loss(restored: &[Tensor<4>], clean: &[Tensor<4>]) -> Tensor<1> {
    let terms = restored.iter().zip(clean).map(|(r, c)| (r.clone() - c.clone()).abs().mean());
    sum(terms).div_scalar(restored.len().max(1) as f32)
}

/// Style term: mean L1 between the Gram matrices (channel correlations) of the feature maps.
pub fn style_loss(restored: &[Tensor<4>], clean: &[Tensor<4>]) -> Tensor<1> {
    let terms = restored.iter().zip(clean).map(|(r, c)| (gram(r.clone()) - gram(c.clone())).abs().mean());
    sum(terms).div_scalar(restored.len().max(1) as f32)
}

/// `[batch, C, H, W]` -> `[batch, C, C]`, normalised by C*H*W.
fn gram(features: Tensor<4>) -> Tensor<3> {
    let [b, c, h, w] = features.dims();
    let f = features.reshape([b, c, h * w]);
    f.clone().matmul(f.swap_dims(1, 2)).div_scalar((c * h * w) as f32)
}

fn sum(terms: impl Iterator<Item = Tensor<1>>) -> Tensor<1> {
    terms.reduce(|a, b| a + b).expect("BUG: at least one feature map")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t4(values: Vec<f32>, shape: [usize; 4]) -> Tensor<4> {
        Tensor::<1>::from_floats(values.as_slice(), &Device::flex()).reshape(shape)
    }

    #[test]
    fn reconstruction_weighs_hole_and_valid_pixels() {
        // 4 pixels, one channel-triplet each; error 1 everywhere; pixel 0 is covered.
        let restored = t4(vec![1.0; 12], [1, 3, 2, 2]);
        let clean = t4(vec![0.0; 12], [1, 3, 2, 2]);
        let hole = t4(vec![1.0, 0.0, 0.0, 0.0], [1, 1, 2, 2]);
        let loss = reconstruction_loss(restored, clean, hole, 6.0, 1.0).into_scalar::<f32>();
        // hole: 3 of 12 errors -> 0.25 * 6; valid: 9 of 12 -> 0.75.
        assert!((loss - (1.5 + 0.75)).abs() < 1e-6, "{loss}");
    }

    #[test]
    fn adversarial_terms_are_zero_at_their_targets() {
        let ones = t4(vec![1.0; 4], [1, 1, 2, 2]);
        let zeros = t4(vec![0.0; 4], [1, 1, 2, 2]);
        assert_eq!(adversarial_critic_loss(ones.clone(), zeros.clone()).into_scalar::<f32>(), 0.0);
        assert_eq!(adversarial_generator_loss(ones.clone()).into_scalar::<f32>(), 0.0);
        assert_eq!(adversarial_generator_loss(zeros).into_scalar::<f32>(), 1.0);
        let same = std::slice::from_ref(&ones);
        assert_eq!(style_loss(same, same).into_scalar::<f32>(), 0.0);
        assert_eq!(feature_loss(same, &[ones.clone() * 0.5]).into_scalar::<f32>(), 0.5);
    }
}
