//! What a mask looks like: its style, colours, texture and coverage, all drawn from a seed.

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// The kinds of mask maskid draws, each with its own shape model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaskStyle {
    /// Pleated surgical mask with ear loops.
    Surgical,
    /// N95 / KN95 cup respirator with a centre seam, sometimes a valve.
    N95,
    /// Cloth mask, solid or patterned.
    Cloth,
    /// Neck gaiter or scarf pulled up over the lower face and neck.
    Gaiter,
    /// Gas-mask-like rubber respirator with two filter cartridges.
    Respirator,
    /// A hand over the mouth: the commonest occluder that is not a mask, with skin colour and
    /// finger gaps that fabric masks never show.
    Hand,
}

impl MaskStyle {
    /// Every style, in a fixed order.
    pub const ALL: [MaskStyle; 6] = [
        MaskStyle::Surgical,
        MaskStyle::N95,
        MaskStyle::Cloth,
        MaskStyle::Gaiter,
        MaskStyle::Respirator,
        MaskStyle::Hand,
    ];

    /// The styles that are masks: all but the hand.
    pub const MASKS: [MaskStyle; 5] =
        [MaskStyle::Surgical, MaskStyle::N95, MaskStyle::Cloth, MaskStyle::Gaiter, MaskStyle::Respirator];

    /// One of [`MaskStyle::MASKS`], drawn from `rng`.
    pub fn pick_mask(rng: &mut Rng) -> MaskStyle {
        Self::MASKS[rng.below(Self::MASKS.len())]
    }

    /// The style's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            MaskStyle::Surgical => "surgical",
            MaskStyle::N95 => "n95",
            MaskStyle::Cloth => "cloth",
            MaskStyle::Gaiter => "gaiter",
            MaskStyle::Respirator => "respirator",
            MaskStyle::Hand => "hand",
        }
    }
}

impl MaskStyle {
    /// A style by name, or `random` (`None`: each face's seed picks the style).
    pub fn choice(name: &str) -> Result<Option<Self>, String> {
        if name == "random" {
            Ok(None)
        } else {
            name.parse().map(Some)
        }
    }
}

impl std::str::FromStr for MaskStyle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            format!("unknown mask style `{s}` (allowed: surgical, n95, cloth, gaiter, respirator, hand, random)")
        })
    }
}

/// How much of the face a mask covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// Drawn from the seed: the nose is covered three times in four.
    #[default]
    Random,
    /// Up to the nose bridge.
    Nose,
    /// Below the nose, which stays visible.
    BelowNose,
}

impl std::str::FromStr for Coverage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Self::Random),
            "nose" => Ok(Self::Nose),
            "below-nose" => Ok(Self::BelowNose),
            _ => Err(format!("unknown coverage `{s}` (allowed: random, nose, below-nose)")),
        }
    }
}

/// A fabric pattern; lengths in template pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // the fields are the pattern's plain parameters
pub enum Texture {
    /// One colour.
    Solid,
    /// Stripes across the unit direction (dx, dy).
    Stripes { dx: f32, dy: f32, period: f32 },
    /// A checkerboard.
    Checks { period: f32 },
    /// Polka dots.
    Dots { period: f32, radius: f32 },
    /// Blobs of value noise, like a floral print.
    Floral { scale: f32 },
}

/// Everything that decides one mask, drawn from a seed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskSpec {
    /// Style.
    pub style: MaskStyle,
    /// Main colour, RGB.
    pub colour: [u8; 3],
    /// Second colour of patterns, valves, cartridges.
    pub accent: [u8; 3],
    /// Fabric pattern.
    pub texture: Texture,
    /// Whether the nose is covered.
    pub nose_covered: bool,
    /// N95 exhalation valve.
    pub valve: bool,
    /// Mirror left-right (valve side, hand side).
    pub mirrored: bool,
    /// Seed of the outline warp and the fabric noise.
    pub detail_seed: u64,
}

fn pick<T: Copy>(rng: &mut Rng, items: &[T]) -> T {
    items[rng.below(items.len())]
}

/// A fabric colour of low saturation: real masks are rarely loud.
fn muted_colour(rng: &mut Rng) -> [u8; 3] {
    let grey = rng.range(25.0, 225.0);
    let spread = rng.range(0.0, 50.0);
    std::array::from_fn(|_| (grey + rng.range(-spread, spread)).clamp(0.0, 255.0) as u8)
}

/// `a` moved a share `t` of the way to `b`.
fn mix(a: [u8; 3], b: [u8; 3], t: f32) -> [u8; 3] {
    std::array::from_fn(|k| (f32::from(a[k]) + (f32::from(b[k]) - f32::from(a[k])) * t).round() as u8)
}

