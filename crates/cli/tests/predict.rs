//! What a person looks at and reuses after a run, checked as they would: the curves open as
//! images of the promised size, `metrics.csv` loads, `eval` draws the confusion matrix, and
//! `predict` reads PNG and JPEG files (cut from MNIST, inverted, enlarged, or digits drawn here)
//! and says clearly what is wrong with bad ones.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageFormat, Rgb, RgbImage};
use training::{
    CONFUSION_SIZE, CURVE_SIZE, ExperimentConfig, METRICS_FILE, MetricSplit, READING_SIZE,
    RunOptions, evaluate_run, parse_metrics_csv, train,
};

mod common;
use common::{cli, text};

fn config_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{name}.toml"))
}

/// Decodes a PNG as an image viewer would and returns its size.
fn png_size(path: &Path) -> (u32, u32) {
    let image = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (image.width(), image.height())
}

/// Checks an SVG file is a whole SVG document and returns the size its root element declares.
fn svg_size(path: &Path) -> (u32, u32) {
    let svg = std::fs::read_to_string(path).unwrap();
    let start = svg.find("<svg").expect("an <svg> element");
    assert!(
        svg.trim_end().ends_with("</svg>"),
        "{} is cut short",
        path.display()
    );
    let tag = &svg[start..start + svg[start..].find('>').unwrap()];
    let attribute = |name: &str| -> u32 {
        let from = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        tag[from..from + tag[from..].find('"').unwrap()]
            .parse()
            .unwrap()
    };
    (attribute("width"), attribute("height"))
}

/// `predict`'s lines: name -> (digit, top 3 as (class, percent)).
fn predictions(stdout: &str) -> HashMap<String, (usize, Vec<(usize, f64)>)> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(": ")?;
            let (digit, top) = rest.split_once("  top 3: ")?;
            let top = top
                .split("  (truth")
                .next()?
                .split(", ")
                .map(|entry| {
                    let (class, percent) = entry.split_once(' ').unwrap();
                    (
                        class.parse().unwrap(),
                        percent.trim_end_matches('%').parse().unwrap(),
                    )
                })
                .collect();
            Some((name.to_string(), (digit.trim().parse().ok()?, top)))
        })
        .collect()
}

