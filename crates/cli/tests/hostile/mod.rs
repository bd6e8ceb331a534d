//! `serve` under hostile input, each input made here: JPEGs whose header claims far more
//! pixels than their data holds, JPEGs cut short, PNGs of a few hundred KiB that inflate to
//! 16-bit RGBA pictures of hundreds of MB, and 28x28 PNGs carrying an `iCCP` chunk of 1 MiB that
//! inflates to 1 GiB. The server must go on answering `/healthz` within 1 s, answer every
//! request within its deadline plus 1 s, stop decoding once a request's deadline has passed,
//! stay under 1 GB of peak resident memory, and refuse cut data with a 400. Then the smaller
//! protocol edges: `Expect: 100-continue` over the limit, no `Host`, 405, a batch item with a
//! key twice, a client that never reads, the warning for a non-loopback address, and the
//! shutdown line when uploads are stuck.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use image::{GrayImage, ImageEncoder};

use super::{command, json, png, read_response, request, start_server, text, trained_run};

/// The most the server may hold resident at its peak (`VmHWM`), under any mix of attacks.
const ONE_GB: u64 = 1_000_000_000;
/// The default `--timeout-ms`.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest picture the server decodes (`inference::MAX_IMAGE_PIXELS`, 4096 x 4096).
const BUDGET_SIDE: u32 = 4096;

/// Bits written least significant first, as deflate wants them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    used: u32,
}

impl Bits {
    /// `count` bits of `value`, lowest first (deflate's header fields and extra bits).
    fn field(&mut self, value: u32, count: u32) {
        for bit in 0..count {
            self.bit((value >> bit) & 1);
        }
    }

    /// A Huffman code of `length` bits, its highest bit first.
    fn code(&mut self, code: u32, length: u32) {
        for bit in (0..length).rev() {
            self.bit((code >> bit) & 1);
        }
    }

    fn bit(&mut self, bit: u32) {
        if self.used.is_multiple_of(8) {
            self.bytes.push(0);
        }
        if bit == 1 {
            *self.bytes.last_mut().unwrap() |= 1 << (self.used % 8);
        }
        self.used += 1;
    }
}

/// A zlib stream of runs of bytes 0 and 255 (`(byte, count)`), about a thousandth of their
/// length: one dynamic Huffman block whose only codes are the literals 0 (`10`) and 255
/// (`110`), end of block (`111`), length 258 (`0`) and distance 1 (`0`), so that a run costs
/// two bits for each 258 bytes.
fn zlib_runs(runs: &[(u8, u64)]) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.field(1, 1); // the last block
    bits.field(2, 2); // dynamic Huffman codes
    bits.field(286 - 257, 5);
    bits.field(2 - 1, 5);
    bits.field(18 - 4, 4);
    // Code length code lengths, in deflate's order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
    // 18 (a run of zeros) gets `0`, 1 gets `10`, 2 gets `110`, 3 gets `111`.
    for length in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 3, 0, 2] {
        bits.field(length, 3);
    }
    let unused = |bits: &mut Bits, run: u32| {
        bits.code(0, 1);
        bits.field(run - 11, 7);
    };
    bits.code(0b110, 3); // literal 0: length 2
    unused(&mut bits, 138); // literals 1..=254
    unused(&mut bits, 116);
    bits.code(0b111, 3); // literal 255: length 3
    bits.code(0b111, 3); // end of block: length 3
    unused(&mut bits, 28); // lengths 257..=284
    bits.code(0b10, 2); // length 258: length 1
    bits.code(0b10, 2); // distances 1 and 2: length 1 each
    bits.code(0b10, 2);
    let literal = |bits: &mut Bits, byte: u8| match byte {
        0 => bits.code(0b10, 2),
        _ => bits.code(0b110, 3),
    };
    // Adler-32, a run at a time.
    const MOD: u64 = 65_521;
    let (mut sum, mut sums) = (1u64, 0u64);
    for &(byte, count) in runs {
        literal(&mut bits, byte);
        for _ in 0..(count - 1) / 258 {
            bits.code(0, 2); // 258 more, copied from one byte back
        }
        for _ in 0..(count - 1) % 258 {
            literal(&mut bits, byte);
        }
        let byte = u64::from(byte);
        sums = (sums + count % MOD * sum + byte * ((count * (count + 1) / 2) % MOD)) % MOD;
        sum = (sum + count % MOD * byte) % MOD;
    }
    bits.code(0b111, 3);
    let mut stream = vec![0x78, 0x01];
    stream.extend(bits.bytes);
    stream.extend((((sums as u32) << 16) | sum as u32).to_be_bytes());
    stream
}

