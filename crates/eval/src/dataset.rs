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
        let (file, text) = self.read_list("pairs.txt")?;
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

    /// People of a people list (`peopleDevTrain.txt`, `peopleDevTest.txt`, `people.txt`) with
    /// their image counts, in file order.
    pub fn people(&self, file: &str) -> Result<Vec<(String, usize)>> {
        let (shown, text) = self.read_list(file)?;
        parse_people(&shown, &text)
    }
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
