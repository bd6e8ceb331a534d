//! How a trained classifier read one image, drawn: the class probabilities after each step
//! (`steps.svg`, `steps.png`) and the gates and cell state of its top layer over the steps
//! (`gates.svg`, `gates.png`), from [`model::ReadingTrace`].

use std::path::{Path, PathBuf};

use model::ReadingTrace;
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::TrainingError;
use crate::curves::{FONT, Figure, plot_error, write_figure};

/// File stem of the probabilities-per-step figure.
pub const STEPS_FIGURE: &str = "steps";
/// File stem of the gates figure.
pub const GATES_FIGURE: &str = "gates";
/// Width and height of each figure, in pixels.
pub const READING_SIZE: (u32, u32) = (1000, 600);
/// At most this many columns (steps, averaged in runs) and rows (units, averaged in groups) in a
/// heatmap: 784 steps of 128 units would be 100,352 rectangles a panel in the SVG.
const MAX_COLUMNS: usize = 112;
const MAX_ROWS: usize = 64;

/// Ten distinguishable colours, one per class.
const CLASS_COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Draws `trace` into `dir`: the probabilities after each step and the gates; returns the files
/// written. `class_names` label the classes.
pub fn write_reading_figures(
    trace: &ReadingTrace,
    class_names: &[&str],
    dir: &Path,
) -> Result<Vec<PathBuf>, TrainingError> {
    let mut written = write_figure(
        &StepsFigure { trace, class_names },
        dir,
        STEPS_FIGURE,
        READING_SIZE,
    )?;
    written.extend(write_figure(
        &GatesFigure { trace },
        dir,
        GATES_FIGURE,
        READING_SIZE,
    )?);
    Ok(written)
}

/// The class with the highest probability in `row`.
fn best(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(class, _)| class)
}

/// One line per class over the steps.
struct StepsFigure<'a> {
    trace: &'a ReadingTrace,
    class_names: &'a [&'a str],
}

impl Figure for StepsFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let rows = &self.trace.probabilities;
        let steps = rows.len();
        let answer = rows.last().map_or(0, |row| best(row));
        root.fill(&WHITE).map_err(plot_error)?;
        let name = |class: usize| {
            self.class_names
                .get(class)
                .map_or_else(|| class.to_string(), |name| (*name).to_string())
        };
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "Class probabilities after each of {steps} steps (answer: {})",
                    name(answer)
                ),
                (FONT, 24),
            )
            .margin(20)
            .x_label_area_size(55)
            .y_label_area_size(65)
            .build_cartesian_2d(1.0..steps.max(2) as f64, 0.0..1.0)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("steps read")
            .x_label_formatter(&|step| format!("{step:.0}"))
            .y_desc("probability")
            .label_style((FONT, 16))
            .axis_desc_style((FONT, 18))
            .light_line_style(RGBColor(235, 235, 235))
            .bold_line_style(RGBColor(210, 210, 210))
            .draw()
            .map_err(plot_error)?;
        let classes = rows.first().map_or(0, Vec::len);
        for class in 0..classes {
            let color = CLASS_COLORS[class % CLASS_COLORS.len()];
            let width = if class == answer { 4 } else { 2 };
            let points = rows
                .iter()
                .enumerate()
                .map(|(step, row)| ((step + 1) as f64, f64::from(row[class])));
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(width)))
                .map_err(plot_error)?
                .label(name(class))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .margin(10)
            .background_style(WHITE.mix(0.9))
            .border_style(RGBColor(150, 150, 150))
            .label_font((FONT, 14))
            .draw()
            .map_err(plot_error)
    }
}

/// The gates and the cell state as heatmaps over steps and units, one panel each.
struct GatesFigure<'a> {
    trace: &'a ReadingTrace,
}

impl Figure for GatesFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
        let gates = &self.trace.gates;
        root.fill(&WHITE).map_err(plot_error)?;
        let steps = gates.cell.len();
        let units = gates.cell.first().map_or(0, Vec::len);
        let title = format!(
            "Layer {} (left to right): {units} units over {steps} steps",
            gates.layer + 1
        );
        let (top, body) = root.split_vertically(40);
        top.titled(&title, (FONT, 22)).map_err(plot_error)?;
        let panels = body.split_evenly((4, 1));
        let largest_cell = gates
            .cell
            .iter()
            .flatten()
            .fold(1e-6f32, |most, c| most.max(c.abs()));
        let layers: [(&str, &Vec<Vec<f32>>, Scale); 4] = [
            ("forget gate", &gates.forget_gate, Scale::Unit),
            ("input gate", &gates.input_gate, Scale::Unit),
            ("output gate", &gates.output_gate, Scale::Unit),
            ("cell state", &gates.cell, Scale::Signed(largest_cell)),
        ];
        for (panel, (name, values, scale)) in panels.iter().zip(layers) {
            draw_heatmap(panel, name, values, scale)?;
        }
        Ok(())
    }
}

