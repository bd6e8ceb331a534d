//! Pictures of a run, as SVG and PNG: the loss and accuracy curves (`loss.*`, `accuracy.*`)
//! and the confusion matrix of an evaluation (`confusion.*`).
//!
//! Drawn with plotters; text is laid out with ab_glyph in DejaVu Sans (embedded from the
//! `dejavu` crate), so nothing depends on the fonts installed on the machine. PNGs are encoded
//! with the `image` crate.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::TrainingError;
use crate::atomic::write_atomically;
use crate::metrics_log::{MetricRow, MetricSplit};
use inference::EvaluationReport;

/// File stem of the loss curves (`loss.svg`, `loss.png`).
pub const LOSS_CURVE: &str = "loss";
/// File stem of the accuracy curves (`accuracy.svg`, `accuracy.png`).
pub const ACCURACY_CURVE: &str = "accuracy";
/// File stem of the confusion matrix image (`confusion.svg`, `confusion.png`).
pub const CONFUSION_IMAGE: &str = "confusion";

/// Width and height of the curves, in pixels.
pub const CURVE_SIZE: (u32, u32) = (1000, 600);
/// Width and height of the confusion matrix, in pixels.
pub const CONFUSION_SIZE: (u32, u32) = (760, 760);

pub(crate) const FONT: &str = "sans-serif";

/// Something drawn the same way on any plotters backend.
pub(crate) trait Figure {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>;
}

pub(crate) fn plot_error(error: impl std::fmt::Display) -> String {
    error.to_string()
}

/// Makes DejaVu Sans the font of every family plotters asks for.
fn register_fonts() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        for family in ["sans-serif", "serif", "monospace"] {
            // The embedded font always parses; were it not to, text would be missing, not the
            // pictures.
            let _ =
                plotters::style::register_font(family, FontStyle::Normal, dejavu::sans::regular())
                    .is_ok();
            let _ = plotters::style::register_font(family, FontStyle::Bold, dejavu::sans::bold())
                .is_ok();
        }
    });
}

/// Writes `figure` to `<dir>/<stem>.svg` and `<dir>/<stem>.png`.
pub(crate) fn write_figure(
    figure: &impl Figure,
    dir: &Path,
    stem: &str,
    size: (u32, u32),
) -> Result<Vec<PathBuf>, TrainingError> {
    register_fonts();
    let failed = |path: &Path| {
        let path = path.display().to_string();
        move |message: String| TrainingError::Plot { path, message }
    };
    // Drawn in memory, then each file replaced at once: a kill never leaves half an image.
    let svg = dir.join(format!("{stem}.svg"));
    let mut svg_text = String::new();
    {
        let root = SVGBackend::with_string(&mut svg_text, size).into_drawing_area();
        figure.draw(&root).map_err(failed(&svg))?;
        root.present().map_err(plot_error).map_err(failed(&svg))?;
    }
    write_atomically(&svg, svg_text.as_bytes())?;
    let png = dir.join(format!("{stem}.png"));
    let mut buffer = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, size).into_drawing_area();
        figure.draw(&root).map_err(failed(&png))?;
        root.present().map_err(plot_error).map_err(failed(&png))?;
    }
    let mut encoded = std::io::Cursor::new(Vec::new());
    image::write_buffer_with_format(
        &mut encoded,
        &buffer,
        size.0,
        size.1,
        image::ExtendedColorType::Rgb8,
        image::ImageFormat::Png,
    )
    .map_err(plot_error)
    .map_err(failed(&png))?;
    write_atomically(&png, encoded.get_ref())?;
    Ok(vec![svg, png])
}

/// One line of a chart.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    width: u32,
    markers: bool,
}

/// Lines over training steps.
struct LineChart {
    title: String,
    legend: SeriesLabelPosition,
    y_label: String,
    y_range: Range<f64>,
    series: Vec<Series>,
}

impl Figure for LineChart {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        root.fill(&WHITE).map_err(plot_error)?;
        let last_step = self
            .series
            .iter()
            .flat_map(|series| series.points.iter().map(|point| point.0))
            .fold(1.0, f64::max);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, 26))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(75)
            .build_cartesian_2d(0.0..last_step * 1.02, self.y_range.clone())
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("training step")
            .x_label_formatter(&|step| format!("{step:.0}"))
            .y_desc(self.y_label.as_str())
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(plot_error)?;
        for series in self.series.iter().filter(|s| !s.points.is_empty()) {
            let style = ShapeStyle::from(&series.color).stroke_width(series.width);
            let legend_style = ShapeStyle::from(&series.color).stroke_width(series.width.max(3));
            let markers = series.markers;
            let color = series.color;
            chart
                .draw_series(LineSeries::new(series.points.iter().copied(), style))
                .map_err(plot_error)?
                .label(series.label.as_str())
                .legend(move |(x, y)| {
                    let line = PathElement::new(vec![(x, y), (x + 24, y)], legend_style);
                    let dot = Circle::new((x + 12, y), if markers { 4 } else { 0 }, color.filled());
                    EmptyElement::at((0, 0)) + line + dot
                });
            if series.markers {
                chart
                    .draw_series(
                        series
                            .points
                            .iter()
                            .map(|&point| Circle::new(point, 5, series.color.filled())),
                    )
                    .map_err(plot_error)?;
            }
        }
        chart
            .configure_series_labels()
            .position(self.legend.clone())
            .margin(12)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(150, 150, 150))
            .label_font((FONT, 16))
            .draw()
            .map_err(plot_error)
    }
}