fn crc32(bytes: &[u8]) -> u32 {
    let table: Vec<u32> = (0..256u32)
        .map(|mut crc| {
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
            crc
        })
        .collect();
    !bytes.iter().fold(!0u32, |crc, &byte| {
        table[((crc ^ u32::from(byte)) & 0xFF) as usize] ^ (crc >> 8)
    })
}

/// A PNG chunk: length, type, data, CRC.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut typed = kind.to_vec();
    typed.extend(data);
    let mut bytes = (data.len() as u32).to_be_bytes().to_vec();
    bytes.extend(&typed);
    bytes.extend(crc32(&typed).to_be_bytes());
    bytes
}

/// A 16-bit RGBA PNG of `width` x `height` transparent black pixels: `8 * width * height` bytes
/// decoded, about a thousandth of that sent.
fn rgba16_bomb(width: u32, height: u32) -> Vec<u8> {
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]);
    let raw = u64::from(height) * (1 + 8 * u64::from(width));
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(chunk(b"IHDR", &ihdr));
    file.extend(chunk(b"IDAT", &zlib_runs(&[(0, raw)])));
    file.extend(chunk(b"IEND", b""));
    file
}

/// A grey PNG of 3871 x 4096 pixels (15.9 megapixels, within the budget) of a white bar on
/// black, which frames as a digit, in about 20 KB: each run of a row is one more than a
/// multiple of 258 bytes, so each costs a few bits.
fn big_bar() -> Vec<u8> {
    let (width, height) = (1 + 258 * 15, 4096u64);
    let (bar, side) = (1 + 258 * 7, 258 * 4);
    let mut ihdr = (width as u32).to_be_bytes().to_vec();
    ihdr.extend((height as u32).to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    // A row is its filter byte (0) and its pixels; the bar spans the middle half of the rows.
    let (top, middle) = (height / 4, height / 2);
    let mut runs = vec![(0, top * (1 + width) + 1 + side)];
    for _ in 1..middle {
        runs.extend([(255, bar), (0, side + 1 + side)]);
    }
    runs.extend([
        (255, bar),
        (0, side + (height - top - middle) * (1 + width)),
    ]);
    let mut file = b"\x89PNG\r\n\x1a\n".to_vec();
    file.extend(chunk(b"IHDR", &ihdr));
    file.extend(chunk(b"IDAT", &zlib_runs(&runs)));
    file.extend(chunk(b"IEND", b""));
    file
}

/// A good 28x28 PNG of `digit` with an `iCCP` chunk of about 1 MiB that inflates to 1 GiB.
fn iccp_bomb(digit: &[u8]) -> Vec<u8> {
    let good = png(digit);
    let mut profile = b"bomb\0\0".to_vec();
    profile.extend(zlib_runs(&[(0, 1 << 30)]));
    // After the signature (8 bytes) and IHDR (25): where an iCCP chunk belongs.
    let mut file = good[..33].to_vec();
    file.extend(chunk(b"iCCP", &profile));
    file.extend(&good[33..]);
    file
}

/// A JPEG of `digit` (28x28, grey).
fn jpeg(digit: &[u8]) -> Vec<u8> {
    let picture = GrayImage::from_raw(28, 28, digit.to_vec()).unwrap();
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
        .write_image(picture.as_raw(), 28, 28, image::ExtendedColorType::L8)
        .unwrap();
    bytes
}

/// `jpeg` with its header claiming `width` x `height` pixels; its data still holds 28x28.
fn header_inflated(jpeg: &[u8], width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg.to_vec();
    let sof = bytes
        .windows(2)
        .position(|pair| pair == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}

/// `{"images": [{"image": base64}, ...]}` of `count` copies of `picture`.
fn batch_of(picture: &[u8], count: usize) -> Vec<u8> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(picture);
    let items = vec![serde_json::json!({ "image": encoded }); count];
    serde_json::json!({ "images": items })
        .to_string()
        .into_bytes()
}

/// A field of `/proc/<pid>/status` in kB (`VmHWM`, `VmRSS`).
fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
}

