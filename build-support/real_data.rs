// Shared by the build scripts of the crates whose tests read the real data sets
// (`include!`d, so it has no crate of its own). A test that needs the files is marked
// `#[cfg_attr(not(real_mnist), ignore = "...")]`: without them `cargo test` counts it as
// ignored, with its reason, instead of passing it after printing "skipped" to a captured
// stderr.
//
// `real_mnist`: `$MNIST_DIR` holds the four MNIST files (raw or .gz).
// `real_fashion_mnist`: `$FASHION_MNIST_DIR`, else Debian's /usr/share/datasets/fashion-mnist,
// holds the four Fashion-MNIST files.

const DATA_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

fn holds_data_files(dir: &std::path::Path) -> bool {
    DATA_FILES.iter().all(|name| {
        dir.join(name).is_file() || dir.join(format!("{name}.gz")).is_file()
    })
}

/// Watches `dir` (only when it exists: a missing path would rerun the script on every build).
fn watch(dir: &std::path::Path) {
    if dir.exists() {
        println!("cargo:rerun-if-changed={}", dir.display());
    }
}

fn env_dir(name: &str) -> Option<std::path::PathBuf> {
    println!("cargo:rerun-if-env-changed={name}");
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(std::path::PathBuf::from)
}

fn emit_real_data_cfgs() {
    println!("cargo:rustc-check-cfg=cfg(real_mnist)");
    println!("cargo:rustc-check-cfg=cfg(real_fashion_mnist)");
    println!("cargo:rerun-if-changed=build.rs");
    if let Some(dir) = env_dir("MNIST_DIR") {
        watch(&dir);
        if holds_data_files(&dir) {
            println!("cargo:rustc-cfg=real_mnist");
        }
    }
    let fashion =
        env_dir("FASHION_MNIST_DIR").unwrap_or_else(|| DEBIAN_FASHION_MNIST.into());
    watch(&fashion);
    if holds_data_files(&fashion) {
        println!("cargo:rustc-cfg=real_fashion_mnist");
    }
}
