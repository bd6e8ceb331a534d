//! What a training run needs in memory, checked against what the machine has before anything
//! is allocated: a model too large for the machine is refused with both figures instead of
//! starting and then swapping or hanging.

use crate::TrainingError;
use crate::config::ExperimentConfig;
use inference::BackendKind;

/// Bytes of one `f32`.
const FLOAT_BYTES: f64 = 4.0;
/// Copies of each parameter training holds: the weights, their gradients, Adam's two moments.
const PARAMETER_COPIES: f64 = 4.0;
/// Floats per hidden unit and time step that one sequence keeps for backward: the four gate
/// activations, the cell and the hidden state, plus as many for their gradients.
const SAVED_FLOATS_PER_UNIT_STEP: f64 = 12.0;

/// What a training run of a configuration needs, at least.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemoryEstimate {
    /// Trainable parameters of the model.
    pub parameters: f64,
    /// Bytes: every parameter four times over, plus what one training batch and one evaluation
    /// batch keep on the way.
    pub bytes: f64,
}

impl MemoryEstimate {
    /// The estimate for `config`, in floating point so that absurd sizes cannot overflow.
    pub fn of(config: &ExperimentConfig) -> Self {
        let model = &config.model;
        let hidden = model.hidden_size as f64;
        let directions = if model.bidirectional { 2.0 } else { 1.0 };
        let layers = model.num_layers as f64;
        let mut parameters = 0.0;
        let mut input = model.input_size as f64;
        for _ in 0..model.num_layers {
            // Each gate (four in an LSTM, three in a GRU, one in an RNN) with input and recurrent
            // weights and two biases.
            let gates = model.cell.gates() as f64;
            parameters += directions * gates * hidden * (input + hidden + 2.0);
            input = hidden * directions;
        }
        parameters += input * model.num_classes as f64 + model.num_classes as f64;
        // 28 rows, or 784 pixels read one at a time: what backward keeps grows with the steps.
        let steps = config.data.sequence.steps() as f64;
        let units = layers * directions * hidden * steps * SAVED_FLOATS_PER_UNIT_STEP;
        let batch = config.training.batch_size as f64 + config.training.eval_batch_size as f64;
        let bytes = FLOAT_BYTES * (PARAMETER_COPIES * parameters + batch * units);
        Self { parameters, bytes }
    }
}

/// Refuses `config` when its estimate exceeds the memory a CPU backend has available, with
/// both figures. Not checked: a GPU (`backend` wgpu), whose memory is its own and which wgpu
/// does not report, and machines that do not say how much they have (not Linux).
pub fn check_memory(config: &ExperimentConfig, backend: BackendKind) -> Result<(), TrainingError> {
    if backend == BackendKind::Wgpu {
        return Ok(());
    }
    let Some(available) = available_memory_bytes() else {
        return Ok(());
    };
    let needed = MemoryEstimate::of(config);
    if needed.bytes <= available as f64 {
        return Ok(());
    }
    Err(TrainingError::Config {
        origin: "configuration".to_string(),
        message: format!(
            "the model needs about {} to train ({} parameters, each held four times: weights, \
             gradients and Adam's two moments, plus the activations of one training and one \
             evaluation batch) but this machine has {} available: {}",
            human_bytes(needed.bytes),
            human_count(needed.parameters),
            human_bytes(available as f64),
            what_to_lower(config)
        ),
    })
}

/// The fields that shrink the estimate: the sizes, one direction where the model reads two,
/// and rows where the sequence is longer than the 28 rows (backward keeps each step's
/// activations).
fn what_to_lower(config: &ExperimentConfig) -> String {
    let mut advice = vec![
        "lower model.hidden_size, model.num_layers, training.batch_size or \
         training.eval_batch_size"
            .to_string(),
    ];
    if config.model.bidirectional {
        advice.push("read one direction (model.bidirectional = false)".to_string());
    }
    let steps = config.data.sequence.steps();
    let rows = data::SequenceOrder::Rows;
    if steps > rows.steps() {
        advice.push(format!(
            "read the image as {} rows instead of {steps} steps (data.sequence = \"rows\" \
             with model.input_size = {})",
            rows.steps(),
            rows.features()
        ));
    }
    advice.join(", or ")
}

