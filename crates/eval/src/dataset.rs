//! LFW (images folder and official lists, as its README.txt describes them) and a generic
//! identity-per-folder layout for users' own photos.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// One photo of a data set: its identity and its path relative to the data set root.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    /// Person's name (the folder name).
    pub identity: String,
    /// Path relative to the data set root.
    pub path: PathBuf,
}

/// A verification pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// First image (the reference).
    pub a: ImageRef,
    /// Second image (the probe; masked under `mask-probe`).
    pub b: ImageRef,
    /// Same person?
    pub genuine: bool,
    /// Cross-validation fold, 0..10.
    pub fold: usize,
}

/// Genuine pairs kept per person by `lfw-devtest-dense`.
pub const DENSE_GENUINE_PER_PERSON: usize = 50;
/// Impostor pairs of `lfw-devtest-dense`.
pub const DENSE_IMPOSTOR_PAIRS: usize = 100_000;

pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded hash of a name (the same function as `maskid_mask::image_seed`).
fn name_hash(name: &str, seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    splitmix64(&mut (h ^ seed.rotate_left(32)))
}

/// Labeled Faces in the Wild, deep-funneled.
#[derive(Debug, Clone)]
pub struct Lfw {
    root: PathBuf,
}

const IMAGES_DIR: &str = "images_deepfunneled";

impl Lfw {
    /// Opens the folder holding `images_deepfunneled/` and the list files.
    pub fn open(root: &Path) -> Result<Self> {
        if !root.join(IMAGES_DIR).is_dir() {
            return Err(Error::Dataset {
                path: root.display().to_string(),
                reason: format!("not an LFW folder: no {IMAGES_DIR}/ inside (see protocols.md)"),
            });
        }
        Ok(Self { root: root.to_path_buf() })
    }

    /// The data set root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The `n`th (1-based) photo of `name`.
    pub fn image(name: &str, n: usize) -> ImageRef {
        ImageRef { identity: name.to_string(), path: PathBuf::from(format!("{IMAGES_DIR}/{name}/{name}_{n:04}.jpg")) }
    }