/// How a value maps to a colour.
#[derive(Clone, Copy)]
enum Scale {
    /// 0 white to 1 dark blue.
    Unit,
    /// `-m` blue, 0 white, `m` red.
    Signed(f32),
}

impl Scale {
    fn color(self, value: f32) -> RGBColor {
        let mix = |from: (f32, f32, f32), to: (f32, f32, f32), t: f32| {
            let t = t.clamp(0.0, 1.0);
            let channel = |a: f32, b: f32| (a + t * (b - a)).round() as u8;
            RGBColor(
                channel(from.0, to.0),
                channel(from.1, to.1),
                channel(from.2, to.2),
            )
        };
        let white = (255.0, 255.0, 255.0);
        match self {
            Scale::Unit => mix(white, (8.0, 48.0, 107.0), value),
            Scale::Signed(most) if value >= 0.0 => mix(white, (178.0, 24.0, 43.0), value / most),
            Scale::Signed(most) => mix(white, (33.0, 102.0, 172.0), -value / most),
        }
    }
}

/// Averages of `values` `[steps][units]` over runs of steps and groups of units, at most
/// [`MAX_COLUMNS`] by [`MAX_ROWS`]: `[column][row]`.
fn binned(values: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let steps = values.len();
    let units = values.first().map_or(0, Vec::len);
    let columns = steps.clamp(1, MAX_COLUMNS);
    let rows = units.clamp(1, MAX_ROWS);
    let range = |index: usize, bins: usize, total: usize| {
        (index * total / bins)..((index + 1) * total / bins).max(index * total / bins + 1)
    };
    (0..columns)
        .map(|column| {
            (0..rows)
                .map(|row| {
                    let (mut sum, mut count) = (0.0f32, 0usize);
                    for step in range(column, columns, steps) {
                        for unit in range(row, rows, units) {
                            sum += values[step][unit];
                            count += 1;
                        }
                    }
                    sum / count.max(1) as f32
                })
                .collect()
        })
        .collect()
}

/// One heatmap: steps left to right, units top to bottom.
fn draw_heatmap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    name: &str,
    values: &[Vec<f32>],
    scale: Scale,
) -> Result<(), String> {
    let cells = binned(values);
    let columns = cells.len();
    let rows = cells.first().map_or(0, Vec::len);
    let mut chart = ChartBuilder::on(area)
        .margin(4)
        .x_label_area_size(0)
        .y_label_area_size(110)
        .build_cartesian_2d(0.0..columns as f64, 0.0..rows as f64)
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(0)
        .y_desc(name)
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(plot_error)?;
    let rectangles = cells
        .iter()
        .enumerate()
        .flat_map(|(column, column_values)| {
            column_values.iter().enumerate().map(move |(row, &value)| {
                let (x, y) = (column as f64, (rows - 1 - row) as f64);
                Rectangle::new([(x, y), (x + 1.0, y + 1.0)], scale.color(value).filled())
            })
        });
    chart.draw_series(rectangles).map_err(plot_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_sequences_are_averaged_into_at_most_112_by_64_cells() {
        let values: Vec<Vec<f32>> = (0..784)
            .map(|step| (0..128).map(|unit| (step * 128 + unit) as f32).collect())
            .collect();
        let cells = binned(&values);
        assert_eq!((cells.len(), cells[0].len()), (112, 64));
        // The first cell averages steps 0..7 and units 0..2.
        let expected: f32 = (0..7)
            .flat_map(|step| (0..2).map(move |unit| (step * 128 + unit) as f32))
            .sum::<f32>()
            / 14.0;
        assert_eq!(cells[0][0], expected);
        let short: Vec<Vec<f32>> = vec![vec![0.5; 3]; 5];
        assert_eq!(binned(&short), vec![vec![0.5; 3]; 5]);
    }
}
