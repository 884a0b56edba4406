//! Training objectives. Loss files know nothing about stages.

mod inpaint;
mod relation;

pub use inpaint::{adversarial_critic_loss, adversarial_generator_loss, feature_loss, reconstruction_loss, style_loss};
pub use relation::{feature_approximation_loss, relation_loss, rkd_angle_loss, rkd_distance_loss, similarity_loss};