    fn read_list(&self, file: &str) -> Result<(String, String)> {
        let path = self.root.join(file);
        let text =
            std::fs::read_to_string(&path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
        Ok((path.display().to_string(), text))
    }

    /// The 6,000 pairs of `pairs.txt` in their official 10 folds (view 2).
    pub fn view2_pairs(&self) -> Result<Vec<Pair>> {
        self.view2_pairs_in("pairs.txt")
    }

    /// The pairs of another list in view 2's format and folds, such as rmfrd-dev's
    /// `pairs_clean.txt` (`file` relative to the root).
    pub fn view2_pairs_in(&self, file: &str) -> Result<Vec<Pair>> {
        let (file, text) = self.read_list(file)?;
        parse_pairs(&file, &text, |_, set| set)
    }

    /// The 2,200 pairs of `pairsDevTrain.txt` (view 1, for choosing settings); fold = pair
    /// index modulo 10.
    pub fn devtrain_pairs(&self) -> Result<Vec<Pair>> {
        let (file, text) = self.read_list("pairsDevTrain.txt")?;
        parse_pairs(&file, &text, |index, _| index % 10)
    }

    /// The 1,000 pairs of `pairsDevTest.txt`; fold = pair index modulo 10 (protocols.md).
    pub fn devtest_pairs(&self) -> Result<Vec<Pair>> {
        let (file, text) = self.read_list("pairsDevTest.txt")?;
        parse_pairs(&file, &text, |index, _| index % 10)
    }

    /// `lfw-devtest-dense` (docs/protocols.md): among the people of `peopleDevTest.txt`, every genuine
    /// pair of two photos of one person (at most 50 per person, a seeded choice for people with
    /// more), then 100,000 seeded impostor pairs of photos of two different people; fold =
    /// pair index modulo 10. The same seed gives the same pairs.
    pub fn devtest_dense_pairs(&self, seed: u64) -> Result<Vec<Pair>> {
        Ok(dense_pairs(&self.people("peopleDevTest.txt")?, seed))
    }

    /// `lfw-devtrain-holdout-dense` (README): the dense pairs of `lfw-devtest-dense`, built
    /// the same way among the held-out DevTrain people (validation, never a test). With
    /// `max_photos`, among the first of those people (list order) whose photos add up to at
    /// most that many (at least two people), for short runs.
    pub fn devtrain_holdout_dense_pairs(&self, seed: u64, max_photos: Option<usize>) -> Result<Vec<Pair>> {
        let mut people = self.devtrain_holdout_people(seed)?;
        if let Some(cap) = max_photos {
            let mut photos = 0;
            let keep = people
                .iter()
                .take_while(|(_, count)| {
                    photos += count;
                    photos <= cap
                })
                .count();
            people.truncate(keep.max(2));
        }
        Ok(dense_pairs(&people, seed))
    }

    /// The people of `peopleDevTrain.txt` held out of training for model selection (with
    /// their photo counts, in list order): one eighth, chosen by a seeded hash of the name
    /// (FNV-1a mixed with `seed` by SplitMix64, as mask seeds are). About 478 people.
    pub fn devtrain_holdout_people(&self, seed: u64) -> Result<Vec<(String, usize)>> {
        Ok(self
            .people("peopleDevTrain.txt")?
            .into_iter()
            .filter(|(name, _)| name_hash(name, seed).is_multiple_of(8))
            .collect())
    }

    /// `lfw-devtrain-holdout` (README), the validation pairs: among the held-out people,
    /// genuine pairs of photos 1-2, 3-4 and 5-6 of a person, alternating with impostor pairs
    /// of the first photos of two people (person i with person i + n/2); fold = (pair index /
    /// 2) modulo 10, so that every fold holds both kinds.
    pub fn devtrain_holdout_pairs(&self, seed: u64) -> Result<Vec<Pair>> {
        let people = self.devtrain_holdout_people(seed)?;
        let genuine = people.iter().flat_map(|(name, count)| {
            [1, 3, 5].into_iter().filter(|k| k < count).map(|k| (Self::image(name, k), Self::image(name, k + 1), true))
        });
        let step = (people.len() / 2).max(1);
        let impostor = (0..people.len())
            .map(|i| (&people[i].0, &people[(i + step) % people.len()].0))
            .filter(|(a, b)| a != b)
            .map(|(a, b)| (Self::image(a, 1), Self::image(b, 1), false));
        // Genuine and impostor pairs alternate; each couple shares a fold, so every fold holds
        // both kinds.
        Ok(genuine
            .zip(impostor.cycle())
            .flat_map(|(g, i)| [g, i])
            .enumerate()
            .map(|(index, (a, b, genuine))| Pair { a, b, genuine, fold: (index / 2) % 10 })
            .collect())
    }

    /// People of a people list (`peopleDevTrain.txt`, `peopleDevTest.txt`, `people.txt`) with
    /// their image counts, in file order.
    pub fn people(&self, file: &str) -> Result<Vec<(String, usize)>> {
        let (shown, text) = self.read_list(file)?;
        parse_people(&shown, &text)
    }
}

/// Dense pairs among `people` (`name`, photo count): every genuine pair of two photos of one
/// person (at most 50 per person, a seeded choice for people with more), then 100,000 seeded
/// impostor pairs of photos of two different people; fold = pair index modulo 10.
fn dense_pairs(people: &[(String, usize)], seed: u64) -> Vec<Pair> {
    let mut state = seed ^ 0xd1b5_4a32_d192_ed03;
    let mut next = move |below: usize| (splitmix64(&mut state) % below as u64) as usize;
    let mut pairs = Vec::new();
    for (name, count) in people {
        let mut own: Vec<(usize, usize)> = (1..=*count).flat_map(|i| (i + 1..=*count).map(move |j| (i, j))).collect();
        // A partial Fisher-Yates keeps a seeded 50 of a person's pairs.
        let keep = own.len().min(DENSE_GENUINE_PER_PERSON);
        for k in 0..keep {
            let pick = k + next(own.len() - k);
            own.swap(k, pick);
        }
        own.truncate(keep);
        own.sort_unstable();
        pairs.extend(own.into_iter().map(|(i, j)| (Lfw::image(name, i), Lfw::image(name, j), true)));
    }
    let photos: Vec<(usize, usize)> =
        people.iter().enumerate().flat_map(|(p, (_, count))| (1..=*count).map(move |n| (p, n))).collect();
    let mut impostors = 0;
    while impostors < DENSE_IMPOSTOR_PAIRS && people.len() > 1 {
        let (a, b) = (photos[next(photos.len())], photos[next(photos.len())]);
        if a.0 != b.0 {
            pairs.push((Lfw::image(&people[a.0].0, a.1), Lfw::image(&people[b.0].0, b.1), false));
            impostors += 1;
        }
    }
    pairs.into_iter().enumerate().map(|(index, (a, b, genuine))| Pair { a, b, genuine, fold: index % 10 }).collect()
}

fn list_error(file: &str, line: usize, reason: impl Into<String>) -> Error {
    Error::List { file: file.to_string(), line, reason: reason.into() }
}

fn number(file: &str, line: usize, field: &str) -> Result<usize> {
    field.parse().map_err(|_| list_error(file, line, format!("`{field}` is not a whole number")))
}

/// Pairs files: a header `N` (one set) or `S N` (S sets), then per set N matched lines
/// `name i j` and N mismatched lines `name1 i name2 j`. `fold_of(pair index, set)` gives folds.
fn parse_pairs(file: &str, text: &str, fold_of: impl Fn(usize, usize) -> usize) -> Result<Vec<Pair>> {
    let mut lines = text.lines().enumerate().map(|(i, l)| (i + 1, l)).filter(|(_, l)| !l.trim().is_empty());
    let (header_no, header) = lines.next().ok_or_else(|| list_error(file, 1, "empty file"))?;
    let head: Vec<&str> = header.split_whitespace().collect();
    let (sets, per_set) = match head.as_slice() {
        [n] => (1, number(file, header_no, n)?),
        [s, n] => (number(file, header_no, s)?, number(file, header_no, n)?),
        _ => return Err(list_error(file, header_no, "header must be `N` or `SETS N`")),
    };
    let mut pairs = Vec::with_capacity(sets * per_set * 2);
    for set in 0..sets {
        for genuine in [true, false] {
            for _ in 0..per_set {
                let (no, line) = lines.next().ok_or_else(|| {
                    list_error(
                        file,
                        header_no,
                        format!("file ends early: header promises {sets} x 2 x {per_set} pairs"),
                    )
                })?;
                let f: Vec<&str> = line.split_whitespace().collect();
                let (a, b) = match (genuine, f.as_slice()) {
                    (true, [name, i, j]) => {
                        (Lfw::image(name, number(file, no, i)?), Lfw::image(name, number(file, no, j)?))
                    }
                    (false, [n1, i, n2, j]) => {
                        (Lfw::image(n1, number(file, no, i)?), Lfw::image(n2, number(file, no, j)?))
                    }
                    (true, _) => return Err(list_error(file, no, "expected a matched pair `name i j`")),
                    (false, _) => return Err(list_error(file, no, "expected a mismatched pair `name1 i name2 j`")),
                };
                let index = pairs.len();
                pairs.push(Pair { a, b, genuine, fold: fold_of(index, set) });
            }
        }
    }
    if let Some((no, _)) = lines.next() {
        return Err(list_error(file, no, "more pairs than the header promises"));
    }
    Ok(pairs)
}

/// People files: `name count` lines; lines holding one number are headers (counts, folds).
fn parse_people(file: &str, text: &str) -> Result<Vec<(String, usize)>> {
    let mut people = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [] => {}
            [n] => {
                number(file, i + 1, n)?;
            }
            [name, count] => people.push((name.to_string(), number(file, i + 1, count)?)),
            _ => return Err(list_error(file, i + 1, "expected `name count`")),
        }
    }
    Ok(people)
}

