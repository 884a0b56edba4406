//! The protocols and mask settings of protocols.md.

use std::collections::HashMap;
use std::path::Path;

use crate::dataset::{ImageRef, Lfw, Pair};
use crate::{Error, Result};

/// An evaluation protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The 6,000 pairs of `pairs.txt`, official folds (only for models that never saw LFW).
    LfwView2,
    /// The 1,000 pairs of `pairsDevTest.txt`.
    LfwDevtest,
    /// Dense pairs among the `peopleDevTest.txt` people: every genuine pair (at most 50 per
    /// person) and 100,000 seeded impostor pairs, for TAR at FAR 1e-3 and 1e-4.
    LfwDevtestDense,
    /// Validation pairs of DevTrain people held out of training (model and threshold
    /// selection; never a test).
    LfwDevtrainHoldout,
    /// Closed- and open-set identification over `peopleDevTest.txt`.
    LfwDevtestIdent,
    /// `lfw-devtest-dense` built among the held-out DevTrain people (validation).
    LfwDevtrainHoldoutDense,
    /// `lfw-devtest-ident` built among the held-out DevTrain people (validation).
    LfwDevtrainHoldoutIdent,
    /// Identification on rmfrd-dev (LFW's layout): each person's first photo without a mask
    /// enrolled, their photos in real masks (numbered from 9001) searched.
    RmfrdDevIdent,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Protocol; 8] = [
        Protocol::LfwView2,
        Protocol::LfwDevtest,
        Protocol::LfwDevtestDense,
        Protocol::LfwDevtrainHoldout,
        Protocol::LfwDevtestIdent,
        Protocol::LfwDevtrainHoldoutDense,
        Protocol::LfwDevtrainHoldoutIdent,
        Protocol::RmfrdDevIdent,
    ];

    /// The protocol's name, as written on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::LfwView2 => "lfw-view2",
            Protocol::LfwDevtest => "lfw-devtest",
            Protocol::LfwDevtestDense => "lfw-devtest-dense",
            Protocol::LfwDevtrainHoldout => "lfw-devtrain-holdout",
            Protocol::LfwDevtestIdent => "lfw-devtest-ident",
            Protocol::LfwDevtrainHoldoutDense => "lfw-devtrain-holdout-dense",
            Protocol::LfwDevtrainHoldoutIdent => "lfw-devtrain-holdout-ident",
            Protocol::RmfrdDevIdent => "rmfrd-dev-ident",
        }
    }

    /// Whether it is a pair (verification) protocol rather than an identification one.
    pub fn has_pairs(self) -> bool {
        !matches!(self, Protocol::LfwDevtestIdent | Protocol::LfwDevtrainHoldoutIdent | Protocol::RmfrdDevIdent)
    }

    /// Its verification pairs (`None` for the identification protocol); `seed` picks the
    /// dense protocol's pairs (the mask seed, so one seed names the whole run).
    pub fn pairs(self, lfw: &Lfw, seed: u64) -> Result<Option<Vec<Pair>>> {
        match self {
            Protocol::LfwView2 => lfw.view2_pairs().map(Some),
            Protocol::LfwDevtest => lfw.devtest_pairs().map(Some),
            Protocol::LfwDevtestDense => lfw.devtest_dense_pairs(seed).map(Some),
            Protocol::LfwDevtrainHoldout => lfw.devtrain_holdout_pairs(seed).map(Some),
            Protocol::LfwDevtrainHoldoutDense => lfw.devtrain_holdout_dense_pairs(seed, None).map(Some),
            Protocol::LfwDevtestIdent | Protocol::LfwDevtrainHoldoutIdent | Protocol::RmfrdDevIdent => Ok(None),
        }
    }

    /// Its identification sets (`None` for the verification protocols).
    pub fn ident_set(self, lfw: &Lfw, seed: u64) -> Result<Option<IdentSet>> {
        match self {
            Protocol::LfwDevtestIdent => IdentSet::of_people(lfw.people("peopleDevTest.txt")?, "peopleDevTest.txt"),
            Protocol::LfwDevtrainHoldoutIdent => {
                IdentSet::of_people(lfw.devtrain_holdout_people(seed)?, "the held-out DevTrain people")
            }
            Protocol::RmfrdDevIdent => IdentSet::real_masks(lfw),
            _ => return Ok(None),
        }
        .map(Some)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let allowed: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
            format!("unknown protocol `{s}` (allowed: {})", allowed.join(", "))
        })
    }
}

