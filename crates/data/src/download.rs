//! Downloading a data set into a directory (the user cache): mirrors tried in order, retries
//! with back-off, progress on the terminal, and each file renamed into place only after the
//! SHA-256 of its decompressed content matches the published one, so that an interrupted,
//! truncated or corrupted transfer never leaves a file a later run would take for good.

use std::fs;
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressStyle};

use crate::published::PublishedFile;
use crate::verify::{Verification, verify_file};
use crate::{DatasetKind, MnistFiles};

/// Prefix and suffix of in-progress downloads: hidden, and never one of the names looked for.
const PART_PREFIX: &str = ".download-";
const PART_SUFFIX: &str = ".part";
/// In-progress files older than this are left over from a killed run and are removed.
const STALE_PART_AGE: Duration = Duration::from_secs(3600);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar when standard error is a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines on standard error.
    Lines,
    /// Nothing.
    Quiet,
}

/// Where and how to download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadOptions {
    /// Base URLs serving `<name>.gz`, tried in order.
    pub mirrors: Vec<String>,
    /// Tries per mirror for errors that may pass (network, 5xx, truncated transfer).
    pub attempts_per_mirror: u32,
    /// Wait before the second try of a mirror; doubled before each further try.
    pub backoff: Duration,
    /// Limit on connecting and on waiting for the response headers.
    pub timeout: Duration,
    /// How progress is shown.
    pub progress: Progress,
}

impl DownloadOptions {
    /// The mirrors of `kind` (or those of its `*_MIRRORS` environment variable, when set),
    /// three tries each, one second of back-off doubling, 30-second timeouts.
    pub fn for_dataset(kind: DatasetKind) -> Self {
        let from_env = std::env::var(kind.mirrors_env_var())
            .ok()
            .filter(|value| !value.trim().is_empty());
        let mirrors = match from_env {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|url| !url.is_empty())
                .map(String::from)
                .collect(),
            None => kind.mirrors().iter().map(|url| url.to_string()).collect(),
        };
        Self {
            mirrors,
            attempts_per_mirror: 3,
            backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(30),
            progress: Progress::Auto,
        }
    }
}

/// One failed try of one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedAttempt {
    /// The URL tried.
    pub url: String,
    /// Which try of this URL (from 1).
    pub attempt: u32,
    /// What went wrong.
    pub reason: String,
}

/// Why a download did not produce the files.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The mirror list is empty.
    #[error("no mirror to download from")]
    NoMirrors,
    /// The target directory cannot be created or written.
    #[error("cannot write to {}: {source}", .dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Every try of every mirror failed for one file.
    #[error("{}", failed_message(.file, .attempts))]
    AllMirrorsFailed {
        /// The file that could not be downloaded.
        file: &'static str,
        /// Every try, in order.
        attempts: Vec<FailedAttempt>,
    },
}

fn failed_message(file: &str, attempts: &[FailedAttempt]) -> String {
    let mut message = format!("every mirror failed for {file}:");
    for attempt in attempts {
        message.push_str(&format!(
            "\n    {} (try {}): {}",
            attempt.url, attempt.attempt, attempt.reason
        ));
    }
    message
}