/// The CPU time the process has used (user and system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name, which ends with the last ')': utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|field| field.parse().unwrap())
        .collect();
    // Linux reports both in clock ticks of 1/100 s.
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// Asks `/healthz` every 50 ms until stopped; the slowest answer.
fn poll_health(addr: SocketAddr, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Duration> {
    std::thread::spawn(move || {
        let mut slowest = Duration::ZERO;
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let (status, body) = request(addr, "GET", "/healthz", "text/plain", b"");
            assert_eq!((status, text(&body).trim()), (200, "ok"));
            slowest = slowest.max(started.elapsed());
            std::thread::sleep(Duration::from_millis(50));
        }
        slowest
    })
}

/// Sends each body to `path` at once, one connection each; status, error text and time taken.
fn all_at_once(addr: SocketAddr, path: &str, bodies: Vec<Vec<u8>>) -> Vec<(u16, String, Duration)> {
    let path = path.to_string();
    let clients: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let path = path.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let kind = if path.ends_with("batch") {
                    "application/json"
                } else {
                    "image/png"
                };
                let (status, answer) = request(addr, "POST", &path, kind, &body);
                let error = json(&answer)["error"].as_str().unwrap_or("").to_string();
                (status, error, started.elapsed())
            })
        })
        .collect();
    clients.into_iter().map(|c| c.join().unwrap()).collect()
}

#[test]
fn hostile_pictures_neither_freeze_nor_bloat_the_server() {
    let (_work, run_dir, digits, report) = trained_run(&[]);
    let server = start_server(&run_dir, &["--timeout-ms", "10000"]);
    let (addr, pid) = (server.addr, server.child.id());
    let stop = Arc::new(AtomicBool::new(false));
    let health = poll_health(addr, stop.clone());
    let digit_jpeg = jpeg(&digits[0]);

    // Two batches of 25 JPEGs whose header claims the largest picture decoded, at once.
    let inflated = header_inflated(&digit_jpeg, BUDGET_SIDE as u16, BUDGET_SIDE as u16);
    let batch = batch_of(&inflated, 25);
    for (status, error, took) in all_at_once(addr, "/v1/predict/batch", vec![batch.clone(); 2]) {
        assert!(matches!(status, 400 | 408), "{status}: {error}");
        assert!(
            took < TIMEOUT + Duration::from_secs(1),
            "a batch took {took:?}"
        );
    }

    // Eight 16-bit RGBA bombs as large as the budget allows, eight of 8192 x 5859 (48 megapixels,
    // refused from the header), and four iCCP bombs, all at once.
    let mut bombs = vec![rgba16_bomb(BUDGET_SIDE, BUDGET_SIDE); 8];
    bombs.extend(vec![rgba16_bomb(8192, 5859); 8]);
    let iccp = iccp_bomb(&digits[3]);
    bombs.extend(vec![iccp.clone(); 4]);
    let answers = all_at_once(addr, "/v1/predict", bombs);
    for (status, error, _) in &answers[..8] {
        assert_eq!(*status, 400, "{error}");
        assert!(error.contains("no digit found"), "{error}");
    }
    for (status, error, _) in &answers[8..16] {
        assert_eq!(*status, 400, "{error}");
        assert!(error.contains("8192x5859"), "{error}");
    }
    for (status, error, _) in &answers[16..] {
        assert_eq!(*status, 200, "an iCCP bomb: {error}");
    }

    // Cut data is a 400 naming it, within 2 s: the first half of a JPEG, and the header that
    // claims 8000x6000.
    let cut = digit_jpeg[..digit_jpeg.len() / 2].to_vec();
    let claims = header_inflated(&digit_jpeg, 8000, 6000);
    for (what, body, words) in [("cut", cut, "Jpeg"), ("8000x6000", claims, "8000x6000")] {
        let started = Instant::now();
        let (status, answer) = request(addr, "POST", "/v1/predict", "image/jpeg", &body);
        let error = json(&answer)["error"].as_str().unwrap_or("").to_string();
        assert_eq!(status, 400, "{what}: {error}");
        assert!(error.contains(words), "{what}: {error}");
        assert!(started.elapsed() < Duration::from_secs(2), "{what}");
    }

    stop.store(true, Ordering::Relaxed);
    let slowest = health.join().unwrap();
    assert!(
        slowest < Duration::from_secs(1),
        "/healthz took {slowest:?}"
    );
    let peak = status_kb(pid, "VmHWM") * 1024;
    println!(
        "peak resident memory {} MB, now {} MB; slowest /healthz {slowest:?}",
        peak / 1_000_000,
        status_kb(pid, "VmRSS") * 1024 / 1_000_000
    );
    assert!(peak < ONE_GB, "peak resident memory {peak} bytes");

    // Afterwards: a good picture gets eval's answer, as the iCCP bombs' digit did.
    let (status, body) = request(addr, "POST", "/v1/predict", "image/png", &png(&digits[1]));
    assert_eq!(status, 200, "{}", text(&body));
    assert_eq!(
        json(&body)["class"].as_u64(),
        Some(u64::from(report.predictions[1]))
    );
    let (status, body) = request(addr, "POST", "/v1/predict", "image/png", &iccp);
    assert_eq!(
        json(&body)["class"].as_u64(),
        Some(u64::from(report.predictions[3])),
        "{status}"
    );
}