/// Which images of a protocol wear a synthetic mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskSetting {
    /// No masks.
    Clean,
    /// The probe (second image of a pair; identification probes) is masked.
    MaskProbe,
    /// Both images are masked.
    MaskBoth,
}

impl MaskSetting {
    /// The setting's name.
    pub fn name(self) -> &'static str {
        match self {
            MaskSetting::Clean => "clean",
            MaskSetting::MaskProbe => "mask-probe",
            MaskSetting::MaskBoth => "mask-both",
        }
    }
}

impl std::str::FromStr for MaskSetting {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [MaskSetting::Clean, MaskSetting::MaskProbe, MaskSetting::MaskBoth]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mask setting `{s}` (allowed: clean, mask-probe, mask-both)"))
    }
}

/// Where a synthetic mask is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MaskStage {
    /// On the aligned crop, from the clean face's landmarks (protocols.md): the masked face is
    /// perfectly aligned and the detector never sees the mask.
    #[default]
    Crop,
    /// On the full photo at its detected landmarks; the masked photo is then detected and
    /// aligned like any probe, as a real masked face is.
    Photo,
}

impl MaskStage {
    /// The stage's name.
    pub fn name(self) -> &'static str {
        match self {
            MaskStage::Crop => "crop",
            MaskStage::Photo => "photo",
        }
    }
}

impl std::str::FromStr for MaskStage {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        [MaskStage::Crop, MaskStage::Photo]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| format!("unknown mask stage `{s}` (allowed: crop, photo)"))
    }
}

/// Gallery and probes of an identification protocol (`lfw-devtest-ident`).
#[derive(Debug, Clone, PartialEq)]
pub struct IdentSet {
    /// First image of each person with at least two images.
    pub gallery: Vec<ImageRef>,
    /// Every other image of those people.
    pub probes: Vec<ImageRef>,
    /// Gallery index of each probe's identity.
    pub truth: Vec<usize>,
    /// The single image of each person with only one (open-set probes).
    pub non_enrolled: Vec<ImageRef>,
}

/// Photos of people in real masks are numbered from here in rmfrd-dev.
const FIRST_MASKED_PHOTO: u32 = 9001;

impl IdentSet {
    /// rmfrd-dev's sets: the first photo without a mask of each person enrolled, their photos
    /// in real masks searched. No one is left out, so the non-mated searches are the probes
    /// searched without their own person.
    pub fn real_masks(lfw: &Lfw) -> Result<Self> {
        let images = crate::folder_dataset(&lfw.root().join("images_deepfunneled"))?;
        let number = |i: &ImageRef| -> Option<u32> {
            let stem = i.path.file_stem()?.to_str()?;
            stem.rsplit('_').next()?.parse().ok()
        };
        let mut set = IdentSet { gallery: vec![], probes: vec![], truth: vec![], non_enrolled: vec![] };
        let mut index = HashMap::new();
        // Sorted by person then number, so each person's first photo comes first.
        for image in &images {
            let Some(n) = number(image) else { continue };
            let as_photo =
                ImageRef { identity: image.identity.clone(), path: Path::new("images_deepfunneled").join(&image.path) };
            if n < FIRST_MASKED_PHOTO {
                index.entry(image.identity.clone()).or_insert_with(|| {
                    set.gallery.push(as_photo);
                    set.gallery.len() - 1
                });
            } else if let Some(&g) = index.get(&image.identity) {
                set.probes.push(as_photo);
                set.truth.push(g);
            }
        }
        if set.probes.is_empty() {
            return Err(Error::Dataset {
                path: lfw.root().display().to_string(),
                reason: format!("no photos numbered from {FIRST_MASKED_PHOTO} (real masks) of people with a photo without one: not rmfrd-dev"),
            });
        }
        Ok(set)
    }

    /// The sets among `people` (name, photo count; `what` names them in errors).
    pub fn of_people(people: Vec<(String, usize)>, what: &str) -> Result<Self> {
        if people.is_empty() {
            return Err(Error::Dataset { path: what.into(), reason: "lists nobody".into() });
        }
        let mut set = IdentSet { gallery: vec![], probes: vec![], truth: vec![], non_enrolled: vec![] };
        let mut index = HashMap::new();
        for (name, count) in people {
            if count >= 2 {
                let g = *index.entry(name.clone()).or_insert_with(|| {
                    set.gallery.push(Lfw::image(&name, 1));
                    set.gallery.len() - 1
                });
                for n in 2..=count {
                    set.probes.push(Lfw::image(&name, n));
                    set.truth.push(g);
                }
            } else if count == 1 {
                set.non_enrolled.push(Lfw::image(&name, 1));
            }
        }
        Ok(set)
    }
}