fn points(
    rows: &[MetricRow],
    split: MetricSplit,
    value: impl Fn(&MetricRow) -> Option<f64>,
) -> Vec<(f64, f64)> {
    rows.iter()
        .filter(|row| row.split == split)
        .filter_map(|row| value(row).map(|v| (row.step as f64, v)))
        .collect()
}

/// The mean of each point and the `window - 1` before it.
fn trailing_mean(points: &[(f64, f64)], window: usize) -> Vec<(f64, f64)> {
    let window = window.max(1);
    (0..points.len())
        .map(|i| {
            let from = (i + 1).saturating_sub(window);
            let values = &points[from..=i];
            let mean = values.iter().map(|p| p.1).sum::<f64>() / values.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

const TRAIN_LIGHT: RGBColor = RGBColor(160, 190, 230);
const TRAIN_DARK: RGBColor = RGBColor(20, 70, 170);
const EVAL: RGBColor = RGBColor(230, 120, 0);
const VALID: RGBColor = RGBColor(200, 20, 40);

/// The four lines of one metric (`loss` or `accuracy`): each training step's batch, their
/// trailing mean over `window` steps (none when `window` is 1), the step probe's rows and the
/// validation split's per epoch.
fn metric_series(
    rows: &[MetricRow],
    metric: &str,
    value: impl Fn(&MetricRow) -> Option<f64>,
    window: usize,
    probe_images: &str,
) -> Vec<Series> {
    let train = points(rows, MetricSplit::Train, &value);
    // Only worth a line of its own when it averages something.
    let smoothed = if window > 1 {
        trailing_mean(&train, window)
    } else {
        Vec::new()
    };
    let line = |label: String, points, color, width, markers| Series {
        label,
        points,
        color,
        width,
        markers,
    };
    vec![
        line(
            format!("train {metric}, each step's batch"),
            train,
            TRAIN_LIGHT,
            1,
            false,
        ),
        line(
            format!("train {metric}, mean of the last {window} steps"),
            smoothed,
            TRAIN_DARK,
            2,
            false,
        ),
        line(
            format!("eval {metric} (the step probe's {probe_images})"),
            points(rows, MetricSplit::Eval, &value),
            EVAL,
            2,
            true,
        ),
        line(
            format!("valid {metric}, per epoch"),
            points(rows, MetricSplit::Valid, &value),
            VALID,
            2,
            true,
        ),
    ]
}

/// The charts of a run's metrics: (file stem, chart). `probe_images` names the images the step
/// probe classified (the validation split's).
fn charts(rows: &[MetricRow], probe_images: &str) -> Vec<(&'static str, LineChart)> {
    let train_steps = rows
        .iter()
        .filter(|r| r.split == MetricSplit::Train)
        .count();
    let window = (train_steps / 40).clamp(1, 50);
    let loss_series = metric_series(rows, "loss", |r| r.loss, window, probe_images);
    let percent = |r: &MetricRow| r.accuracy.map(|v| 100.0 * v);
    let accuracy_series = metric_series(rows, "accuracy", percent, window, probe_images);
    let max_loss = loss_series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| v.is_finite())
        .fold(0.1, f64::max);
    vec![
        (
            LOSS_CURVE,
            LineChart {
                title: "Loss".into(),
                legend: SeriesLabelPosition::UpperRight,
                y_label: "cross-entropy loss".into(),
                y_range: 0.0..max_loss * 1.05,
                series: loss_series,
            },
        ),
        (
            ACCURACY_CURVE,
            LineChart {
                title: "Accuracy".into(),
                legend: SeriesLabelPosition::LowerRight,
                y_label: "accuracy (%)".into(),
                y_range: 0.0..100.0,
                series: accuracy_series,
            },
        ),
    ]
}

/// Draws the loss and accuracy curves of `rows` into `dir` (`loss.svg`, `loss.png`,
/// `accuracy.svg`, `accuracy.png`); returns the files written. `probe_images` names the
/// images of the step probe's rows, e.g. [`data::ValidationSource::images`].
pub fn write_curves(
    rows: &[MetricRow],
    probe_images: &str,
    dir: &Path,
) -> Result<Vec<PathBuf>, TrainingError> {
    let mut written = Vec::new();
    for (stem, chart) in charts(rows, probe_images) {
        written.extend(write_figure(&chart, dir, stem, CURVE_SIZE)?);
    }
    Ok(written)
}

/// A confusion matrix: rows are the truth, columns the prediction.
struct ConfusionFigure<'a> {
    report: &'a EvaluationReport,
}

impl Figure for ConfusionFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let report = self.report;
        let n = report.confusion.len() as i32;
        root.fill(&WHITE).map_err(plot_error)?;
        let title = format!(
            "Confusion matrix: {} test images, {:.2}% right",
            report.count(),
            100.0 * report.accuracy()
        );
        let named = report
            .class_names
            .iter()
            .enumerate()
            .any(|(class, name)| *name != class.to_string());
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(if named { 150 } else { 70 })
            // Integer ranges are inclusive for plotters' discrete coordinates: n segments.
            .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
            .map_err(plot_error)?;
        // Row 0 at the top: class `c` is drawn at height n - 1 - c.
        let row_of = |value: &SegmentValue<i32>| match value {
            SegmentValue::CenterOf(y) if (0..n).contains(y) => report.label((n - 1 - y) as usize),
            _ => String::new(),
        };
        let column_of = |value: &SegmentValue<i32>| match value {
            SegmentValue::CenterOf(x) if (0..n).contains(x) => x.to_string(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n as usize)
            .y_labels(n as usize)
            .x_label_formatter(&column_of)
            .y_label_formatter(&row_of)
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .draw()
            .map_err(plot_error)?;
        for (truth, row) in report.confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            let y = n - 1 - truth as i32;
            for (predicted, &count) in row.iter().enumerate() {
                let x = predicted as i32;
                // The far edge of the last segment is `Last`, not the start of a segment.
                let edge = |v: i32| {
                    if v < n {
                        SegmentValue::Exact(v)
                    } else {
                        SegmentValue::Last
                    }
                };
                // White for none of the row, dark blue for all of it; the square root makes the
                // few mistakes of a good model visible.
                let share = (count as f64 / total).sqrt();
                let shade = |light: f64, dark: f64| (light + share * (dark - light)).round() as u8;
                let fill = RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(edge(x), edge(y)), (edge(x + 1), edge(y + 1))],
                        fill.filled(),
                    )))
                    .map_err(plot_error)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 15))
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        count.to_string(),
                        (SegmentValue::CenterOf(x), SegmentValue::CenterOf(y)),
                        style,
                    )))
                    .map_err(plot_error)?;
            }
        }
        Ok(())
    }
}