const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff"];

/// True for a file whose extension names a photo format maskid reads.
pub fn is_image_file(path: &Path) -> bool {
    let known = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    known && path.is_file()
}

/// Every photo of a data set, relative to its root. LFW's photos sit one level down.
pub fn dataset_photos(root: &Path) -> Result<Vec<PathBuf>> {
    let lfw_images = root.join("images_deepfunneled");
    Ok(if lfw_images.is_dir() {
        folder_dataset(&lfw_images)?.into_iter().map(|i| Path::new("images_deepfunneled").join(i.path)).collect()
    } else {
        folder_dataset(root)?.into_iter().map(|i| i.path).collect()
    })
}

/// The photos named by `inputs`: files as they are, folders walked (sorted, image files by
/// extension), each with its stem relative to the folder it was found under (where a command
/// writes its output for it).
pub fn image_files(inputs: &[PathBuf]) -> Result<Vec<(PathBuf, PathBuf)>> {
    fn walk(dir: &Path, base: &Path, out: &mut Vec<(PathBuf, PathBuf)>) -> Result<()> {
        let io = |source| Error::Io { path: dir.display().to_string(), source };
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(io)?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, base, out)?;
            } else if is_image_file(&path) {
                let rel = path.strip_prefix(base).expect("BUG: walked under base").with_extension("");
                out.push((path, rel));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            walk(input, input, &mut out)?;
        } else {
            let stem = input.file_stem().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("face"));
            out.push((input.clone(), stem));
        }
    }
    Ok(out)
}

