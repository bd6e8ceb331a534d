//! What the layer's tests and examples share.
#![allow(dead_code)]

pub mod parity;