/// Draws the confusion matrix of `report` into `dir` (`confusion.svg`, `confusion.png`);
/// returns the files written.
pub fn write_confusion_matrix(
    report: &EvaluationReport,
    dir: &Path,
) -> Result<Vec<PathBuf>, TrainingError> {
    write_figure(
        &ConfusionFigure { report },
        dir,
        CONFUSION_IMAGE,
        CONFUSION_SIZE,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(step: usize, split: MetricSplit, loss: f64, accuracy: f64) -> MetricRow {
        MetricRow {
            step,
            epoch: 1,
            split,
            loss: Some(loss),
            accuracy: Some(accuracy),
            lr: None,
            elapsed_seconds: 0.0,
        }
    }

    /// Each chart has its metric's four lines, in percent for accuracy, the probe's labelled
    /// with the images it read; the mean line is there only when it averages several steps.
    #[test]
    fn the_charts_label_the_probe_and_smooth_only_long_runs() {
        let mut rows: Vec<MetricRow> = (1..=80)
            .map(|step| row(step, MetricSplit::Train, 1.0 / step as f64, 0.5))
            .collect();
        rows.push(row(40, MetricSplit::Eval, 0.3, 0.9));
        rows.push(row(80, MetricSplit::Valid, 0.2, 0.95));
        let drawn = charts(&rows, "held-out training images");
        let (stem, loss) = &drawn[0];
        assert_eq!(*stem, LOSS_CURVE);
        let labels: Vec<&str> = loss.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "train loss, each step's batch",
                "train loss, mean of the last 2 steps",
                "eval loss (the step probe's held-out training images)",
                "valid loss, per epoch",
            ]
        );
        assert_eq!(loss.series[1].points.len(), 80);
        let accuracy = &drawn[1].1;
        assert_eq!(accuracy.series[2].points, [(40.0, 90.0)]);
        assert_eq!(accuracy.series[3].points, [(80.0, 95.0)]);

        let short = charts(&rows[..10], "test images");
        assert!(short[0].1.series[1].points.is_empty());
    }
}
