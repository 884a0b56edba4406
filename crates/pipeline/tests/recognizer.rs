//! The `Recognizer` that the CLI, the service and Python share, on the sample photos (fetched
//! by package name into the cache, like the models): both shipped models, one gallery, masks
//! drawn on the aligned face, and bad photos. No data set needed.

use std::path::PathBuf;

use maskid_assets::{Assets, SAMPLE_PHOTOS};
use maskid_face::FacePolicy;
use maskid_gallery::Gallery;
use maskid_mask::{mask_face, Coverage, MaskSpec, MaskStyle};
use maskid_pipeline::{landmarks_in_crop, Decision, ModelsConfig, Recognizer};

fn sample(name: &str) -> PathBuf {
    let photo = SAMPLE_PHOTOS.iter().find(|p| p.name == name).expect("a sample photo");
    Assets::from_env().get(photo).expect("the sample photos (maskid models fetch)")
}

fn recognizer(model: &str) -> Recognizer {
    Recognizer::load(&Assets::from_env(), ModelsConfig::default(), model.parse().unwrap()).unwrap()
}

#[test]
fn both_models_tell_the_sample_people_apart_and_share_one_gallery() {
    let (teacher, g2d) = (recognizer("teacher"), recognizer("g2d"));
    assert_eq!(teacher.model().space, g2d.model().space, "the student embeds in its teacher's space");
    for rec in [&teacher, &g2d] {
        let photo = |name: &str| rec.open_photo(&sample(name)).unwrap();
        let same = rec.verify(&photo("person_a_1.jpg"), &photo("person_a_2.jpg"), FacePolicy::Largest, None).unwrap();
        let other = rec.verify(&photo("person_a_1.jpg"), &photo("person_b_1.jpg"), FacePolicy::Largest, None).unwrap();
        assert!(same.same_person && !other.same_person, "{}: {same:?} {other:?}", rec.model().id);
        assert!(same.similarity > other.similarity + 0.2, "{}: {same:?} {other:?}", rec.model().id);
        let face = rec.face(&photo("person_b_1.jpg"), FacePolicy::RequireOne).unwrap();
        assert_eq!(face.embedding.values().len(), 128);
        let norm: f32 = face.embedding.values().iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "L2-normalised: {norm}");
    }

    // The teacher enrols; the student searches the same gallery, also behind a drawn mask.
    let dir = tempfile::tempdir().unwrap();
    let gallery = Gallery::open(dir.path().join("people.db")).unwrap();
    for (name, file) in [("alice", "person_a_1.jpg"), ("bob", "person_b_1.jpg")] {
        let photo = teacher.open_photo(&sample(file)).unwrap();
        let enrolled =
            teacher.enroll(&gallery, name, &serde_json::json!({}), &photo, FacePolicy::RequireOne, Default::default());
        assert!(enrolled.unwrap().notes.is_empty(), "the sample photos face the camera, sharp");
    }
    let probe = g2d.open_photo(&sample("person_a_2.jpg")).unwrap();
    let found = g2d.identify(&gallery, &probe, FacePolicy::Largest, 2, Decision::default()).unwrap().remove(0);
    assert_eq!(found.matched().map(|c| c.name.as_str()), Some("alice"), "{:?}", found.candidates);
    // Decided by the default target FPIR for a gallery of two faces: a threshold above the
    // 1:1 one, which stands for that FPIR; a given threshold says what FPIR it stands for.
    let by_fpir = found.decided_by;
    assert_eq!((by_fpir.fpir, by_fpir.gallery_faces), (Some(1e-3), 2));
    assert!(by_fpir.threshold > maskid_pipeline::G2D_THRESHOLD, "{by_fpir:?}");
    let given = g2d.open_set_threshold(&gallery, Decision::Threshold(0.3)).unwrap();
    assert!(given.fpir.unwrap() > 1e-3 && given.threshold == 0.3, "{given:?}");
    for wrong in [0.0, 1.0, f64::NAN] {
        let err = g2d.open_set_threshold(&gallery, Decision::Fpir(wrong)).unwrap_err().to_string();
        assert!(err.contains("FPIR must lie in (0, 1)"), "{err}");
    }
    let face = g2d.face(&probe, FacePolicy::Largest).unwrap();
    let spec = MaskSpec::from_seed(0, Some(MaskStyle::Surgical), Coverage::Random);
    let (masked, covered) = mask_face(&face.face, &landmarks_in_crop(&face.detection.landmarks), &spec).unwrap();
    assert!(covered.covered_fraction() > 0.15, "the mask covers the lower face: {}", covered.covered_fraction());
    let masked = g2d.embed(&[masked]).unwrap().remove(0);
    let clean_alice = g2d
        .embed(&[g2d.face(&g2d.open_photo(&sample("person_a_1.jpg")).unwrap(), FacePolicy::Largest).unwrap().face])
        .unwrap();
    let verdict = g2d.compare(&masked, &clean_alice[0], None).unwrap();
    assert!(verdict.same_person, "alice behind a surgical mask: {verdict:?}");
    let stranger = g2d.open_photo(&sample("impostor_1.jpg")).unwrap();
    assert!(g2d.identify(&gallery, &stranger, FacePolicy::Largest, 2, Decision::default()).unwrap()[0]
        .matched()
        .is_none());

    // A group photo (alice's second photo beside the stranger): every face its own answer.
    let (a, b) = (probe.image(), stranger.image());
    let mut group = image::RgbImage::from_pixel(a.width() + b.width(), a.height().max(b.height()), image::Rgb([90; 3]));
    image::imageops::replace(&mut group, a, 0, 0);
    image::imageops::replace(&mut group, b, i64::from(a.width()), 0);
    let answers = g2d
        .identify(&gallery, &maskid_pipeline::Photo::from_rgb(group), FacePolicy::All, 2, Decision::default())
        .unwrap();
    let mut named: Vec<(f32, Option<String>)> =
        answers.iter().map(|a| (a.face.detection.bbox.x, a.matched().map(|c| c.name.clone()))).collect();
    named.sort_by(|x, y| x.0.total_cmp(&y.0));
    let named: Vec<Option<String>> = named.into_iter().map(|(_, n)| n).collect();
    assert_eq!(named, [Some("alice".to_string()), None], "left alice, right a stranger");
}

#[test]
fn photos_without_a_face_or_not_photos_at_all_are_errors_that_say_so() {
    let rec = recognizer("teacher");
    let grey = image::RgbImage::from_pixel(320, 240, image::Rgb([128, 128, 128]));
    let err = rec.face(&maskid_pipeline::Photo::from_rgb(grey), FacePolicy::RequireOne).unwrap_err();
    assert!(err.to_string().contains("no face"), "{err}");
    let err = rec.decode_photo(b"not a photo").err().expect("refused").to_string();
    assert!(err.contains("image"), "{err}");
    let err = rec.threshold(Some(1.5)).unwrap_err();
    assert!(err.to_string().contains("1.5"), "{err}");
}