/// Trains the smoke configuration with `overrides` (`key=value`) on synthetic data in a fresh
/// directory; gives it, the run directory and the test images' IDX file.
fn smoke_run(overrides: &[&str]) -> (tempfile::TempDir, String, String) {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 4, false).unwrap();
    let run = work.path().join("run").display().to_string();
    let mut args = vec![
        "train".to_string(),
        config_path("smoke").display().to_string(),
        "--data-dir".to_string(),
        data_dir.display().to_string(),
        "--artifacts".to_string(),
        run.clone(),
    ];
    for set in overrides {
        args.extend(["--set".to_string(), set.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let trained = cli(&args, work.path());
    assert!(trained.status.success(), "{}", text(&trained.stderr));
    let idx = data_dir
        .join("t10k-images-idx3-ubyte")
        .display()
        .to_string();
    (work, run, idx)
}

/// `gates` draws an LSTM's gates: a GRU run is refused in one line naming the field and the
/// value it takes.
#[test]
fn gates_refuses_a_gru_run_in_one_line() {
    let (work, run, idx) = smoke_run(&["model.cell=gru"]);
    let drawn = cli(
        &["gates", "--model", &run, "--idx", &idx, "--index", "0"],
        work.path(),
    );
    assert!(!drawn.status.success());
    let stderr = text(&drawn.stderr);
    assert!(
        stderr.contains("model.cell = \"gru\"") && stderr.contains("model.cell = \"lstm\" only"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// `gates` on a permuted pixel-by-pixel run: the pictures are written, whole and of their size,
/// the numbers cover every one of the 784 steps, and the answer after the last step is
/// `predict`'s.
#[test]
fn gates_draws_how_a_permuted_run_read_a_digit() {
    let (work, run, idx) = smoke_run(&["data.sequence=permuted", "model.input_size=1"]);
    let out = work.path().join("reading");
    let drawn = cli(
        &[
            "gates",
            "--model",
            &run,
            "--idx",
            &idx,
            "--index",
            "3",
            "--out",
            &out.display().to_string(),
        ],
        work.path(),
    );
    assert!(drawn.status.success(), "{}", text(&drawn.stderr));
    for stem in ["steps", "gates"] {
        assert_eq!(png_size(&out.join(format!("{stem}.png"))), READING_SIZE);
        assert_eq!(svg_size(&out.join(format!("{stem}.svg"))), READING_SIZE);
    }
    let svg = std::fs::read_to_string(out.join("gates.svg")).unwrap();
    assert!(
        svg.matches("<rect").count() > 4 * 64,
        "the heatmaps are drawn"
    );
    let reading: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("reading.json")).unwrap()).unwrap();
    let per_step = reading["probabilities_per_step"].as_array().unwrap();
    assert_eq!(per_step.len(), 784);
    assert_eq!(
        reading["gates"]["forget_gate"].as_array().unwrap().len(),
        784
    );
    let answer = text(&drawn.stdout);
    let predicted = cli(
        &["predict", "--model", &run, "--idx", &idx, "--index", "3"],
        work.path(),
    );
    let digit = predictions(&text(&predicted.stdout))
        .into_values()
        .next()
        .expect("one prediction")
        .0;
    assert!(
        answer.contains(&format!(": {digit} after 784 steps")),
        "{answer}"
    );
}

fn save_grey(path: &Path, pixels: &[u8], side: u32) {
    GrayImage::from_raw(side, side, pixels.to_vec())
        .unwrap()
        .save(path)
        .unwrap();
}

#[test]
fn a_run_writes_curves_and_metrics_eval_draws_the_confusion_matrix_and_predict_reads_images() {
    let work = tempfile::tempdir().unwrap();
    let data_dir = work.path().join("data");
    data::write_synthetic_mnist(&data_dir, 640, 200, 3, true).unwrap();
    let run_dir = work.path().join("run");
    let run_arg = run_dir.display().to_string();
    let trained = cli(
        &[
            "train",
            &config_path("smoke").display().to_string(),
            "--data-dir",
            &data_dir.display().to_string(),
            "--artifacts",
            &run_arg,
            "--set",
            "training.epochs=2",
        ],
        work.path(),
    );
    assert!(trained.status.success(), "{}", text(&trained.stderr));

    // metrics.csv: 10 steps an epoch, a probe line every 5 steps, one line per epoch and split.
    let rows =
        parse_metrics_csv(&std::fs::read_to_string(run_dir.join(METRICS_FILE)).unwrap()).unwrap();
    let of = |split: MetricSplit| rows.iter().filter(move |row| row.split == split);
    let steps: Vec<usize> = of(MetricSplit::Train).map(|row| row.step).collect();
    assert_eq!(steps, (1..=20).collect::<Vec<_>>());
    assert!(of(MetricSplit::Train).all(|row| row.epoch == (row.step - 1) / 10 + 1));
    assert!(of(MetricSplit::Train).all(|row| row.loss.is_some() && row.lr == Some(0.01)));
    assert_eq!(of(MetricSplit::Eval).count(), 4);
    let valid: Vec<(usize, usize)> = of(MetricSplit::Valid)
        .map(|row| (row.step, row.epoch))
        .collect();
    assert_eq!(valid, [(10, 1), (20, 2)]);
    assert_eq!(of(MetricSplit::Test).count(), 1);
    assert!(rows.iter().all(|row| {
        row.accuracy.is_none_or(|a| (0.0..=1.0).contains(&a)) && row.elapsed_seconds >= 0.0
    }));

    // The curves open as images of the promised size, with a legend and axis names.
    for stem in ["loss", "accuracy"] {
        assert_eq!(png_size(&run_dir.join(format!("{stem}.png"))), CURVE_SIZE);
        let svg = run_dir.join(format!("{stem}.svg"));
        assert_eq!(svg_size(&svg), CURVE_SIZE);
        let svg = std::fs::read_to_string(svg).unwrap();
        for words in ["training step", "valid ", "eval ", "train "] {
            assert!(svg.contains(words), "{stem}.svg lacks {words:?}");
        }
    }

    // eval draws the confusion matrix beside the run's other files.
    let evaluated = cli(&["eval", "--artifacts", &run_arg], work.path());
    assert!(evaluated.status.success(), "{}", text(&evaluated.stderr));
    assert_eq!(png_size(&run_dir.join("confusion.png")), CONFUSION_SIZE);
    assert_eq!(svg_size(&run_dir.join("confusion.svg")), CONFUSION_SIZE);
    assert!(text(&evaluated.stdout).contains("confusion.png"));

    // predict: a PNG cut from the test file, an IDX index, and one line each.
    let test_images = data_dir.join("t10k-images-idx3-ubyte.gz");
    let (pixels, _) = training::idx_digit(&test_images, 4).unwrap();
    let good = work.path().join("good.png");
    save_grey(&good, &pixels, 28);
    let idx_arg = test_images.display().to_string();
    let predicted = cli(
        &[
            "predict",
            "--model",
            &run_arg,
            &good.display().to_string(),
            "--idx",
            &idx_arg,
            "--index",
            "4",
            "--index",
            "0",
        ],
        work.path(),
    );
    let stdout = text(&predicted.stdout);
    assert!(predicted.status.success(), "{}", text(&predicted.stderr));
    let found = predictions(&stdout);
    assert_eq!(found.len(), 3, "{stdout}");
    for (digit, top) in found.values() {
        assert_eq!(top.len(), 3);
        assert_eq!(top[0].0, *digit);
        assert!(top.windows(2).all(|pair| pair[0].1 >= pair[1].1), "{top:?}");
    }
    assert_eq!(
        found[&good.display().to_string()].0,
        found[&format!("{idx_arg}[4]")].0
    );
    assert!(stdout.contains("(truth: "), "{stdout}");

    // Bad images: one clear line each, the good ones still classified, exit code 1.
    let missing = work.path().join("missing.png");
    let not_an_image = work.path().join("notes.png");
    std::fs::write(&not_an_image, "these are notes, not pixels").unwrap();
    let blank = work.path().join("blank.png");
    RgbImage::from_pixel(50, 40, Rgb([250, 250, 250]))
        .save(&blank)
        .unwrap();
    let truncated = work.path().join("truncated.png");
    let png_bytes = std::fs::read(&good).unwrap();
    std::fs::write(&truncated, &png_bytes[..png_bytes.len() / 2]).unwrap();
    let bad = [
        (&missing, "cannot read"),
        (&not_an_image, "not a PNG or JPEG image"),
        (&blank, "no digit found"),
        (&truncated, "cannot decode"),
    ];
    let mut args = vec!["predict".to_string(), "--model".into(), run_arg.clone()];
    args.push(good.display().to_string());
    args.extend(bad.iter().map(|(path, _)| path.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = cli(&args, work.path());
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for (path, message) in bad {
        let line = stderr
            .lines()
            .find(|line| line.contains(&path.display().to_string()))
            .unwrap_or_else(|| panic!("no line for {}: {stderr}", path.display()));
        assert!(
            line.starts_with("error: ") && line.contains(message),
            "{line}"
        );
    }
    assert!(
        stderr.contains("4 of 5 images could not be classified"),
        "{stderr}"
    );
    assert_eq!(predictions(&text(&output.stdout)).len(), 1);

    for (args, message) in [
        (
            vec![
                "predict", "--model", &run_arg, "--idx", &idx_arg, "--index", "999",
            ],
            "there is no image 999: the file holds 200 images",
        ),
        (
            vec!["predict", "--model", "nowhere", good.to_str().unwrap()],
            "not found: is nowhere the directory of a finished `train` run?",
        ),
    ] {
        let output = cli(&args, work.path());
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// A stroke through these points of the unit box (x right, y down).
type Stroke = Vec<(f64, f64)>;

/// Points on an ellipse from `from` to `to` degrees (0 = right, 90 = down).
fn arc(cx: f64, cy: f64, rx: f64, ry: f64, from: f64, to: f64) -> Stroke {
    (0..=32)
        .map(|i| {
            let angle = (from + (to - from) * f64::from(i) / 32.0).to_radians();
            (cx + rx * angle.cos(), cy + ry * angle.sin())
        })
        .collect()
}

fn then(mut stroke: Stroke, more: &[(f64, f64)]) -> Stroke {
    stroke.extend_from_slice(more);
    stroke
}

/// Handwriting-like strokes of each digit.
fn strokes(digit: usize) -> Vec<Stroke> {
    match digit {
        0 => vec![arc(0.5, 0.5, 0.42, 0.46, 0.0, 360.0)],
        1 => vec![vec![(0.58, 0.04), (0.42, 0.96)]],
        2 => vec![then(
            arc(0.5, 0.3, 0.36, 0.26, 180.0, 400.0),
            &[(0.1, 0.96), (0.92, 0.96)],
        )],
        3 => vec![
            arc(0.48, 0.27, 0.34, 0.23, 200.0, 450.0),
            arc(0.48, 0.73, 0.38, 0.25, 270.0, 500.0),
        ],
        4 => vec![
            vec![(0.3, 0.02), (0.12, 0.62), (0.9, 0.62)],
            vec![(0.68, 0.05), (0.68, 0.98)],
        ],
        5 => vec![
            vec![(0.85, 0.04), (0.25, 0.04)],
            then(
                vec![(0.25, 0.04), (0.2, 0.47)],
                &arc(0.5, 0.68, 0.38, 0.3, 225.0, 500.0),
            ),
        ],
        6 => vec![
            vec![(0.72, 0.02), (0.4, 0.3), (0.2, 0.6), (0.17, 0.72)],
            arc(0.5, 0.7, 0.34, 0.28, 0.0, 360.0),
        ],
        7 => vec![vec![(0.1, 0.04), (0.9, 0.04), (0.38, 0.98)]],
        8 => vec![
            arc(0.5, 0.27, 0.3, 0.23, 0.0, 360.0),
            arc(0.5, 0.73, 0.36, 0.25, 0.0, 360.0),
        ],
        _ => vec![
            arc(0.5, 0.3, 0.36, 0.27, 0.0, 360.0),
            vec![(0.86, 0.3), (0.8, 0.98)],
        ],
    }
}

/// Distance from `p` to the segment `a`-`b`.
fn distance(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let length = dx * dx + dy * dy;
    let t = if length > 0.0 {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / length).clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
}

/// The digit drawn with an anti-aliased round pen of `pen` pixels in the box
/// (`left`, `top`, `height`) of a `width` x `image_height` picture; the digit is 0.62 times as
/// wide as high.
fn draw(
    digit: usize,
    (width, image_height): (u32, u32),
    (left, top, height): (f64, f64, f64),
    pen: f64,
    ink: [u8; 3],
    paper: [u8; 3],
) -> RgbImage {
    let box_width = 0.62 * height;
    let segments: Vec<((f64, f64), (f64, f64))> = strokes(digit)
        .iter()
        .flat_map(|stroke| {
            stroke
                .windows(2)
                .map(|pair| {
                    let at = |(x, y): (f64, f64)| (left + x * box_width, top + y * height);
                    (at(pair[0]), at(pair[1]))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    RgbImage::from_fn(width, image_height, |x, y| {
        let centre = (f64::from(x) + 0.5, f64::from(y) + 0.5);
        let nearest = segments
            .iter()
            .map(|&(a, b)| distance(centre, a, b))
            .fold(f64::INFINITY, f64::min);
        let coverage = (pen / 2.0 + 0.5 - nearest).clamp(0.0, 1.0);
        Rgb(std::array::from_fn(|c| {
            (f64::from(paper[c]) + coverage * (f64::from(ink[c]) - f64::from(paper[c]))).round()
                as u8
        }))
    })
}

/// With a model trained on 20,000 real MNIST images (the smoke configuration with a larger
/// slice): `predict` on PNGs cut from the test set says what `eval` says, also inverted; enlarged
/// to 100x100, and on digits drawn here (dark ink on light paper as JPEG, light on dark as PNG),
/// it finds the right digit.
#[test]
#[cfg_attr(not(real_mnist), ignore = "needs the MNIST files: set MNIST_DIR")]
fn predict_agrees_with_eval_and_reads_enlarged_inverted_and_drawn_digits() {
    let mnist = PathBuf::from(std::env::var_os("MNIST_DIR").expect("MNIST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let run_dir = work.path().join("run");
    let config = ExperimentConfig::load(&config_path("smoke"))
        .unwrap()
        .with_overrides(&["data.train_limit=20000".to_string()])
        .unwrap();
    let options = RunOptions {
        data_dir: Some(mnist.clone()),
        artifacts: Some(run_dir.clone()),
        ..RunOptions::default()
    };
    train(&config, &options).unwrap();
    let report = evaluate_run(&run_dir, &options).unwrap();
    eprintln!(
        "model: smoke config on 20,000 images, {:.2}% on the 10,000 test images",
        100.0 * report.accuracy()
    );

    // Ten test images: the first three the model gets wrong and the first seven it gets right,
    // so agreeing with eval is more than being right.
    let wrong = (0..report.count())
        .filter(|&i| report.predictions[i] != report.labels[i])
        .take(3);
    let right = (0..report.count())
        .filter(|&i| report.predictions[i] == report.labels[i])
        .take(7);
    let indices: Vec<usize> = wrong.chain(right).collect();
    let test_images = mnist.join("t10k-images-idx3-ubyte.gz");
    let mut files = Vec::new();
    for &index in &indices {
        let (pixels, _) = training::idx_digit(&test_images, index).unwrap();
        let path = |kind: &str| work.path().join(format!("{kind}-{index}.png"));
        save_grey(&path("mnist"), &pixels, 28);
        let inverted: Vec<u8> = pixels.iter().map(|p| 255 - p).collect();
        save_grey(&path("inverted"), &inverted, 28);
        let small = GrayImage::from_raw(28, 28, pixels).unwrap();
        image::imageops::resize(&small, 100, 100, image::imageops::FilterType::CatmullRom)
            .save(path("enlarged"))
            .unwrap();
        files.extend(["mnist", "inverted", "enlarged"].map(path));
    }

    // Digits drawn here: blue-black ink on cream paper in a 100x100 JPEG, and white chalk on
    // black in a 160x120 PNG, the digit off centre.
    for digit in 0..10 {
        let light = work.path().join(format!("drawn-light-{digit}.jpg"));
        draw(
            digit,
            (100, 100),
            (26.0, 12.0, 76.0),
            9.0,
            [20, 30, 90],
            [245, 240, 225],
        )
        .save_with_format(&light, ImageFormat::Jpeg)
        .unwrap();
        let dark = work.path().join(format!("drawn-dark-{digit}.png"));
        draw(
            digit,
            (160, 120),
            (95.0, 28.0, 70.0),
            8.0,
            [255, 255, 255],
            [10, 10, 10],
        )
        .save(&dark)
        .unwrap();
        files.extend([light, dark]);
    }

    let mut args = vec![
        "predict".to_string(),
        "--model".into(),
        run_dir.display().to_string(),
    ];
    args.extend(files.iter().map(|path| path.display().to_string()));
    args.extend(["--idx".into(), test_images.display().to_string()]);
    for index in &indices {
        args.extend(["--index".into(), index.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = cli(&args, work.path());
    assert!(output.status.success(), "{}", text(&output.stderr));
    let found = predictions(&text(&output.stdout));
    let digit_of = |name: String| {
        found
            .get(&name)
            .unwrap_or_else(|| panic!("no prediction for {name}"))
            .0
    };
    let file = |kind: &str, index: usize| work.path().join(format!("{kind}-{index}.png"));

    let mut enlarged_right = 0;
    for &index in &indices {
        let eval = usize::from(report.predictions[index]);
        let truth = usize::from(report.labels[index]);
        let mnist = digit_of(file("mnist", index).display().to_string());
        let inverted = digit_of(file("inverted", index).display().to_string());
        let idx = digit_of(format!("{}[{index}]", test_images.display()));
        let enlarged = digit_of(file("enlarged", index).display().to_string());
        eprintln!(
            "test image {index:>4}: truth {truth}, eval {eval}, predict: png {mnist}, \
             inverted {inverted}, idx {idx}, 100x100 {enlarged}"
        );
        assert_eq!(
            (mnist, inverted, idx),
            (eval, eval, eval),
            "test image {index}"
        );
        if eval == truth {
            enlarged_right += usize::from(enlarged == truth);
        }
    }
    assert_eq!(
        enlarged_right, 7,
        "enlarged digits the model reads right at 28x28"
    );

    let mut drawn_right = [0, 0];
    for digit in 0..10 {
        let light = digit_of(
            work.path()
                .join(format!("drawn-light-{digit}.jpg"))
                .display()
                .to_string(),
        );
        let dark = digit_of(
            work.path()
                .join(format!("drawn-dark-{digit}.png"))
                .display()
                .to_string(),
        );
        eprintln!("drawn {digit}: light JPEG {light}, dark PNG {dark}");
        drawn_right[0] += usize::from(light == digit);
        drawn_right[1] += usize::from(dark == digit);
    }
    assert!(
        drawn_right.iter().all(|&right| right >= 9),
        "drawn digits read right (light, dark): {drawn_right:?} of 10"
    );
}