/// A folder of `<identity>/<photo>` files (any depth below the identity folder is ignored),
/// sorted by identity then path. Files that are not images by extension are skipped.
pub fn folder_dataset(root: &Path) -> Result<Vec<ImageRef>> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| Error::Io { path, source }
    };
    let mut images = Vec::new();
    for person in std::fs::read_dir(root).map_err(io(root))? {
        let person = person.map_err(io(root))?.path();
        if !person.is_dir() {
            continue;
        }
        let identity = person.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        for photo in std::fs::read_dir(&person).map_err(io(&person))? {
            let photo = photo.map_err(io(&person))?.path();
            if is_image_file(&photo) {
                let path = photo.strip_prefix(root).expect("BUG: listed under root").to_path_buf();
                images.push(ImageRef { identity: identity.clone(), path });
            }
        }
    }
    if images.is_empty() {
        return Err(Error::Dataset {
            path: root.display().to_string(),
            reason: "no images found; expected one folder per person holding .jpg/.png photos".into(),
        });
    }
    images.sort();
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_with_sets_and_folds() {
        let text = "2 1\nA 1 2\nB 1 C 3\nD 2 4\nE 1 F 1\n";
        let pairs = parse_pairs("p.txt", text, |_, set| set).unwrap();
        assert_eq!(pairs.len(), 4);
        assert!(pairs[0].genuine && !pairs[1].genuine);
        assert_eq!(pairs[1].b.path, PathBuf::from("images_deepfunneled/C/C_0003.jpg"));
        assert_eq!(pairs.iter().map(|p| p.fold).collect::<Vec<_>>(), vec![0, 0, 1, 1]);
        let devtest = parse_pairs("d.txt", "2\nA 1 2\nA 2 3\nB 1 C 1\nB 2 C 2\n", |i, _| i % 10).unwrap();
        assert_eq!(devtest.iter().map(|p| p.fold).collect::<Vec<_>>(), vec![0, 1, 2, 3]);
    }

    #[test]
    fn dense_pairs_cap_genuine_pairs_per_person_and_repeat_by_seed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(IMAGES_DIR)).unwrap();
        std::fs::write(dir.path().join("peopleDevTest.txt"), "3\nA 2\nB 12\nC 1\n").unwrap();
        let lfw = Lfw::open(dir.path()).unwrap();
        let pairs = lfw.devtest_dense_pairs(0).unwrap();
        let genuine: Vec<&Pair> = pairs.iter().filter(|p| p.genuine).collect();
        // A: its one pair; B: 50 of its 66; C: none.
        assert_eq!(genuine.len(), 1 + DENSE_GENUINE_PER_PERSON);
        assert_eq!(pairs.len() - genuine.len(), DENSE_IMPOSTOR_PAIRS);
        let distinct: std::collections::BTreeSet<_> = genuine.iter().map(|p| (&p.a.path, &p.b.path)).collect();
        assert_eq!(distinct.len(), genuine.len(), "no genuine pair twice");
        assert!(genuine.iter().all(|p| p.a.identity == p.b.identity && p.a.path != p.b.path));
        assert!(pairs.iter().filter(|p| !p.genuine).all(|p| p.a.identity != p.b.identity));
        assert!(pairs.iter().enumerate().all(|(i, p)| p.fold == i % 10));
        assert_eq!(pairs, lfw.devtest_dense_pairs(0).unwrap(), "the same seed gives the same pairs");
        assert_ne!(pairs, lfw.devtest_dense_pairs(1).unwrap());
    }

    #[test]
    fn malformed_pairs_name_file_and_line() {
        let err = parse_pairs("p.txt", "1\nA 1 x\nB 1 C 1\n", |_, s| s).unwrap_err().to_string();
        assert_eq!(err, "p.txt:2: `x` is not a whole number");
        let err = parse_pairs("p.txt", "1\nA 1 2\nB 1 C\n", |_, s| s).unwrap_err().to_string();
        assert!(err.starts_with("p.txt:3: expected a mismatched pair"), "{err}");
        let err = parse_pairs("p.txt", "2\nA 1 2\n", |_, s| s).unwrap_err().to_string();
        assert!(err.contains("file ends early"), "{err}");
        assert!(parse_pairs("p.txt", "", |_, s| s).is_err());
    }

    #[test]
    fn people_lists_flat_and_folded() {
        assert_eq!(parse_people("p", "2\nA 1\nB 3\n").unwrap(), vec![("A".into(), 1), ("B".into(), 3)]);
        assert_eq!(parse_people("p", "2\n1\nA 1\n1\nB 2\n").unwrap().len(), 2);
        assert_eq!(parse_people("p", "1\nA one\n").unwrap_err().to_string(), "p:2: `one` is not a whole number");
    }

    #[test]
    fn folder_dataset_reads_identity_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (who, file) in [("ann", "1.jpg"), ("ann", "2.PNG"), ("bob", "x.jpeg"), ("bob", "notes.txt")] {
            std::fs::create_dir_all(dir.path().join(who)).unwrap();
            std::fs::write(dir.path().join(who).join(file), b"").unwrap();
        }
        std::fs::write(dir.path().join("stray.jpg"), b"").unwrap();
        let images = folder_dataset(dir.path()).unwrap();
        assert_eq!(images.len(), 3);
        assert_eq!(images[2], ImageRef { identity: "bob".into(), path: PathBuf::from("bob/x.jpeg") });
        assert!(folder_dataset(&dir.path().join("ann/..").join("bob")).is_err(), "no identity folders");
    }
}