/// Downloads the files of `kind` that `dir` does not already hold verified, and returns the
/// four files.
pub fn download(
    kind: DatasetKind,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<MnistFiles, DownloadError> {
    download_files(kind.published_files(), dir, options)?;
    MnistFiles::in_dir(dir).map_err(|problem| DownloadError::Directory {
        dir: dir.to_path_buf(),
        source: std::io::Error::other(format!(
            "after downloading, the files are not there: {problem}"
        )),
    })
}

/// Downloads each of `files` that `dir` does not already hold verified (raw or gzipped); on
/// return every one of them is in `dir`, verified.
pub fn download_files(
    files: &[PublishedFile],
    dir: &Path,
    options: &DownloadOptions,
) -> Result<(), DownloadError> {
    if options.mirrors.is_empty() {
        return Err(DownloadError::NoMirrors);
    }
    let directory_error = |source| DownloadError::Directory {
        dir: dir.to_path_buf(),
        source,
    };
    fs::create_dir_all(dir).map_err(directory_error)?;
    remove_stale_parts(dir);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(options.timeout))
        .timeout_recv_response(Some(options.timeout))
        .user_agent(concat!("mnist-lstm-data/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    for published in files {
        if has_verified_copy(dir, published) {
            continue;
        }
        fetch_from_mirrors(&agent, published, dir, options)?;
    }
    Ok(())
}

/// Whether `dir` holds `published` (raw or gzipped) with the right content.
fn has_verified_copy(dir: &Path, published: &PublishedFile) -> bool {
    [
        dir.join(published.name),
        dir.join(format!("{}.gz", published.name)),
    ]
    .iter()
    .filter(|path| path.is_file())
    .any(|path| verify_file(path, published).is_ok_and(|check| check.is_verified()))
}

/// Removes in-progress files that a killed run left behind; recent ones may belong to another
/// process downloading right now.
fn remove_stale_parts(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(PART_PREFIX) && name.ends_with(PART_SUFFIX)) {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| SystemTime::now().duration_since(modified).ok());
        if age.is_some_and(|age| age > STALE_PART_AGE) {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// What a failed try means for the next one.
enum TryError {
    /// The same URL may work later (network error, 5xx, truncated transfer).
    Transient(String),
    /// This mirror will not serve the file (404, wrong content): go to the next.
    Permanent(String),
    /// The directory cannot be written: no mirror can help.
    Local(std::io::Error),
}

fn fetch_from_mirrors(
    agent: &ureq::Agent,
    published: &PublishedFile,
    dir: &Path,
    options: &DownloadOptions,
) -> Result<PathBuf, DownloadError> {
    let mut attempts = Vec::new();
    for mirror in &options.mirrors {
        let url = format!("{}/{}.gz", mirror.trim_end_matches('/'), published.name);
        let mut wait = options.backoff;
        for attempt in 1..=options.attempts_per_mirror.max(1) {
            let reason = match fetch_once(agent, &url, published, dir, options.progress) {
                Ok(path) => return Ok(path),
                Err(TryError::Local(source)) => {
                    return Err(DownloadError::Directory {
                        dir: dir.to_path_buf(),
                        source,
                    });
                }
                Err(TryError::Permanent(reason)) => {
                    attempts.push(FailedAttempt {
                        url: url.clone(),
                        attempt,
                        reason,
                    });
                    break;
                }
                Err(TryError::Transient(reason)) => reason,
            };
            attempts.push(FailedAttempt {
                url: url.clone(),
                attempt,
                reason: reason.clone(),
            });
            if attempt < options.attempts_per_mirror {
                say(
                    options.progress,
                    &format!("{url}: {reason}; trying again in {wait:.1?}"),
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
            }
        }
    }
    Err(DownloadError::AllMirrorsFailed {
        file: published.name,
        attempts,
    })
}

/// One try of one URL: download to a temporary file in `dir`, verify, rename into place.
fn fetch_once(
    agent: &ureq::Agent,
    url: &str,
    published: &PublishedFile,
    dir: &Path,
    progress: Progress,
) -> Result<PathBuf, TryError> {
    say(progress, &format!("downloading {url}"));
    let response = agent.get(url).call().map_err(|error| match error {
        ureq::Error::StatusCode(code) if code == 429 || code >= 500 => {
            TryError::Transient(format!("HTTP status {code}"))
        }
        ureq::Error::StatusCode(code) => TryError::Permanent(format!("HTTP status {code}")),
        ureq::Error::HostNotFound => TryError::Permanent("host not found".into()),
        other => TryError::Transient(other.to_string()),
    })?;
    let body = response.into_body();
    let total = body.content_length();
    // A gzip of the content is never much larger than the content itself.
    let limit = published.size + published.size / 8 + (1 << 16);
    let mut reader = body.into_with_config().limit(limit).reader();

    let mut part = tempfile::Builder::new()
        .prefix(PART_PREFIX)
        .suffix(PART_SUFFIX)
        .tempfile_in(dir)
        .map_err(TryError::Local)?;
    let bar = progress_bar(progress, total, published.name);
    let mut buffer = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                bar.abandon();
                return Err(TryError::Transient(format!(
                    "transfer broke off after {received} bytes: {error}"
                )));
            }
        };
        part.write_all(&buffer[..n]).map_err(TryError::Local)?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(total) = total.filter(|&total| total != received) {
        return Err(TryError::Transient(format!(
            "transfer broke off: {received} of {total} bytes"
        )));
    }
    part.as_file().sync_all().map_err(TryError::Local)?;

    let check = verify_file(part.path(), published)
        .map_err(|error| TryError::Transient(format!("unreadable download: {error}")))?;
    if let Verification::Differs(found) = &check.outcome {
        return Err(TryError::Permanent(format!(
            "wrong content: SHA-256 {} of {} bytes of content differs from the published one",
            found.sha256, found.size
        )));
    }

    let gzipped = is_gzip_file(part.path());
    let (name, other) = if gzipped {
        (format!("{}.gz", published.name), published.name.to_string())
    } else {
        (published.name.to_string(), format!("{}.gz", published.name))
    };
    let target = dir.join(name);
    part.persist(&target)
        .map_err(|error| TryError::Local(error.error))?;
    // A stale copy under the other name would shadow or confuse the verified one.
    let _ = fs::remove_file(dir.join(other));
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
    say(
        progress,
        &format!(
            "{}: {received} bytes, SHA-256 verified, saved as {}",
            published.name,
            target.display()
        ),
    );
    Ok(target)
}

fn is_gzip_file(path: &Path) -> bool {
    let mut first = [0u8; 2];
    fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut first))
        .is_ok()
        && crate::idx::is_gzip(&first)
}

fn progress_bar(progress: Progress, total: Option<u64>, name: &str) -> ProgressBar {
    if progress != Progress::Auto || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    let style = ProgressStyle::with_template(
        "{msg:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
    )
    .map(|style| style.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(name.to_string());
    bar
}

fn say(progress: Progress, line: &str) {
    if progress != Progress::Quiet {
        eprintln!("{line}");
    }
}
