//! The four G2D stages on a tiny network and synthetic faces, two steps each: every stage
//! runs, validates and leaves its folder; a finished run is recognised; a resume with
//! another network is refused; the exported backbone's shape follows the config. Seconds on
//! 2 cores; no data set or model file (the hermetic tier of this crate).

use maskid_core::{AlignedFace, Embedding, Landmarks5, OcclusionMap, TrainingFace, VerificationPairs};
use maskid_core::{ALIGNED_SIZE_PX, ALIGNMENT_TEMPLATE};
use maskid_g2d::{G2dConfig, Stage, TrainData, TrainOptions};

/// A face of `identity`: a smooth pattern of its own, shifted a little per photo.
fn face(identity: u32, photo: u32) -> AlignedFace {
    let side = ALIGNED_SIZE_PX;
    let mut rgb = Vec::with_capacity(side * side * 3);
    for y in 0..side {
        for x in 0..side {
            for c in 0..3u32 {
                let v = (x as u32 + photo) * (identity + 2) + y as u32 * (c + 3) + identity * 40;
                rgb.push((v % 256) as u8);
            }
        }
    }
    AlignedFace::from_rgb(rgb).expect("112x112x3")
}

fn tiny_config() -> G2dConfig {
    let mut config = G2dConfig::from_toml(
        r#"
        name = "tiny"
        [model.encoder]
        stem_width = 4
        width = 8
        res_blocks = 1
        descriptor_block = 1
        [model.reformer]
        widths = [4, 4, 4, 4]
        blocks = [1, 1, 1, 1]
        embedding_dim = 8
        [reformer]
        identities_per_batch = 2
        images_per_identity = 2
        [reformer.schedule]
        batch_size = 4
        "#,
        "tiny",
    )
    .unwrap();
    for stage in Stage::ALL {
        let schedule = config.schedule_mut(stage);
        schedule.steps = 2;
        schedule.batch_size = 4;
        schedule.checkpoint_every = 1;
        schedule.validate_every = 0;
    }
    config.validate().unwrap();
    config
}

