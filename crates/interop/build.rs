//! Says whether this machine has the real MNIST files, for the test that checks PyTorch's
//! accuracy on them.

include!("../../build-support/real_data.rs");

fn main() {
    emit_real_data_cfgs();
}
