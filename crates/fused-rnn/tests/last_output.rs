//! `Lstm::forward_last` (the classifier's call, which computes only what it depends on) against
//! `Lstm::forward`'s every-step output read at each row's last valid step, with and without an
//! initial state and lengths, through the kernel and in tensor operations, for each cell.

use burn::tensor::{Device, Distribution, Tensor};
use fused_rnn::{Cell, LstmConfig, LstmState};

fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

#[test]
fn the_last_output_is_every_steps_output_at_each_rows_last_step() {
    let device = Device::flex();
    let (batch, steps, input, hidden) = (4, 7, 3, 5);
    let lengths = [7, 2, 5, 1];
    let runs = [
        (Cell::Lstm, true),
        (Cell::Lstm, false),
        (Cell::Gru, true),
        (Cell::Rnn, true),
    ];
    for (cell, kernel) in runs {
        let lstm = LstmConfig::new(input, hidden)
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_kernel(kernel)
            .with_cell(cell)
            .init(&device);
        let x = Tensor::<3>::random(
            [batch, steps, input],
            Distribution::Uniform(-1.0, 1.0),
            &device,
        );
        let state = LstmState {
            hidden: Tensor::random(
                [4, batch, hidden],
                Distribution::Uniform(-0.5, 0.5),
                &device,
            ),
            cell: Tensor::random(
                [4, batch, hidden],
                Distribution::Uniform(-0.5, 0.5),
                &device,
            ),
        };
        for (state, lengths) in [
            (None, None),
            (Some(state.clone()), None),
            (None, Some(&lengths[..])),
            (Some(state), Some(&lengths[..])),
        ] {
            let case = format!(
                "{cell}, kernel {kernel}, state {}, lengths {lengths:?}",
                state.is_some()
            );
            let (every_step, _) = lstm.forward(x.clone(), state.clone(), lengths);
            let every_step = values(every_step);
            let last = values(lstm.forward_last(x.clone(), state, lengths));
            let width = 2 * hidden;
            for row in 0..batch {
                let at = lengths.map_or(steps, |l| l[row]) - 1;
                let expected = &every_step[(row * steps + at) * width..][..width];
                let got = &last[row * width..(row + 1) * width];
                for (e, g) in expected.iter().zip(got) {
                    assert!(
                        (e - g).abs() < 1e-5,
                        "{case}, row {row}: {expected:?} vs {got:?}"
                    );
                }
            }
        }
    }
}
