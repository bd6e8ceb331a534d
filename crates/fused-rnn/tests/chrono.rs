//! The chrono initialisation: forget biases spread over timescales up to `chrono_steps`, input
//! biases their negatives, `bias_hh`'s two blocks zero, the rest as PyTorch draws it (a GRU's
//! update gate as an LSTM's forget gate); and the configurations that would set the forget gates
//! twice refused.

use burn::tensor::{Device, Tensor};
use fused_rnn::{Cell, LstmConfig};

fn values(tensor: Tensor<1>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

#[test]
fn forget_biases_spread_over_timescales_up_to_the_steps_given() {
    let device = Device::flex();
    let hidden = 8;
    let lstm = LstmConfig::new(1, hidden)
        .with_chrono_steps(784)
        .init(&device);
    let direction = &lstm.directions[0];
    let bias_ih = values(direction.bias_ih.val());
    let bias_hh = values(direction.bias_hh.val());
    for k in 0..hidden {
        let expected = (1.0 + 782.0 * (k as f64 + 0.5) / hidden as f64).ln() as f32;
        assert!((bias_ih[hidden + k] - expected).abs() < 1e-6, "forget {k}");
        assert_eq!(bias_ih[k], -bias_ih[hidden + k], "input {k}");
        assert_eq!((bias_hh[k], bias_hh[hidden + k]), (0.0, 0.0), "bias_hh {k}");
    }
    // The forget gates at rest keep from about 0.97 of the cell a step up to about 0.9987.
    let at_rest = |b: f32| 1.0 / (1.0 + (-b).exp());
    assert!(at_rest(bias_ih[hidden]) > 0.97 && at_rest(bias_ih[2 * hidden - 1]) > 0.998);
    // The candidate and output blocks are PyTorch's draws, within ±1/sqrt(hidden).
    let bound = 1.0 / (hidden as f32).sqrt();
    assert!(bias_ih[2 * hidden..].iter().all(|b| b.abs() <= bound));
    assert!(bias_ih[2 * hidden..].iter().any(|b| *b != 0.0));
}

#[test]
fn chrono_and_a_forget_bias_together_are_refused() {
    let both = LstmConfig::new(1, 8)
        .with_chrono_steps(100)
        .with_forget_bias(1.0);
    let error = both.validate().unwrap_err().to_string();
    assert!(
        error.contains("chrono_steps") && error.contains("forget_bias"),
        "{error}"
    );
    assert!(
        LstmConfig::new(1, 8)
            .with_chrono_steps(1)
            .validate()
            .is_err()
    );
    assert!(
        LstmConfig::new(1, 8)
            .with_chrono_steps(2)
            .validate()
            .is_ok()
    );
}

/// The GRU keeps its state through the update gate `z` (`h = n + z (h_prev - n)`): its bias
/// block (the second of `r, z, n`) gets the forget biases, its `bias_hh` block zero, the reset
/// and candidate blocks PyTorch's draws. A forget bias is an LSTM's alone.
#[test]
fn a_gru_gets_its_update_gate_biased_to_keep() {
    let hidden = 6;
    let gru = LstmConfig::new(1, hidden)
        .with_cell(Cell::Gru)
        .with_chrono_steps(100)
        .init(&Device::flex());
    let direction = &gru.directions[0];
    assert_eq!(direction.weight_ih.dims(), [3 * hidden, 1]);
    let bias_ih = values(direction.bias_ih.val());
    let bias_hh = values(direction.bias_hh.val());
    let bound = 1.0 / (hidden as f32).sqrt();
    for k in 0..hidden {
        let expected = (1.0 + 98.0 * (k as f64 + 0.5) / hidden as f64).ln() as f32;
        assert!((bias_ih[hidden + k] - expected).abs() < 1e-6, "update {k}");
        assert_eq!(bias_hh[hidden + k], 0.0, "bias_hh {k}");
        assert!(bias_ih[k].abs() <= bound && bias_ih[2 * hidden + k].abs() <= bound);
    }
    let error = LstmConfig::new(1, hidden)
        .with_cell(Cell::Gru)
        .with_forget_bias(1.0)
        .validate()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("forget_bias") && error.contains("gru"),
        "{error}"
    );
}
