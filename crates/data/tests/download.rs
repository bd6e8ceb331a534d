//! The downloader against a local HTTP server on the loopback interface: good files, a 404 on
//! the first mirror, corrupted content, truncated transfers, a refused connection. Each case
//! ends with verified files in the directory or a clear error, and never a partial file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use data::{
    Candidate, DataError, DatasetKind, DownloadError, DownloadOptions, Fetch, MnistFiles,
    MnistSplits, Progress, PublishedFile, SplitOptions, content_digest, download_files,
    locate_or_download, write_synthetic_mnist,
};

/// How the server answers one path.
#[derive(Clone)]
enum Reply {
    /// 200 with these bytes.
    Body(Vec<u8>),
    /// 200 declaring the full length, then only the first `sent` bytes and a closed connection.
    CutShort { bytes: Vec<u8>, sent: usize },
    /// 200 without a length, the first `sent` bytes, then a closed connection.
    CutShortUndeclared { bytes: Vec<u8>, sent: usize },
}

/// A minimal HTTP/1.1 server on 127.0.0.1 answering GETs from a table (404 otherwise) and
/// counting requests per path.
struct LoopbackServer {
    base: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl LoopbackServer {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let (table, counts) = (routes.clone(), hits.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (table, counts) = (table.clone(), counts.clone());
                std::thread::spawn(move || serve(stream, &table, &counts));
            }
        });
        Self { base, routes, hits }
    }

    fn route(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    fn url(&self, prefix: &str) -> String {
        format!("{}/{prefix}/", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    fn total_hits(&self) -> usize {
        self.hits.lock().unwrap().values().sum()
    }
}

fn serve(
    stream: TcpStream,
    routes: &Mutex<HashMap<String, Reply>>,
    hits: &Mutex<HashMap<String, usize>>,
) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" => break,
            Ok(_) => {}
        }
    }
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let reply = routes.lock().unwrap().get(&path).cloned();
    let mut stream = stream;
    let _ = match reply {
        None => stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some(Reply::Body(bytes)) => {
            write_head(&mut stream, Some(bytes.len())).and_then(|_| stream.write_all(&bytes))
        }
        Some(Reply::CutShort { bytes, sent }) => write_head(&mut stream, Some(bytes.len()))
            .and_then(|_| stream.write_all(&bytes[..sent])),
        Some(Reply::CutShortUndeclared { bytes, sent }) => {
            write_head(&mut stream, None).and_then(|_| stream.write_all(&bytes[..sent]))
        }
    };
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn write_head(stream: &mut TcpStream, length: Option<usize>) -> std::io::Result<()> {
    let length = length
        .map(|n| format!("Content-Length: {n}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/gzip\r\n{length}Connection: close\r\n\r\n"
    )
}

/// A synthetic data set as it would be published: the `.gz` bytes of each file, and each
/// file's name and SHA-256 of its decompressed content.
struct Published {
    files: Vec<PublishedFile>,
    gz: HashMap<&'static str, Vec<u8>>,
}

fn publish_synthetic(seed: u64) -> Published {
    let source = tempfile::tempdir().unwrap();
    write_synthetic_mnist(source.path(), 40, 20, seed, true).unwrap();
    let originals = MnistFiles::in_dir(source.path()).unwrap();
    let mut files = Vec::new();
    let mut gz = HashMap::new();
    for path in [
        originals.train_images,
        originals.train_labels,
        originals.test_images,
        originals.test_labels,
    ] {
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let name: &'static str = file_name.trim_end_matches(".gz").to_string().leak();
        let digest = content_digest(&path, u64::MAX - 1).unwrap();
        files.push(PublishedFile {
            name,
            sha256: digest.sha256.leak(),
            size: digest.size,
        });
        gz.insert(name, std::fs::read(&path).unwrap());
    }
    Published { files, gz }
}

fn serve_all(server: &LoopbackServer, prefix: &str, published: &Published) {
    for file in &published.files {
        server.route(
            &format!("/{prefix}/{}.gz", file.name),
            Reply::Body(published.gz[file.name].clone()),
        );
    }
}

fn options(mirrors: Vec<String>) -> DownloadOptions {
    DownloadOptions {
        mirrors,
        attempts_per_mirror: 2,
        backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(10),
        progress: Progress::Quiet,
    }
}

/// Names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn assert_complete_and_readable(dir: &Path) {
    assert_eq!(
        listing(dir),
        [
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "train-images-idx3-ubyte.gz",
            "train-labels-idx1-ubyte.gz"
        ],
        "exactly the four files, no partial download"
    );
    let files = MnistFiles::in_dir(dir).unwrap();
    let splits = MnistSplits::load(&files, &SplitOptions::default()).unwrap();
    assert_eq!(splits.train.len(), 40);
}

fn assert_no_data_file(dir: &Path) {
    let names = listing(dir);
    assert!(
        names.iter().all(|name| !name.contains("idx")),
        "a failed download left files behind: {names:?}"
    );
}

#[test]
fn good_files_are_downloaded_verified_and_not_fetched_again() {
    let published = publish_synthetic(1);
    let server = LoopbackServer::start();
    serve_all(&server, "good", &published);
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().join("nested").join("mnist");

    download_files(&published.files, &dir, &options(vec![server.url("good")])).unwrap();
    assert_complete_and_readable(&dir);
    assert_eq!(server.total_hits(), 4);

    download_files(&published.files, &dir, &options(vec![server.url("good")])).unwrap();
    assert_eq!(
        server.total_hits(),
        4,
        "verified files are not downloaded again"
    );
}

