//! The pieces behind `predict` and `metrics.csv`: MNIST-like framing of any picture, and the CSV
//! round trip.

use training::{MetricRow, MetricSplit, metrics_csv, parse_metrics_csv, prepare_grey};

/// Centre of mass (x, y) and bounding box (width, height) of the ink of a 28x28 digit.
fn mass_and_box(digit: &[u8]) -> ((f64, f64), (usize, usize)) {
    let (mut mass, mut x_sum, mut y_sum) = (0.0, 0.0, 0.0);
    let (mut left, mut right, mut top, mut bottom) = (28, 0, 28, 0);
    for (i, &value) in digit.iter().enumerate() {
        let (x, y) = (i % 28, i / 28);
        if value > 0 {
            left = left.min(x);
            right = right.max(x);
            top = top.min(y);
            bottom = bottom.max(y);
        }
        mass += f64::from(value);
        x_sum += f64::from(value) * x as f64;
        y_sum += f64::from(value) * y as f64;
    }
    (
        (x_sum / mass, y_sum / mass),
        (right - left + 1, bottom - top + 1),
    )
}

#[test]
fn a_28x28_digit_is_kept_as_it_is_and_inverted_when_light() {
    let digit: Vec<u8> = (0..784)
        .map(|i| {
            if (8..20).contains(&(i % 28)) && (5..23).contains(&(i / 28)) {
                200
            } else {
                0
            }
        })
        .collect();
    assert_eq!(prepare_grey(28, 28, &digit).unwrap(), digit);
    let inverted: Vec<u8> = digit.iter().map(|p| 255 - p).collect();
    assert_eq!(prepare_grey(28, 28, &inverted).unwrap(), digit);
}

#[test]
fn a_large_light_picture_is_cropped_scaled_into_20_pixels_and_centred_by_mass() {
    // Dark ink on grey paper, 150x90, a bar in the top left corner.
    let (width, height) = (150usize, 90usize);
    let picture: Vec<u8> = (0..width * height)
        .map(|i| {
            let (x, y) = (i % width, i / width);
            if (10..25).contains(&x) && (5..65).contains(&y) {
                30
            } else {
                210
            }
        })
        .collect();
    let digit = prepare_grey(width as u32, height as u32, &picture).unwrap();
    assert_eq!(digit.len(), 784);
    assert_eq!(digit[0], 0, "the background becomes black");
    assert_eq!(
        digit.iter().copied().max(),
        Some(255),
        "the ink becomes white"
    );
    let ((x, y), (box_width, box_height)) = mass_and_box(&digit);
    assert!(
        (x - 14.0).abs() <= 0.5 && (y - 14.0).abs() <= 0.5,
        "centre of mass {x}, {y}"
    );
    assert_eq!(box_height, 20, "the longer side fills the 20-pixel box");
    assert!(
        (5..=6).contains(&box_width),
        "aspect ratio kept: {box_width}"
    );
}

#[test]
fn a_picture_without_contrast_is_an_error() {
    let grey = vec![128u8; 64 * 48];
    let error = prepare_grey(64, 48, &grey).unwrap_err();
    assert!(error.starts_with("no digit found"), "{error}");
    assert!(prepare_grey(0, 0, &[]).is_err());
    assert!(prepare_grey(10, 10, &[0; 50]).is_err());
}

#[test]
fn metrics_csv_reads_back_what_was_written() {
    let rows = vec![
        MetricRow {
            step: 1,
            epoch: 1,
            split: MetricSplit::Train,
            loss: Some(2.25),
            accuracy: Some(0.125),
            lr: Some(0.01),
            elapsed_seconds: 0.5,
        },
        MetricRow {
            step: 10,
            epoch: 1,
            split: MetricSplit::Valid,
            loss: Some(0.75),
            accuracy: Some(0.875),
            lr: None,
            elapsed_seconds: 3.25,
        },
    ];
    let csv = metrics_csv(&rows);
    assert_eq!(
        csv,
        "step,epoch,split,loss,accuracy,lr,elapsed_s\n\
         1,1,train,2.25,0.125,0.01,0.500\n\
         10,1,valid,0.75,0.875,,3.250\n"
    );
    assert_eq!(parse_metrics_csv(&csv).unwrap(), rows);
    assert!(parse_metrics_csv("step,epoch\n").is_err());
    assert!(
        parse_metrics_csv(&format!(
            "{}1,1,nosplit,,,,0\n",
            "step,epoch,split,loss,accuracy,lr,elapsed_s\n"
        ))
        .unwrap_err()
        .contains("unknown split")
    );
}
