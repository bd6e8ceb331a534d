//! Says which real data sets this machine has, and whether it has a headless browser, for the
//! tests that need them.

include!("../../build-support/real_data.rs");

/// Debian's `chromium` and `chromium-driver` (what `.ci/run` installs).
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn main() {
    emit_real_data_cfgs();
    // `chromium`: the browser test of serve's page can run (else it is ignored, with why).
    println!("cargo:rustc-check-cfg=cfg(chromium)");
    let present = [CHROMEDRIVER, CHROMIUM]
        .iter()
        .all(|path| std::path::Path::new(path).is_file());
    if present {
        println!("cargo:rerun-if-changed={CHROMEDRIVER}");
        println!("cargo:rerun-if-changed={CHROMIUM}");
        println!("cargo:rustc-cfg=chromium");
    } else {
        // Watching the missing files themselves would rerun this on every build; their
        // directory changes when they are installed.
        println!("cargo:rerun-if-changed=/usr/bin");
    }
}