#[test]
fn a_404_on_the_first_mirror_moves_on_to_the_next_without_retrying() {
    let published = publish_synthetic(2);
    let server = LoopbackServer::start();
    serve_all(&server, "second", &published);
    let dir = tempfile::tempdir().unwrap();

    let mirrors = vec![server.url("first"), server.url("second")];
    download_files(&published.files, dir.path(), &options(mirrors)).unwrap();
    assert_complete_and_readable(dir.path());
    let first = format!("/first/{}.gz", published.files[0].name);
    assert_eq!(server.hits(&first), 1, "a 404 is not retried");
}

#[test]
fn corrupted_content_is_rejected_and_the_next_mirror_used() {
    let published = publish_synthetic(3);
    let server = LoopbackServer::start();
    serve_all(&server, "good", &published);
    // A valid gzip of other content: only the checksum can tell.
    let other = publish_synthetic(4);
    serve_all(&server, "corrupt", &other);
    let dir = tempfile::tempdir().unwrap();

    let error = download_files(
        &published.files,
        dir.path(),
        &options(vec![server.url("corrupt")]),
    )
    .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("wrong content") && message.contains("SHA-256"),
        "{message}"
    );
    assert!(matches!(error, DownloadError::AllMirrorsFailed { .. }));
    assert_no_data_file(dir.path());

    let mirrors = vec![server.url("corrupt"), server.url("good")];
    download_files(&published.files, dir.path(), &options(mirrors)).unwrap();
    assert_complete_and_readable(dir.path());
}

#[test]
fn a_truncated_transfer_is_retried_and_never_kept() {
    let published = publish_synthetic(5);
    let server = LoopbackServer::start();
    for (prefix, undeclared) in [("declared", false), ("undeclared", true)] {
        for file in &published.files {
            let bytes = published.gz[file.name].clone();
            let sent = bytes.len() / 2;
            let reply = if undeclared {
                Reply::CutShortUndeclared { bytes, sent }
            } else {
                Reply::CutShort { bytes, sent }
            };
            server.route(&format!("/{prefix}/{}.gz", file.name), reply);
        }
    }
    let dir = tempfile::tempdir().unwrap();

    for prefix in ["declared", "undeclared"] {
        let error = download_files(
            &published.files,
            dir.path(),
            &options(vec![server.url(prefix)]),
        )
        .unwrap_err();
        let DownloadError::AllMirrorsFailed { attempts, .. } = &error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(attempts.len(), 2, "tried twice: {error}");
        assert_no_data_file(dir.path());
        let first = format!("/{prefix}/{}.gz", published.files[0].name);
        assert_eq!(server.hits(&first), 2);
    }
    assert!(
        listing(dir.path()).is_empty(),
        "no temporary file left: {:?}",
        listing(dir.path())
    );
}

#[test]
fn uncompressed_content_is_accepted_and_a_bad_local_copy_replaced() {
    let published = publish_synthetic(6);
    let server = LoopbackServer::start();
    // A mirror that serves the raw IDX content under the .gz name.
    let source = tempfile::tempdir().unwrap();
    for file in &published.files {
        let path = source.path().join(file.name);
        std::fs::write(&path, &published.gz[file.name]).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut data::idx::open_content(&path).unwrap(), &mut raw).unwrap();
        server.route(&format!("/raw/{}.gz", file.name), Reply::Body(raw));
    }
    let dir = tempfile::tempdir().unwrap();
    // A torn local copy under the .gz name, which the raw download must replace.
    let torn = dir.path().join(format!("{}.gz", published.files[0].name));
    std::fs::write(&torn, &published.gz[published.files[0].name][..10]).unwrap();

    download_files(
        &published.files,
        dir.path(),
        &options(vec![server.url("raw")]),
    )
    .unwrap();
    let names = listing(dir.path());
    assert_eq!(
        names,
        [
            "t10k-images-idx3-ubyte",
            "t10k-labels-idx1-ubyte",
            "train-images-idx3-ubyte",
            "train-labels-idx1-ubyte"
        ]
    );
}

#[test]
fn a_refused_connection_fails_cleanly_after_its_retries() {
    // Bind then drop: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let published = publish_synthetic(7);
    let dir = tempfile::tempdir().unwrap();
    let error = download_files(
        &published.files,
        dir.path(),
        &options(vec![format!("http://127.0.0.1:{port}/")]),
    )
    .unwrap_err();
    let DownloadError::AllMirrorsFailed { attempts, file } = &error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(*file, published.files[0].name);
    assert_eq!(attempts.len(), 2);
    assert!(error.to_string().contains(&format!("127.0.0.1:{port}")));
    assert_no_data_file(dir.path());
}

#[test]
fn offline_makes_no_request_and_says_where_to_put_the_files() {
    let server = LoopbackServer::start();
    let empty = tempfile::tempdir().unwrap();
    let candidates = [Candidate::new("test", empty.path())];

    let error = locate_or_download(DatasetKind::Mnist, &candidates, &Fetch::Offline).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no download was tried"), "{message}");
    assert!(message.contains("Put train-images-idx3-ubyte"), "{message}");
    assert_eq!(server.total_hits(), 0);

    // The same search allowed to download, from a mirror that has nothing: the message lists
    // the mirror tried and still says where to put the files.
    let fetch = Fetch::Download {
        dir: empty.path().join("cache"),
        options: options(vec![server.url("nothing")]),
    };
    let error = locate_or_download(DatasetKind::Mnist, &candidates, &fetch).unwrap_err();
    assert!(matches!(error, DataError::NotFound { .. }));
    let message = error.to_string();
    assert!(
        message.contains(&server.url("nothing")) && message.contains("HTTP status 404"),
        "{message}"
    );
    assert!(message.contains("Put train-images-idx3-ubyte"), "{message}");
    assert!(server.total_hits() > 0);
    assert_no_data_file(&empty.path().join("cache"));
}
