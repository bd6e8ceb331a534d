//! `LstmClassifier::reading_trace`: the probabilities after each step are those of the model run
//! on that prefix alone, the last are `probabilities`' own, and the gates and cell state are the
//! layer's (the trace's final cell state is `forward`'s `c_n`).

use burn::tensor::{Device, Distribution, Tensor};
use model::LstmClassifierConfig;

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

fn close(actual: &[f32], expected: &[f32], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}");
    for (a, e) in actual.iter().zip(expected) {
        assert!((a - e).abs() < 1e-5, "{what}: {a} against {e}");
    }
}

#[test]
fn each_steps_probabilities_are_those_of_the_prefix_alone() {
    let device = Device::flex();
    let (steps, features, hidden) = (9, 5, 12);
    for bidirectional in [false, true] {
        let classifier = LstmClassifierConfig::new()
            .with_input_size(features)
            .with_hidden_size(hidden)
            .with_num_layers(2)
            .with_bidirectional(bidirectional)
            .init(&device);
        let sequence = Tensor::<3>::random(
            [1, steps, features],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let trace = classifier.reading_trace(sequence.clone());
        assert_eq!(trace.probabilities.len(), steps);
        for (step, row) in trace.probabilities.iter().enumerate() {
            let prefix = sequence.clone().narrow(1, 0, step + 1);
            let expected = values(classifier.probabilities(prefix));
            close(
                row,
                &expected,
                &format!("step {step}, bidirectional {bidirectional}"),
            );
        }
        let gates = &trace.gates;
        assert_eq!(gates.layer, 1);
        for (name, rows) in [
            ("input", &gates.input_gate),
            ("forget", &gates.forget_gate),
            ("output", &gates.output_gate),
        ] {
            assert_eq!((rows.len(), rows[0].len()), (steps, hidden), "{name}");
            assert!(
                rows.iter().flatten().all(|g| *g > 0.0 && *g < 1.0),
                "{name} gate outside (0, 1)"
            );
        }
        // The top layer's left-to-right direction is state index 2 (layer 1, direction 0).
        let (_, state) = classifier.lstm.forward(sequence, None, None);
        let index = if bidirectional { 2 } else { 1 };
        let c_n = values(state.cell.narrow(0, index, 1));
        close(&gates.cell[steps - 1], &c_n, "the last step's cell state");
    }
}
