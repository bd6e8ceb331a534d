//! `mnist-lstm serve` as a client sees it, on an ephemeral loopback port with a smoke-trained
//! model: good images get eval's answers (one at a time, as JSON pixels and in batches, also
//! many clients at once, batched); every kind of bad input gets its 4xx and a JSON error, never
//! a 5xx, and the server answers afterwards; SIGTERM lets a request in flight finish and exits 0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use image::{GrayImage, ImageFormat};
use serde_json::Value;
use training::{EvaluationReport, RunOptions, evaluate_run};

mod common;
mod hostile;
use common::{cli, command, text};

/// A server process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// What it printed on stdout after its "listening on" line.
    stdout: std::sync::mpsc::Receiver<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on port 0 and waits for its "listening on" line.
fn start_server(run_dir: &Path, extra: &[&str]) -> Server {
    let mut child = command(run_dir)
        .args(["serve", "--model", &run_dir.display().to_string()])
        .args(["--addr", "127.0.0.1:0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve printed its address before exiting")
            .unwrap();
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    // Keep reading stdout so that the server never blocks on a full pipe.
    let (sender, stdout) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = sender.send(line);
        }
    });
    Server {
        child,
        addr,
        stdout,
    }
}

/// A whole HTTP/1.1 exchange on a fresh connection: status and body.
/// Sends a PNG upload's head (with `extra_headers`) and its first 10 bytes on a new
/// connection, then SIGTERM to the server: a request stuck half way when shutdown starts.
fn half_upload_then_sigterm(server: &Server, body: &[u8], extra_headers: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n\
         Content-Length: {}\r\n{extra_headers}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..10]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    stream
}

fn request(addr: SocketAddr, method: &str, path: &str, kind: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A server that answers early (413) may close before the whole body is written.
    let _ = stream.write_all(body);
    read_response(&mut stream)
}

