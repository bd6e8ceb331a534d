//! The classifier's weights to and from PyTorch.
//!
//! PyTorch's tutorial model is `nn.LSTM` named `rnn` and `nn.Linear` named `out`; its
//! `state_dict` holds, per layer `k` (and `_reverse` for the right-to-left direction),
//! `rnn.weight_ih_l{k}` `[4H, in]`, `rnn.weight_hh_l{k}` `[4H, H]`, `rnn.bias_ih_l{k}` and
//! `rnn.bias_hh_l{k}` `[4H]`, the four gates stacked in the order input, forget, cell, output;
//! then `out.weight` `[classes, H * directions]` and `out.bias`. A model whose `cell` is `gru`
//! or `rnn` has `nn.GRU` (`[3H, ...]`, gates reset, update, new) or `nn.RNN` (`[H, ...]`) there
//! under the same keys. The recurrent layer keeps PyTorch's layout, so its tensors are copied;
//! the head's `Linear` stores its weight `[in, out]`, transposed here ([`layout`]).
//!
//! Files: `.safetensors` are read and written with the `safetensors` crate (the format
//! burn-store writes); `.pt` / `.pth` files from `torch.save(model.state_dict(), ...)` are read
//! with burn-store's PyTorch reader ([`files`]). burn-store's own stores map tensors to a
//! module's fields one to one (with renaming and transposing adapters); stacking four gates into
//! one tensor is what they lack, so that part is ours.

pub mod files;
pub mod layout;

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use model::{LstmClassifier, LstmClassifierConfig};

pub use files::{read_state_dict, write_safetensors};
pub use layout::{NamedTensor, expected_shapes, from_pytorch, to_pytorch};

/// Why weights could not be exported or imported.
#[derive(Debug, thiserror::Error)]
pub enum InteropError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file is not a state dict this crate can read.
    #[error("{}: {message}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The file's tensors do not fit the configured model.
    #[error("{}: {message}", path.display())]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Which key, and what was expected.
        message: String,
    },
}

/// Writes `classifier`'s weights to `path` as safetensors with PyTorch's names, shapes and gate
/// order; `metadata` goes into the file's header (the model configuration, say).
pub fn export(
    classifier: &LstmClassifier,
    metadata: &[(&str, String)],
    path: &Path,
) -> Result<(), InteropError> {
    write_safetensors(&to_pytorch(classifier), metadata, path)
}

/// Reads a PyTorch state dict of the tutorial's module (`.pt`, `.pth` or `.safetensors`) into
/// the classifier `config` describes, on `device`. Every key must be there with its shape, and
/// no other key.
pub fn import(
    path: &Path,
    config: &LstmClassifierConfig,
    device: &Device,
) -> Result<LstmClassifier, InteropError> {
    let tensors = read_state_dict(path)?;
    from_pytorch(&tensors, config, device).map_err(|message| InteropError::Mismatch {
        path: path.to_path_buf(),
        message,
    })
}