#[test]
fn a_request_past_its_deadline_is_answered_at_once_and_its_decoding_stops() {
    let (_work, run_dir, _digits, _report) = trained_run(&[]);
    let server = start_server(&run_dir, &["--timeout-ms", "1000"]);
    let (addr, pid) = (server.addr, server.child.id());
    // Each picture is a digit that takes a decode thread a tenth of a second or more; a hundred
    // take many seconds.
    let picture = big_bar();
    let started = Instant::now();
    let (status, answer) = request(addr, "POST", "/v1/predict", "image/png", &picture);
    assert_eq!(status, 200, "{}", text(&answer));
    println!(
        "one {} KB picture of 15.9 megapixels: {:?}",
        picture.len() / 1000,
        started.elapsed()
    );
    let batch = batch_of(&picture, 100);
    let started = Instant::now();
    let (status, answer) = request(
        addr,
        "POST",
        "/v1/predict/batch",
        "application/json",
        &batch,
    );
    let took = started.elapsed();
    assert_eq!(status, 408, "{}", text(&answer));
    assert!(took < Duration::from_secs(2), "the 408 came after {took:?}");

    // The picture being decoded stops at its next row and the rest are never started: the
    // server is idle again (a thread left decoding would use a second of CPU a second).
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_time(pid);
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_time(pid) - before;
    assert!(
        used < Duration::from_millis(500),
        "{used:?} of CPU in the 2 s after the 408"
    );
}