fn read_response(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", text(&raw)));
    let head = text(&raw[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, raw[split + 4..].to_vec())
}

fn json(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", text(body)))
}

fn png(pixels: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::new();
    GrayImage::from_raw(28, 28, pixels.to_vec())
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
        .unwrap();
    bytes
}

/// A PNG of a few dozen bytes whose header claims `side` x `side` pixels, every CRC valid.
fn huge_png(side: u32) -> Vec<u8> {
    let crc = |bytes: &[u8]| {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    };
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(side.to_be_bytes());
    ihdr.extend(side.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(13u32.to_be_bytes());
    file.extend(&ihdr);
    file.extend(crc(&ihdr).to_be_bytes());
    // An IDAT chunk (zlib of nothing): decoders want one before they report the size.
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01";
    file.extend(8u32.to_be_bytes());
    file.extend(idat);
    file.extend(crc(idat).to_be_bytes());
    file.extend(0u32.to_be_bytes());
    file.extend(b"IEND");
    file.extend(crc(b"IEND").to_be_bytes());
    file
}

/// (what, path, content type, body, expected status, words the error must contain).
type BadInput = (
    &'static str,
    &'static str,
    &'static str,
    Vec<u8>,
    u16,
    &'static str,
);

fn pixels_json(pixels: &[u8]) -> Vec<u8> {
    serde_json::json!({ "pixels": pixels })
        .to_string()
        .into_bytes()
}

/// Trains the smoke model on synthetic digits, with `extra` arguments; returns the work
/// directory, the run directory, the test images and eval's report on them.
fn trained_run(
    extra: &[&str],
) -> (
    tempfile::TempDir,
    std::path::PathBuf,
    Vec<Vec<u8>>,
    EvaluationReport,
) {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 5, false).unwrap();
    let run_dir = work.path().join("run");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/smoke.toml");
    let mut args = vec![
        "train".to_string(),
        config.display().to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--artifacts".to_string(),
        run_dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = cli(&args, work.path());
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let report = evaluate_run(
        &run_dir,
        &RunOptions {
            data_dir: Some(data_dir.clone()),
            offline: true,
            ..RunOptions::default()
        },
    )
    .unwrap();
    let images = data::idx::read_images(&data_dir.join("t10k-images-idx3-ubyte"), 28, 28).unwrap();
    let digits = images.pixels.chunks(784).map(<[u8]>::to_vec).collect();
    (work, run_dir, digits, report)
}

#[test]
fn served_answers_match_eval_and_bad_input_never_costs_the_server() {
    let (_work, run_dir, digits, report) = trained_run(&[]);
    let server = start_server(&run_dir, &["--timeout-ms", "1000"]);
    let addr = server.addr;
    good_images_get_evals_answers(addr, &digits, &report);
    a_batch_gets_the_same_answers(addr, &digits, &report);
    steps_come_on_request(addr, &digits, 28);
    bad_inputs_get_their_4xx(addr, &digits);
    slow_clients_time_out(addr);
    the_server_still_answers_and_counted_it(addr, &digits, &report);
    the_model_document_names_no_local_path(addr, &run_dir, &report);
}

/// A run that reads 784 pixels in a permuted order: the server reads a posted digit as training
/// did, so its answers are eval's.
#[test]
fn a_permuted_run_serves_evals_answers() {
    let permuted = [
        "--set",
        "data.sequence=permuted",
        "--set",
        "model.input_size=1",
    ];
    let (_work, run_dir, digits, report) = trained_run(&permuted);
    let server = start_server(&run_dir, &[]);
    good_images_get_evals_answers(server.addr, &digits, &report);
    a_batch_gets_the_same_answers(server.addr, &digits, &report);
    steps_come_on_request(server.addr, &digits, 784);
}

/// `?steps=true` adds the probabilities after each step, the last row the answer's own;
/// anything else in the query is refused with what is allowed.
fn steps_come_on_request(addr: SocketAddr, digits: &[Vec<u8>], steps: usize) {
    let body = pixels_json(&digits[0]);
    let (status, plain) = request(addr, "POST", "/v1/predict", "application/json", &body);
    assert_eq!(status, 200, "{}", text(&plain));
    assert!(json(&plain).get("steps").is_none(), "steps only on request");
    let (status, answer) = request(
        addr,
        "POST",
        "/v1/predict?steps=true",
        "application/json",
        &body,
    );
    assert_eq!(status, 200, "{}", text(&answer));
    let answer = json(&answer);
    let rows = answer["steps"].as_array().expect("steps");
    assert_eq!(rows.len(), steps);
    let last: Vec<f64> = rows[steps - 1]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let probabilities: Vec<f64> = json(&plain)["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    for (a, b) in last.iter().zip(&probabilities) {
        assert!(
            (a - b).abs() < 1e-5,
            "last step {last:?}, answer {probabilities:?}"
        );
    }
    for query in ["steps=maybe", "colour=blue"] {
        let (status, body) = request(
            addr,
            "POST",
            &format!("/v1/predict?{query}"),
            "application/json",
            &body,
        );
        assert_eq!(status, 400, "{query}: {}", text(&body));
        assert!(text(&body).contains("steps=true"), "{}", text(&body));
    }
}

/// Good images, as PNG and as JSON pixels, get eval's classes.
fn good_images_get_evals_answers(addr: SocketAddr, digits: &[Vec<u8>], report: &EvaluationReport) {
    for (index, digit) in digits.iter().enumerate().take(24) {
        let expected = u64::from(report.predictions[index]);
        for (kind, body) in [
            ("image/png", png(digit)),
            ("application/json", pixels_json(digit)),
        ] {
            let (status, body) = request(addr, "POST", "/v1/predict", kind, &body);
            assert_eq!(status, 200, "{}", text(&body));
            let answer = json(&body);
            assert_eq!(
                answer["class"].as_u64(),
                Some(expected),
                "image {index} as {kind}"
            );
            let probabilities = answer["probabilities"].as_array().unwrap();
            assert_eq!(probabilities.len(), 10);
            let sum: f64 = probabilities.iter().map(|p| p.as_f64().unwrap()).sum();
            assert!((sum - 1.0).abs() < 1e-4, "{sum}");
            assert_eq!(answer["top"].as_array().unwrap().len(), 3);
        }
    }
}

/// A batch request: the same answers, in order.
fn a_batch_gets_the_same_answers(addr: SocketAddr, digits: &[Vec<u8>], report: &EvaluationReport) {
    let batch: Vec<Value> = digits[..50]
        .iter()
        .enumerate()
        .map(|(i, digit)| {
            if i % 2 == 0 {
                serde_json::json!({ "pixels": digit })
            } else {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(png(digit));
                serde_json::json!({ "image": format!("data:image/png;base64,{encoded}") })
            }
        })
        .collect();
    let body = serde_json::json!({ "images": batch }).to_string();
    let (status, body) = request(
        addr,
        "POST",
        "/v1/predict/batch",
        "application/json",
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{}", text(&body));
    let classes: Vec<u64> = json(&body)["predictions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["class"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = report.predictions[..50]
        .iter()
        .map(|&p| u64::from(p))
        .collect();
    assert_eq!(classes, expected);
}

/// Bad input: each its status and a JSON error naming the problem.
fn bad_inputs_get_their_4xx(addr: SocketAddr, digits: &[Vec<u8>]) {
    for (what, path, kind, body, status, words) in bad_inputs(digits) {
        let method = if path.starts_with("/v1") {
            "POST"
        } else {
            "GET"
        };
        let (got, answer) = request(addr, method, path, kind, &body);
        assert_eq!(got, status, "{what}: {}", text(&answer));
        let error = json(&answer)["error"].as_str().unwrap().to_string();
        assert!(error.contains(words), "{what}: {error}");
    }
}

/// Each kind of bad input, with the status and words of its answer.
fn bad_inputs(digits: &[Vec<u8>]) -> Vec<BadInput> {
    let mut wrong_length = pixels_json(&digits[0][..783]);
    let nan = {
        let mut values: Vec<String> = digits[0].iter().map(u8::to_string).collect();
        values[3] = "NaN".into();
        format!("{{\"pixels\": [{}]}}", values.join(",")).into_bytes()
    };
    let good_png = png(&digits[0]);
    let truncated = good_png[..good_png.len() / 2].to_vec();
    vec![
        (
            "over the size limit",
            "/v1/predict",
            "image/png",
            vec![0; 5 << 20],
            413,
            "limit",
        ),
        (
            "not an image",
            "/v1/predict",
            "image/png",
            b"hello".to_vec(),
            400,
            "not a PNG or JPEG",
        ),
        (
            "a truncated PNG",
            "/v1/predict",
            "image/png",
            truncated,
            400,
            "Png",
        ),
        (
            "JSON of the wrong length",
            "/v1/predict",
            "application/json",
            std::mem::take(&mut wrong_length),
            400,
            "783 values",
        ),
        (
            "JSON with NaN",
            "/v1/predict",
            "application/json",
            nan,
            400,
            "NaN",
        ),
        (
            "a 50,000 x 50,000 header",
            "/v1/predict",
            "image/png",
            huge_png(50_000),
            400,
            "50000x50000",
        ),
        (
            "an empty body",
            "/v1/predict",
            "image/png",
            Vec::new(),
            400,
            "empty",
        ),
        (
            "a batch of nothing",
            "/v1/predict/batch",
            "application/json",
            br#"{"images": []}"#.to_vec(),
            400,
            "empty",
        ),
        (
            "a batch item of no kind",
            "/v1/predict/batch",
            "application/json",
            br#"{"images": [{"x": 1}]}"#.to_vec(),
            400,
            "images[0]",
        ),
        (
            "a path outside the API",
            "/../../etc/passwd",
            "text/plain",
            Vec::new(),
            404,
            "no such endpoint",
        ),
        (
            "the run's own files",
            "/config.toml",
            "text/plain",
            Vec::new(),
            404,
            "no such endpoint",
        ),
    ]
}

/// A slow client: headers, then part of the body, then nothing; 408 after the timeout.
fn slow_clients_time_out(addr: SocketAddr) {
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(
        b"POST /v1/predict HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\n0123456789",
    )
    .unwrap();
    let started = Instant::now();
    let (status, _) = read_response(&mut slow);
    assert_eq!(status, 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    // A client that never finishes its headers is hung up on.
    let mut silent = TcpStream::connect(addr).unwrap();
    silent
        .write_all(b"POST /v1/predict HTTP/1.1\r\nHost: te")
        .unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut rest = Vec::new();
    let hung_up = silent.read_to_end(&mut rest);
    assert!(
        hung_up.is_ok() || rest.is_empty(),
        "the connection stayed open"
    );
}

/// The server still answers, and counted all of it.
fn the_server_still_answers_and_counted_it(
    addr: SocketAddr,
    digits: &[Vec<u8>],
    report: &EvaluationReport,
) {
    let (status, body) = request(addr, "POST", "/v1/predict", "image/png", &png(&digits[1]));
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["class"].as_u64(),
        Some(u64::from(report.predictions[1]))
    );
    let (status, body) = request(addr, "GET", "/healthz", "text/plain", b"");
    assert_eq!(
        (status, text(&body).trim().to_string()),
        (200, "ok".to_string())
    );
    let (_, metrics) = request(addr, "GET", "/metrics", "text/plain", b"");
    let metrics = text(&metrics);
    for line in [
        "mnist_lstm_http_requests_total{route=\"/v1/predict\",status=\"413\"} 1",
        "mnist_lstm_http_requests_total{route=\"/v1/predict\",status=\"408\"} 1",
        "mnist_lstm_http_requests_total{route=\"other\",status=\"404\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(
        !metrics.contains("status=\"5"),
        "a 5xx was answered:\n{metrics}"
    );
}

/// /v1/model: the run's configuration without local paths, the dataset and class names.
fn the_model_document_names_no_local_path(
    addr: SocketAddr,
    run_dir: &Path,
    report: &EvaluationReport,
) {
    let (status, body) = request(addr, "GET", "/v1/model", "text/plain", b"");
    assert_eq!(status, 200);
    let model = json(&body);
    assert_eq!(model["dataset"], "mnist");
    assert_eq!(model["class_names"].as_array().unwrap().len(), 10);
    assert_eq!(model["model"]["hidden_size"], 64);
    assert!((model["test_accuracy"].as_f64().unwrap() - report.accuracy()).abs() < 1e-9);
    assert!(model["config"]["data"].get("dir").is_none());
    assert!(!text(&body).contains(&run_dir.display().to_string()));
}

#[test]
fn concurrent_requests_share_forward_passes_and_sigterm_finishes_them() {
    let (_work, run_dir, digits, report) = trained_run(&[]);
    let mut server = start_server(&run_dir, &["--max-wait-ms", "20"]);
    let addr = server.addr;

    // 16 clients at once: every answer right, and fewer forward passes than requests.
    let clients: Vec<_> = (0..16)
        .map(|client| {
            let digits = digits.clone();
            let expected = report.predictions.clone();
            std::thread::spawn(move || {
                for round in 0..8 {
                    let index = (client * 8 + round) % digits.len();
                    let (status, body) = request(
                        addr,
                        "POST",
                        "/v1/predict",
                        "image/png",
                        &png(&digits[index]),
                    );
                    assert_eq!(status, 200, "{}", text(&body));
                    assert_eq!(
                        json(&body)["class"].as_u64(),
                        Some(u64::from(expected[index]))
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let (_, metrics) = request(addr, "GET", "/metrics", "text/plain", b"");
    let metrics = text(&metrics);
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{metrics}"))
    };
    assert_eq!(value("mnist_lstm_predictions_total"), 128.0);
    let passes = value("mnist_lstm_batch_size_images_count");
    assert!(
        passes < 128.0,
        "{passes} forward passes for 128 concurrent requests"
    );

    // SIGTERM while a request is half uploaded: it is answered, then the server exits 0.
    let body = png(&digits[2]);
    let mut in_flight = half_upload_then_sigterm(&server, &body, "Connection: close\r\n");
    std::thread::sleep(Duration::from_millis(300));
    in_flight.write_all(&body[10..]).unwrap();
    let (status, answer) = read_response(&mut in_flight);
    assert_eq!(status, 200, "{}", text(&answer));
    assert_eq!(
        json(&answer)["class"].as_u64(),
        Some(u64::from(report.predictions[2]))
    );
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "serve exited with {exit}");
    assert!(
        TcpStream::connect(addr).is_err(),
        "still accepting after SIGTERM"
    );
}

/// WebDriver, spoken to a local chromedriver over HTTP.
struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free loopback port and opens a headless Chromium session;
    /// nothing in it reaches beyond loopback.
    fn open() -> (Self, String) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = std::process::Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let browser = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            agent,
        };
        let ready = Instant::now();
        while browser.call("GET", "/status", None).is_err() {
            assert!(
                ready.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let capabilities = serde_json::json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=420,760",
                         "--disable-background-networking", "--disable-component-update",
                         "--no-first-run"],
            },
        }}});
        let session = browser
            .call("POST", "/session", Some(capabilities))
            .unwrap();
        let id = session["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        (browser, id)
    }

    /// One WebDriver command; its `value`, or the error WebDriver reported.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string()),
        };
        let mut response = response.map_err(|error| error.to_string())?;
        let status = response.status();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|error| error.to_string())?;
        let value: Value =
            serde_json::from_str(&text).map_err(|error| format!("{error}: {text}"))?;
        if status.is_success() {
            Ok(value["value"].clone())
        } else {
            Err(format!("{method} {path}: {status}: {}", value["value"]))
        }
    }

    fn script(&self, session: &str, script: &str) -> Value {
        self.call(
            "POST",
            &format!("/session/{session}/execute/sync"),
            Some(serde_json::json!({ "script": script, "args": [] })),
        )
        .unwrap()
    }

    /// Waits until the page has shown an answer and its count of answers has not changed for
    /// 0.7 s: it asks while the stroke is drawn and once more when the pointer lifts.
    fn wait_for_settled_answers(&self, session: &str) {
        let answered = || {
            self.script(
                session,
                "return Number(document.body.dataset.answered || 0);",
            )
            .as_u64()
            .unwrap_or(0)
        };
        let started = Instant::now();
        let mut last = (answered(), Instant::now());
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = answered();
            if now != last.0 {
                last = (now, Instant::now());
            } else if now > 0 && last.1.elapsed() > Duration::from_millis(700) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the page showed no prediction"
            );
        }
    }

    /// A screenshot of the page, written to `$PAGE_SCREENSHOT` or the test target directory.
    fn save_screenshot(&self, session: &str) -> std::path::PathBuf {
        use base64::Engine;
        let screenshot = self
            .call("GET", &format!("/session/{session}/screenshot"), None)
            .unwrap();
        let screenshot = base64::engine::general_purpose::STANDARD
            .decode(screenshot.as_str().unwrap())
            .unwrap();
        let path = std::env::var_os("PAGE_SCREENSHOT")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page.png"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&path, screenshot).unwrap();
        path
    }
}