#[test]
fn every_stage_trains_two_steps_on_synthetic_faces_and_resumes_only_as_itself() {
    let faces: Vec<TrainingFace> = (0..4)
        .flat_map(|identity| {
            (0..3).map(move |photo| TrainingFace {
                face: face(identity, photo),
                landmarks: Landmarks5(ALIGNMENT_TEMPLATE),
                identity,
                teacher: Embedding::normalized((0..16).map(|i| ((i + identity as usize * 5) % 7) as f32).collect()),
            })
        })
        .collect();
    let mut validation = VerificationPairs::default();
    for i in 0..10u32 {
        let genuine = i % 2 == 0;
        validation.references.push(face(i % 4, 0));
        validation.probes.push(face(if genuine { i % 4 } else { (i + 1) % 4 }, 1));
        validation.clean_probes.push(face(i % 4, 1));
        validation.probe_holes.push(OcclusionMap::empty(ALIGNED_SIZE_PX, ALIGNED_SIZE_PX));
        validation.genuine.push(genuine);
        validation.folds.push(i as usize);
    }
    let data = TrainData {
        faces: &faces,
        validation: &validation,
        dense_validation: None,
        teacher_onnx: None,
        encoder_weights: None,
        real_masks: None,
    };
    let run = tempfile::tempdir().unwrap();
    let options = TrainOptions { run: run.path(), device: maskid_g2d::Device::flex(), resume: false, stop_after: None };
    let config = tiny_config();
    for stage in Stage::ALL {
        let report = maskid_g2d::train_stage(&config, stage, &data, &options, &mut |_| {}).unwrap();
        assert_eq!((report.steps, report.finished), (2, true), "{}", stage.name());
        assert!(report.final_loss.is_finite(), "{}: {}", stage.name(), report.final_loss);
        assert!(report.best_validation.is_some(), "{} validated at its end", stage.name());
        let dir = run.path().join(stage.name());
        for file in ["config.toml", "state.json", "metrics.jsonl"] {
            assert!(dir.join(file).is_file(), "{}/{file}", stage.name());
        }
        assert!(maskid_g2d::finished_with(run.path(), stage.name(), &config));
    }
    let (backbone, _) = maskid_g2d::load_backbone(run.path(), &maskid_g2d::Device::flex()).unwrap();
    let embedding = maskid_g2d::model::embed_faces(&backbone, &[&face(0, 0)], &maskid_g2d::Device::flex()).unwrap();
    assert_eq!(embedding[0].len(), 8, "the configured embedding_dim");

    // A run saved by an older maskid (its config.toml with the detector's table of that time,
    // so another hash) is still this config's: found finished, resumed without training.
    let saved = run.path().join("classifier").join("config.toml");
    let old = std::fs::read_to_string(&saved).unwrap() + "\n[detector]\nfaceless = 0.5\n";
    std::fs::write(&saved, old).unwrap();
    let state = run.path().join("classifier").join("state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["config_sha256"] = "0".repeat(64).into();
    std::fs::write(&state, json.to_string()).unwrap();
    assert!(maskid_g2d::finished_with(run.path(), Stage::Classifier.name(), &config));
    let again = TrainOptions { resume: true, device: maskid_g2d::Device::flex(), ..options };
    let report = maskid_g2d::train_stage(&config, Stage::Classifier, &data, &again, &mut |_| {}).unwrap();
    assert_eq!((report.steps, report.steps_this_session, report.finished), (2, 0, true));

    // Resuming with another network is refused, with the way out.
    let mut wider = config.clone();
    wider.model.reformer.embedding_dim = 16;
    let resume = TrainOptions { resume: true, ..again };
    let err = maskid_g2d::train_stage(&wider, Stage::Reformer, &data, &resume, &mut |_| {}).unwrap_err().to_string();
    assert!(err.contains("another config"), "{err}");
    assert!(!maskid_g2d::finished_with(run.path(), Stage::Reformer.name(), &wider));
}

/// The mask classifier's stage on synthetic faces (a dark lower half as the "mask"): it
/// trains, validates every kind, finishes, and its best network loads back.
#[test]
fn the_mask_stage_trains_validates_and_loads_back() {
    use maskid_core::{MaskExample, MaskSource};
    use maskid_g2d::mask_state::{
        load_mask_state, mask_state_finished_with, train_mask_state, MaskData, MaskStateConfig,
    };
    let masked = |f: AlignedFace| {
        let mut rgb = f.rgb().to_vec();
        rgb[ALIGNED_SIZE_PX * 3 * 64..].fill(20);
        AlignedFace::from_rgb(rgb).unwrap()
    };
    let mut examples = Vec::new();
    for i in 0..6 {
        examples.push(MaskExample { face: face(i, 0), source: MaskSource::Clean });
        examples.push(MaskExample {
            face: masked(face(i, 1)),
            source: MaskSource::PhotoDrawn { nose_covered: i % 2 == 0 },
        });
        examples.push(MaskExample { face: masked(face(i, 2)), source: MaskSource::Real });
    }
    let (train, validation) = examples.split_at(12);
    let mut config = MaskStateConfig { width: 4, ..MaskStateConfig::default() };
    config.schedule.steps = 3;
    config.schedule.batch_size = 4;
    config.schedule.decay_from = Some(1);
    config.schedule.checkpoint_every = 1;
    config.schedule.validate_every = 2;
    config.validate().unwrap();
    let run = tempfile::tempdir().unwrap();
    let options =
        TrainOptions { run: run.path(), device: maskid_g2d::device("cpu").unwrap(), resume: false, stop_after: None };
    let data = MaskData { train, validation };
    let report = train_mask_state(&config, &data, &options, &mut |_| {}).unwrap();
    assert!(report.finished && report.steps == 3, "{report:?}");
    assert!(report.final_loss.is_finite());
    let (value, _) = report.best_validation.expect("validated");
    assert!((0.0..=1.0).contains(&value), "{value}");
    assert!(mask_state_finished_with(run.path(), &config));
    let (net, saved) = load_mask_state(run.path(), &options.device).unwrap();
    assert_eq!(saved, config);
    let rgb: Vec<&[u8]> = validation.iter().map(|e| e.face.rgb()).collect();
    let logits = net.forward(maskid_g2d::data::faces_tensor(&rgb, &options.device));
    assert_eq!(logits.dims(), [validation.len(), 2]);
}

/// A photo edge blacks out one side of the crop and never the middle of the face.
#[test]
fn a_photo_edge_cuts_a_side_and_spares_the_centre() {
    for seed in 0..50 {
        let mut rgb = vec![200u8; ALIGNED_SIZE_PX * ALIGNED_SIZE_PX * 3];
        maskid_g2d::mask_state::photo_edge(&mut rgb, &mut maskid_mask::Rng::new(seed));
        let black = rgb.chunks_exact(3).filter(|p| p[0] == 0).count();
        assert!(black > 0, "seed {seed}: nothing cut");
        let centre = (56 * ALIGNED_SIZE_PX + 56) * 3;
        assert_eq!(rgb[centre], 200, "seed {seed}: the centre was cut");
        // The eyes (row 52) stay.
        for x in [38, 74] {
            assert_eq!(rgb[(52 * ALIGNED_SIZE_PX + x) * 3], 200, "seed {seed}: cut into an eye");
        }
    }
}
