//! Says which real data sets this machine has, for the tests that need them.

include!("../../build-support/real_data.rs");

fn main() {
    emit_real_data_cfgs();
}