#[test]
fn protocol_edges_get_their_status_and_a_json_error() {
    let (_work, run_dir, digits, _report) = trained_run(&[]);
    let server = start_server(&run_dir, &["--timeout-ms", "1000"]);
    let addr = server.addr;
    let exchange = |raw: &[u8]| {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw).unwrap();
        let started = Instant::now();
        let (status, body) = read_response(&mut stream);
        (status, json(&body), started.elapsed())
    };

    // 100 MB announced with Expect: 100-continue: 413 at once, no 100 Continue first.
    let (status, error, took) = exchange(
        b"POST /v1/predict HTTP/1.1\r\nHost: t\r\nContent-Type: image/png\r\n\
          Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n",
    );
    assert_eq!(status, 413, "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("limit"),
        "{error}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");

    // HTTP/1.1 without Host: 400 (RFC 9112); HTTP/1.0 needs none.
    let (status, error, _) = exchange(b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 400);
    assert!(error["error"].as_str().unwrap().contains("Host"), "{error}");
    let mut old = TcpStream::connect(addr).unwrap();
    old.write_all(b"GET /healthz HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_response(&mut old).0, 200);

    // A method a route does not take: 405 with JSON like every other error.
    let (status, error, _) =
        exchange(b"GET /v1/predict HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 405);
    assert!(error["error"].as_str().unwrap().contains("POST"), "{error}");
    assert_eq!(error["status"], 405);

    // A batch item with "image" twice is refused, as /v1/predict refuses a key twice.
    let encoded = base64::engine::general_purpose::STANDARD.encode(png(&digits[0]));
    let twice = format!(r#"{{"images": [{{"image": "{encoded}", "image": "{encoded}"}}]}}"#);
    let (status, body) = request(
        addr,
        "POST",
        "/v1/predict/batch",
        "application/json",
        twice.as_bytes(),
    );
    let error = json(&body)["error"].as_str().unwrap().to_string();
    assert_eq!(status, 400, "{error}");
    assert!(error.starts_with("images[0]: duplicate field"), "{error}");

    a_client_that_never_reads_is_hung_up_on(addr);
}

/// Thousands of pipelined requests for the page, none of the answers read: once the socket
/// buffers are full the server's write waits, and after `--timeout-ms` the server hangs up.
fn a_client_that_never_reads_is_hung_up_on(addr: SocketAddr) {
    let mut greedy = TcpStream::connect(addr).unwrap();
    let requests = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n".repeat(4000);
    let mut writer = greedy.try_clone().unwrap();
    // The server stops reading requests once its writes wait: write from elsewhere.
    std::thread::spawn(move || {
        let _ = writer.write_all(&requests);
    });
    std::thread::sleep(Duration::from_secs(4));
    greedy
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut received = 0usize;
    let mut buffer = vec![0; 1 << 16];
    let ended = loop {
        match greedy.read(&mut buffer) {
            Ok(0) => break true,
            Ok(n) => received += n,
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false,
        }
    };
    let (_, page) = request(addr, "GET", "/", "text/plain", b"");
    assert!(
        ended,
        "the connection was still open after {received} bytes"
    );
    assert!(
        received < 4000 * page.len(),
        "all {received} bytes of the answers were written"
    );
}

#[test]
fn non_loopback_addresses_warn_and_stuck_uploads_are_reported_dropped() {
    let (_work, run_dir, digits, _report) = trained_run(&[]);
    // Any interface: one warning line saying the API has no authentication.
    let mut open = command(&run_dir)
        .args(["serve", "--model", &run_dir.display().to_string()])
        .args(["--addr", "0.0.0.0:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(open.stdout.take().unwrap());
    let listening = stdout
        .lines()
        .map_while(Result::ok)
        .find(|line| line.starts_with("listening on"));
    assert!(listening.is_some(), "serve did not listen");
    let _ = open.kill();
    let _ = open.wait();
    let mut stderr = String::new();
    open.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("no authentication"), "{stderr}");

    // SIGTERM with an upload stuck half way: the drain times out and the last line says the
    // request was dropped, not answered.
    let mut server = start_server(&run_dir, &["--timeout-ms", "60000"]);
    let body = png(&digits[0]);
    // Held open until the server has exited.
    let _stuck = super::half_upload_then_sigterm(&server, &body, "");
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "serve exited with {exit}");
    // The process has exited: its stdout ends, and with it this iterator.
    let said: Vec<String> = server.stdout.iter().collect();
    let stopped: Vec<&String> = said.iter().filter(|l| l.starts_with("stopped:")).collect();
    assert_eq!(stopped.len(), 1, "{said:?}");
    assert!(stopped[0].contains("dropped"), "{said:?}");
    assert!(!stopped[0].contains("answered"), "{said:?}");
}