/// Memory a new allocation can take: `MemAvailable` of `/proc/meminfo`, or less where a cgroup
/// (a container) caps this process lower.
fn available_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let available = meminfo_field_bytes(&meminfo, "MemAvailable:")?;
    Some(match cgroup_headroom_bytes() {
        Some(headroom) => available.min(headroom),
        None => available,
    })
}

/// A `Name:   1234 kB` line of `/proc/meminfo`, in bytes.
fn meminfo_field_bytes(meminfo: &str, field: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kib.checked_mul(1024)
}

/// What the cgroup v2 limit leaves, when one is set (`memory.max` is `max` when none is).
fn cgroup_headroom_bytes() -> Option<u64> {
    let read = |name: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{name}")).ok();
    let max: u64 = read("memory.max")?.trim().parse().ok()?;
    let current: u64 = read("memory.current")?.trim().parse().ok()?;
    Some(max.saturating_sub(current))
}

/// `1.5 GiB`, `64.0 TiB`.
fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `52,000`, `4.0 million`, `4.0e12`.
fn human_count(count: f64) -> String {
    if count < 1e6 {
        format!("{count:.0}")
    } else if count < 1e9 {
        format!("{:.1} million", count / 1e6)
    } else {
        format!("{count:.1e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_model_is_small_and_a_million_units_are_terabytes() {
        let default = MemoryEstimate::of(&ExperimentConfig::default());
        // 4*64*(28+64+2) + 64*10 + 10 = 24,714: Burn's layout of the tutorial's model.
        assert_eq!(default.parameters, 24_714.0);
        // Mostly what an evaluation batch of 1,000 keeps: about 90 MB.
        assert!(default.bytes < 256.0 * 1024.0 * 1024.0, "{}", default.bytes);

        let mut huge = ExperimentConfig::default();
        huge.model.hidden_size = 1_000_000;
        let estimate = MemoryEstimate::of(&huge);
        assert!(estimate.parameters > 4e12, "{}", estimate.parameters);
        assert!(estimate.bytes > 64e12, "{}", estimate.bytes);
    }

    #[test]
    fn a_pixel_sequence_keeps_28_times_the_activations_of_rows() {
        let rows = ExperimentConfig::default();
        let mut pixels = rows.clone();
        pixels.data.sequence = data::SequenceOrder::Pixels;
        pixels.model.input_size = 1;
        let activations = |config: &ExperimentConfig| {
            let estimate = MemoryEstimate::of(config);
            estimate.bytes - FLOAT_BYTES * PARAMETER_COPIES * estimate.parameters
        };
        let ratio = activations(&pixels) / activations(&rows);
        assert!((ratio - 28.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn the_advice_names_rows_and_one_direction_only_where_they_help() {
        let rows = ExperimentConfig::default();
        let advice = what_to_lower(&rows);
        assert!(!advice.contains("data.sequence"), "{advice}");
        assert!(!advice.contains("bidirectional"), "{advice}");
        let mut pixels = rows.clone();
        pixels.data.sequence = data::SequenceOrder::Pixels;
        pixels.model.bidirectional = true;
        let advice = what_to_lower(&pixels);
        assert!(advice.contains("data.sequence = \"rows\""), "{advice}");
        assert!(advice.contains("784 steps"), "{advice}");
        assert!(advice.contains("model.bidirectional = false"), "{advice}");
    }

    #[test]
    fn meminfo_and_sizes_read_and_print() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(
            meminfo_field_bytes(meminfo, "MemAvailable:"),
            Some(20_000_000 * 1024)
        );
        assert_eq!(meminfo_field_bytes(meminfo, "SwapFree:"), None);
        assert_eq!(human_bytes(1536.0 * 1024.0 * 1024.0), "1.5 GiB");
        assert_eq!(human_count(24_714.0), "24714");
        assert_eq!(human_count(4.1e12), "4.1e12");
    }
}
