//! The real LFW list files parse to the counts its README gives, and every photo they name
//! exists. In the data tier (`#[ignore]`d; `--include-ignored` runs it, see scripts/test).

use std::path::{Path, PathBuf};

use maskid_eval::{Lfw, Protocol};

fn lfw() -> Lfw {
    let path = std::env::var_os("MASKID_LFW")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets/lfw"));
    Lfw::open(&path).unwrap_or_else(|e| panic!("LFW (set MASKID_LFW), or leave out --include-ignored: {e}"))
}

#[test]
#[ignore = "data tier: needs ../shared/datasets (scripts/test includes it when the data is there)"]
fn both_views_parse_with_the_published_counts_and_every_photo_exists() {
    let lfw = lfw();
    let view2 = lfw.view2_pairs().unwrap();
    let devtrain = lfw.devtrain_pairs().unwrap();
    let devtest = lfw.devtest_pairs().unwrap();
    assert_eq!((view2.len(), devtrain.len(), devtest.len()), (6000, 2200, 1000));
    for (pairs, genuine) in [(&view2, 3000), (&devtrain, 1100), (&devtest, 500)] {
        assert_eq!(pairs.iter().filter(|p| p.genuine).count(), genuine);
        for p in pairs.iter() {
            assert!(lfw.root().join(&p.a.path).is_file() && lfw.root().join(&p.b.path).is_file(), "{p:?}");
            assert_eq!(p.genuine, p.a.identity == p.b.identity);
        }
    }
    // View 2's folds: ten of 600 pairs, 300 genuine each.
    for fold in 0..10 {
        let in_fold: Vec<_> = view2.iter().filter(|p| p.fold == fold).collect();
        assert_eq!(in_fold.len(), 600);
        assert_eq!(in_fold.iter().filter(|p| p.genuine).count(), 300);
    }
    let train = lfw.people("peopleDevTrain.txt").unwrap();
    let test = lfw.people("peopleDevTest.txt").unwrap();
    assert_eq!((train.len(), test.len()), (4038, 1711));
    assert_eq!(train.iter().map(|(_, n)| n).sum::<usize>(), 9525);
    let train_names: std::collections::HashSet<_> = train.iter().map(|(n, _)| n).collect();
    assert!(test.iter().all(|(n, _)| !train_names.contains(n)), "the two lists share no person");
    assert_eq!(lfw.people("people.txt").unwrap().len(), 5749);

    let ident = Protocol::LfwDevtestIdent.ident_set(&lfw, 0).unwrap().unwrap();
    assert_eq!(ident.gallery.len() + ident.non_enrolled.len(), 1711);
    assert!(ident.probes.iter().chain(&ident.gallery).all(|i| lfw.root().join(&i.path).is_file()));

    // The validation protocols stay among the held-out DevTrain people.
    let held_out = lfw.devtrain_holdout_people(0).unwrap();
    let held_names: std::collections::HashSet<&String> = held_out.iter().map(|(n, _)| n).collect();
    let dense = lfw.devtrain_holdout_dense_pairs(0, None).unwrap();
    assert!(dense.iter().all(|p| held_names.contains(&p.a.identity) && held_names.contains(&p.b.identity)));
    assert!(dense.iter().filter(|p| p.genuine).count() > 1000, "denser than the 432 validation pairs");
    assert_eq!(Protocol::LfwDevtrainHoldoutDense.pairs(&lfw, 0).unwrap().unwrap(), dense);
    // A cut-down set keeps the first people whose photos fit, with as many impostor pairs.
    let small = lfw.devtrain_holdout_dense_pairs(0, Some(60)).unwrap();
    let photos: std::collections::BTreeSet<_> = small.iter().flat_map(|p| [&p.a.path, &p.b.path]).collect();
    assert!(photos.len() <= 60 && photos.len() > 10, "{} photos", photos.len());
    assert_eq!(small.iter().filter(|p| !p.genuine).count(), 100_000);
    assert!(small.iter().any(|p| p.genuine));
    let ident = Protocol::LfwDevtrainHoldoutIdent.ident_set(&lfw, 0).unwrap().unwrap();
    assert_eq!(ident.gallery.len() + ident.non_enrolled.len(), held_out.len());
    assert!(ident.gallery.iter().all(|i| held_names.contains(&i.identity)));
}
