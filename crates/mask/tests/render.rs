//! Masks drawn on synthetic faces: coverage where a mask belongs, determinism, bad input.

use maskid_core::{Landmarks5, ALIGNMENT_TEMPLATE};
use maskid_mask::{occlude, render_mask, Coverage, MaskSpec, MaskStyle, OcclusionMix, RgbImageMut};

/// A made-up face: skin-toned oval with darker eyes and mouth on a grey background.
fn synthetic_face(size: usize) -> Vec<u8> {
    let s = size as f32 / 112.0;
    let mut rgb = vec![90u8; size * size * 3];
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f32 / s, y as f32 / s);
            let in_face = ((u - 56.0) / 38.0).powi(2) + ((v - 70.0) / 46.0).powi(2) < 1.0;
            let eye = ((u - 38.3).powi(2) + (v - 51.7).powi(2)).min((u - 73.5).powi(2) + (v - 51.5).powi(2)) < 16.0;
            let mouth = (v - 92.0).abs() < 2.0 && (u - 56.0).abs() < 14.0;
            let c = if eye || mouth {
                [60, 40, 40]
            } else if in_face {
                [210, 170, 150]
            } else {
                [90, 90, 90]
            };
            rgb[(y * size + x) * 3..(y * size + x) * 3 + 3].copy_from_slice(&c);
        }
    }
    rgb
}

fn draw(style: MaskStyle, seed: u64, coverage: Coverage) -> (Vec<u8>, Vec<f32>) {
    let mut rgb = synthetic_face(112);
    let spec = MaskSpec::from_seed(seed, Some(style), coverage);
    let map = render_mask(&mut RgbImageMut::new(112, 112, &mut rgb).unwrap(), &Landmarks5(ALIGNMENT_TEMPLATE), &spec)
        .unwrap();
    (rgb, map.coverage)
}

fn at(map: &[f32], x: usize, y: usize) -> f32 {
    map[y * 112 + x]
}

#[test]
fn every_style_covers_mouth_and_chin_and_leaves_the_eyes() {
    for style in MaskStyle::ALL {
        for seed in [0, 1, 2, 3, u64::MAX] {
            let (_, map) = draw(style, seed, Coverage::Random);
            let covered: f32 = map.iter().sum::<f32>() / map.len() as f32;
            assert!((0.15..0.6).contains(&covered), "{style:?} seed {seed}: covers {covered}");
            assert!(at(&map, 56, 92) > 0.99, "{style:?} seed {seed}: mouth covered");
            // A hand over nose and mouth may leave the chin free; masks never do.
            if style != MaskStyle::Hand {
                assert!(at(&map, 45, 100) > 0.99, "{style:?} seed {seed}: chin covered");
            }
            for (x, y) in [(38, 50), (73, 50), (56, 40)] {
                assert_eq!(at(&map, x, y), 0.0, "{style:?} seed {seed}: eyes and brow stay visible");
            }
        }
    }
}

#[test]
fn coverage_decides_the_nose() {
    for style in [MaskStyle::Surgical, MaskStyle::N95, MaskStyle::Cloth, MaskStyle::Gaiter] {
        let (_, over) = draw(style, 5, Coverage::Nose);
        let (_, under) = draw(style, 5, Coverage::BelowNose);
        assert!(at(&over, 56, 64) > 0.99, "{style:?}: nose bridge covered");
        assert_eq!(at(&under, 56, 66), 0.0, "{style:?}: nose visible");
        assert!(at(&under, 56, 86) > 0.99, "{style:?}: still over the mouth");
    }
}

#[test]
fn the_map_says_which_pixels_changed_and_the_bytes_are_fixed() {
    let clean = synthetic_face(112);
    let (masked, map) = draw(MaskStyle::Surgical, 42, Coverage::Random);
    for (i, c) in map.iter().enumerate() {
        if *c == 0.0 {
            assert_eq!(masked[i * 3..i * 3 + 3], clean[i * 3..i * 3 + 3], "uncovered pixel {i} unchanged");
        }
    }
    assert_eq!(draw(MaskStyle::Surgical, 42, Coverage::Random).0, masked, "same seed, same bytes");
    assert_ne!(draw(MaskStyle::Surgical, 43, Coverage::Random).0, masked, "another seed, another mask");
    // The bytes of every style are part of every published masked-protocol number: pin them.
    let digests: Vec<u64> = MaskStyle::ALL
        .iter()
        .map(|style| {
            let (bytes, _) = draw(*style, 42, Coverage::Random);
            bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
        })
        .collect();
    assert_eq!(
        digests,
        PINNED_DIGESTS,
        "mask drawing changed: every masked protocol number changes with it (raise \
         maskid_mask::RENDER_VERSION, now {}, re-measure, and pin the new digests)",
        maskid_mask::RENDER_VERSION
    );
}