/// Plain fabrics as they appear in photos of real masks (masked-wild): black and charcoal
/// most of all, then greys, navy, denim, white, beige, olive, burgundy, pink, light blue.
const FABRICS: [[u8; 3]; 14] = [
    [26, 26, 29],
    [34, 34, 38],
    [44, 44, 48],
    [62, 62, 68],
    [118, 118, 124],
    [182, 182, 186],
    [32, 42, 72],
    [72, 96, 130],
    [232, 232, 228],
    [196, 180, 156],
    [84, 90, 62],
    [98, 32, 42],
    [214, 168, 178],
    [152, 188, 214],
];

impl MaskSpec {
    /// The mask of `seed`; `style` forces a style, `coverage` the nose coverage.
    pub fn from_seed(seed: u64, style: Option<MaskStyle>, coverage: Coverage) -> Self {
        let mut rng = Rng::new(seed);
        let drawn = pick(&mut rng, &MaskStyle::ALL);
        let style = style.unwrap_or(drawn);
        let nose_draw = rng.chance(0.75);
        let nose_covered = match (style, coverage) {
            (MaskStyle::Respirator, _) => true,
            (_, Coverage::Nose) => true,
            (_, Coverage::BelowNose) => false,
            (_, Coverage::Random) => nose_draw,
        };
        let (colour, accent, texture) = match style {
            MaskStyle::Surgical => {
                let c = if rng.chance(0.8) {
                    pick(
                        &mut rng,
                        &[
                            [140, 185, 225],
                            [120, 170, 215],
                            [150, 205, 190],
                            [236, 238, 240],
                            [60, 60, 66],
                            [235, 180, 200],
                        ],
                    )
                } else {
                    muted_colour(&mut rng)
                };
                (c, [245, 245, 245], Texture::Solid)
            }
            MaskStyle::N95 => {
                let c =
                    pick(&mut rng, &[[240, 240, 236], [228, 230, 232], [200, 200, 205], [45, 45, 50], [110, 150, 200]]);
                (c, [150, 155, 160], Texture::Solid)
            }
            MaskStyle::Cloth | MaskStyle::Gaiter => {
                // Most are plain; a print's second colour stays near the first in brightness.
                let colour = if rng.chance(0.7) { pick(&mut rng, &FABRICS) } else { muted_colour(&mut rng) };
                let texture = if rng.chance(0.6) {
                    Texture::Solid
                } else {
                    match rng.below(4) {
                        0 => {
                            let (dx, dy) = (rng.range(-1.0, 1.0), rng.range(-1.0, 1.0));
                            let n = (dx * dx + dy * dy).sqrt().max(0.1);
                            Texture::Stripes { dx: dx / n, dy: dy / n, period: rng.range(7.0, 16.0) }
                        }
                        1 => Texture::Checks { period: rng.range(8.0, 16.0) },
                        2 => Texture::Dots { period: rng.range(7.0, 12.0), radius: rng.range(1.5, 3.0) },
                        _ => Texture::Floral { scale: rng.range(6.0, 11.0) },
                    }
                };
                let other = muted_colour(&mut rng);
                (colour, mix(colour, other, rng.range(0.35, 0.7)), texture)
            }
            MaskStyle::Respirator => {
                // Rubber or silicone half masks; filter cartridges in their hazard colours
                // (grey, magenta P100, yellow, black) or the body's.
                let c = pick(&mut rng, &[[34, 34, 38], [52, 54, 58], [70, 74, 66], [96, 98, 104], [150, 150, 156]]);
                let cartridge = pick(&mut rng, &[[128, 130, 136], [196, 84, 150], [196, 170, 64], [40, 40, 44], c]);
                (c, cartridge, Texture::Solid)
            }
            MaskStyle::Hand => ([0, 0, 0], [0, 0, 0], Texture::Solid), // skin comes from the face
        };
        let valve = style == MaskStyle::N95 && rng.chance(0.4);
        let mirrored = rng.chance(0.5);
        Self { style, colour, accent, texture, nose_covered, valve, mirrored, detail_seed: rng.next_u64() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_everything() {
        assert_eq!(MaskSpec::from_seed(7, None, Coverage::Random), MaskSpec::from_seed(7, None, Coverage::Random));
        let styles: std::collections::HashSet<_> =
            (0..200).map(|s| MaskSpec::from_seed(s, None, Coverage::Random).style).collect();
        assert_eq!(styles.len(), 6, "every style is drawn");
        let spec = MaskSpec::from_seed(u64::MAX, Some(MaskStyle::Cloth), Coverage::BelowNose);
        assert_eq!(spec.style, MaskStyle::Cloth);
        assert!(!spec.nose_covered);
        assert!(MaskSpec::from_seed(0, Some(MaskStyle::Respirator), Coverage::BelowNose).nose_covered);
        assert!("scarf".parse::<MaskStyle>().unwrap_err().contains("surgical"));
        assert!("chin".parse::<Coverage>().is_err());
    }
}