/// Pointer moves, relative to the centre of `element`, that write a 7: a bar, then a slanted
/// stroke down.
fn seven_strokes(element: &Value) -> Value {
    let mut actions = vec![
        serde_json::json!({ "type": "pointerMove", "origin": element, "x": -70, "y": -80, "duration": 0 }),
        serde_json::json!({ "type": "pointerDown", "button": 0 }),
    ];
    let points = (0..=10)
        .map(|i| (-70 + 14 * i, -80))
        .chain((1..=14).map(|i| (70 - 6 * i, -80 + 12 * i)));
    for (x, y) in points {
        actions.push(serde_json::json!({
            "type": "pointerMove", "origin": element, "x": x, "y": y, "duration": 30
        }));
    }
    actions.push(serde_json::json!({ "type": "pointerUp", "button": 0 }));
    serde_json::json!({ "actions": [{
        "type": "pointer", "id": "finger", "parameters": { "pointerType": "mouse" },
        "actions": actions,
    }]})
}

#[test]
#[cfg_attr(
    not(all(chromium, real_mnist)),
    ignore = "needs Debian's chromium and chromium-driver, and $MNIST_DIR with the MNIST files"
)]
fn a_browser_draws_a_seven_on_the_page_and_reads_the_prediction() {
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("default");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/default.toml");
    let mnist = std::env::var("MNIST_DIR").expect("MNIST_DIR");
    let trained = cli(
        &[
            "train",
            &config.display().to_string(),
            "--data-dir",
            &mnist,
            "--artifacts",
            &run_dir.display().to_string(),
        ],
        work.path(),
    );
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let server = start_server(&run_dir, &[]);

    let (browser, session) = Browser::open();
    let page = format!("http://{}/", server.addr);
    browser
        .call(
            "POST",
            &format!("/session/{session}/url"),
            Some(serde_json::json!({ "url": page })),
        )
        .unwrap();
    let pad = browser
        .call(
            "POST",
            &format!("/session/{session}/element"),
            Some(serde_json::json!({ "using": "css selector", "value": "#pad" })),
        )
        .unwrap();
    browser
        .call(
            "POST",
            &format!("/session/{session}/actions"),
            Some(seven_strokes(&pad)),
        )
        .unwrap();

    browser.wait_for_settled_answers(&session);
    let shown = browser.script(
        &session,
        "return document.getElementById('digit').textContent;",
    );
    let bars = browser.script(
        &session,
        "return document.querySelectorAll('#bars .bar').length;",
    );
    assert_eq!(bars.as_u64(), Some(3), "top-3 bars");
    // Under the answer, how it formed: one line per class over the 28 steps, the answer's blue.
    let chart = browser.script(
        &session,
        "const steps = document.getElementById('steps'); return [Number(steps.dataset.steps), \
         steps.querySelectorAll('polyline').length, \
         steps.querySelector('polyline.answer').getAttribute('points').split(' ').length];",
    );
    assert_eq!(chart, serde_json::json!([28, 10, 28]), "the per-step chart");

    // The canvas as the page sent it, asked of the API directly: the same answer.
    let data_url = browser.script(
        &session,
        "return document.getElementById('pad').toDataURL('image/png');",
    );
    let encoded = data_url.as_str().unwrap().split_once(',').unwrap().1;
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    let (status, body) = request(server.addr, "POST", "/v1/predict", "image/png", &png);
    assert_eq!(status, 200);
    assert_eq!(
        shown.as_str(),
        json(&body)["label"].as_str(),
        "the page and the API disagree"
    );

    let path = browser.save_screenshot(&session);
    println!("screenshot of the page: {}", path.display());
    let _ = browser.call("DELETE", &format!("/session/{session}"), None);
    assert_eq!(shown.as_str(), Some("7"), "the drawn 7 was read as {shown}");
}
