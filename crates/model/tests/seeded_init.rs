//! A seed's initial weights. Alone in its test binary: the backend's random generator belongs to
//! the process, and a test drawing beside it on another thread would take some of its numbers.

use burn::tensor::{Device, Tensor};
use model::{LstmClassifier, LstmClassifierConfig};

#[test]
fn a_seed_draws_the_weights_it_drew_before_and_another_seed_others() {
    // On flex, the backend the weights are drawn on.
    let device = Device::flex();
    let config = LstmClassifierConfig::new().with_num_layers(2);
    let logits = |model: &LstmClassifier| -> Vec<f32> {
        let images = Tensor::<3>::ones([2, 28, 28], &device);
        model.forward(images).into_data().iter::<f32>().collect()
    };
    device.seed(42);
    let seeded_then_built = logits(&config.init(&device));
    assert_eq!(logits(&config.init_seeded(42, &device)), seeded_then_built);
    assert_ne!(logits(&config.init_seeded(43, &device)), seeded_then_built);
}