/// Digests of style 0..6 (`MaskStyle::ALL`), seed 42, drawing version 2.
const PINNED_DIGESTS: [u64; 6] = [
    1_736_784_881_948_342_021,
    17_251_628_169_974_108_960,
    4_213_001_316_833_097_641,
    14_886_878_713_349_998_819,
    5_218_247_856_584_022_822,
    9_960_227_268_500_484_506,
];

#[test]
fn full_photos_get_the_mask_at_their_own_resolution() {
    let size = 448;
    let mut rgb = synthetic_face(size);
    let landmarks = Landmarks5(ALIGNMENT_TEMPLATE.map(|p| [p[0] * 4.0, p[1] * 4.0]));
    let spec = MaskSpec::from_seed(9, Some(MaskStyle::N95), Coverage::Nose);
    let map = render_mask(&mut RgbImageMut::new(size, size, &mut rgb).unwrap(), &landmarks, &spec).unwrap();
    let (_, small) = draw(MaskStyle::N95, 9, Coverage::Nose);
    let (big_share, small_share) = (map.covered_fraction(), small.iter().sum::<f32>() / small.len() as f32);
    assert!((big_share - small_share).abs() < 0.02, "{big_share} vs {small_share}");
}

#[test]
fn bad_geometry_is_an_error_or_a_clipped_mask_never_a_panic() {
    let mut rgb = synthetic_face(112);
    let spec = MaskSpec::from_seed(1, None, Coverage::Random);
    let mut view = RgbImageMut::new(112, 112, &mut rgb).unwrap();
    assert!(render_mask(&mut view, &Landmarks5([[50.0, 50.0]; 5]), &spec).is_err(), "coincident");
    assert!(render_mask(&mut view, &Landmarks5([[f32::NAN, 1.0]; 5]), &spec).is_err());
    let collinear = Landmarks5([[30.0, 50.0], [80.0, 50.0], [55.0, 50.0], [35.0, 50.0], [75.0, 50.0]]);
    assert!(render_mask(&mut view, &collinear, &spec).is_ok());
    // Far outside the image: nothing drawn.
    let away = Landmarks5(ALIGNMENT_TEMPLATE.map(|p| [p[0] + 10_000.0, p[1]]));
    assert_eq!(render_mask(&mut view, &away, &spec).unwrap().covered_fraction(), 0.0);
    // Half outside, at the border: clipped.
    let border = Landmarks5(ALIGNMENT_TEMPLATE.map(|p| [p[0] + 60.0, p[1] + 40.0]));
    let map = render_mask(&mut view, &border, &spec).unwrap();
    assert!(map.covered_fraction() > 0.0 && map.covered_fraction() < 0.3);
    // A tiny face, 12 px wide.
    let tiny = Landmarks5(ALIGNMENT_TEMPLATE.map(|p| [p[0] / 8.0 + 20.0, p[1] / 8.0 + 20.0]));
    assert!(render_mask(&mut view, &tiny, &spec).unwrap().covered_fraction() > 0.0);
    // A buffer of the wrong size.
    let mut short = vec![0u8; 100];
    assert!(RgbImageMut::new(112, 112, &mut short).is_err());
}

#[test]
fn strokes_and_blocks_stay_on_the_lower_face() {
    let template = Landmarks5(ALIGNMENT_TEMPLATE);
    for (mix, seeds) in [
        (OcclusionMix { mask: 0.0, strokes: 1.0, blocks: 0.0, clean: 0.0, real: 0.0, hold_out: None }, 0..20),
        (OcclusionMix { mask: 0.0, strokes: 0.0, blocks: 1.0, clean: 0.0, real: 0.0, hold_out: None }, 0..20),
    ] {
        for seed in seeds {
            let mut rgb = synthetic_face(112);
            let (_, map) =
                occlude(&mut RgbImageMut::new(112, 112, &mut rgb).unwrap(), &template, seed, &mix, None).unwrap();
            assert!(map.covered_fraction() > 0.01, "something drawn");
            assert!(map.coverage[..55 * 112].iter().all(|c| *c == 0.0), "eyes untouched, seed {seed}");
        }
    }
}
