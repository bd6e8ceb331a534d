#!/usr/bin/env bash
# `cargo xtask gpu-check` on a GPU machine without cargo or internet access.
#
#   bench/gpu-device.sh pack   # here: the release binaries, stripped and gzipped, and the MNIST
#                              # files into target/device (about 40 MB: copy that folder there)
#   bench/gpu-device.sh run    # there, from the repository root: the table, and the JSON in
#                              # $OUT/gpu-check.json (or target/device/gpu-check.json), with
#                              # the LSTM layer on the pixel-by-pixel MNIST shape
set -euo pipefail
cd "$(dirname "$0")/.."
dir=target/device

case "${1:-}" in
pack)
    cargo build -p cli --release --features wgpu
    cargo build -p xtask --release --target-dir target/xtask
    cargo build -p fused-rnn --release --features flex,wgpu --example layer_speed
    rm -rf "$dir"
    mkdir -p "$dir/mnist"
    strip -o "$dir/mnist-lstm" "${CARGO_TARGET_DIR:-target}/release/mnist-lstm"
    strip -o "$dir/xtask" target/xtask/release/xtask
    strip -o "$dir/layer_speed" "${CARGO_TARGET_DIR:-target}/release/examples/layer_speed"
    gzip -9 "$dir/mnist-lstm" "$dir/xtask" "$dir/layer_speed"
    mnist="${MNIST_DIR:-../shared/data/mnist}"
    cp "$mnist"/train-images-idx3-ubyte.gz "$mnist"/train-labels-idx1-ubyte.gz \
        "$mnist"/t10k-images-idx3-ubyte.gz "$mnist"/t10k-labels-idx1-ubyte.gz "$dir/mnist/"
    du -sh "$dir"
    ;;
run)
    for binary in mnist-lstm xtask layer_speed; do
        gunzip -c "$dir/$binary.gz" >"$dir/$binary"
        chmod +x "$dir/$binary"
    done
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    fi
    "$dir/xtask" gpu-check --binary "$dir/mnist-lstm" --layer-speed "$dir/layer_speed" \
        --data-dir "$dir/mnist" --json "${OUT:-$dir}/gpu-check.json"
    ;;
*)
    echo "usage: $0 pack|run" >&2
    exit 2
    ;;
esac
