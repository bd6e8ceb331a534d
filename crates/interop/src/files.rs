//! State dict files: safetensors (read and written with the `safetensors` crate) and PyTorch's
//! `torch.save` files (read with burn-store's PyTorch reader).

use std::collections::HashMap;
use std::path::Path;

use burn::store::pytorch_reader::{DType, PytorchReader};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::InteropError;
use crate::layout::NamedTensor;

/// Pickled classes of a whole `nn.Module` (`torch.save(model, ...)`), which a state dict never
/// names. `torch.save` stores `data.pkl` uncompressed, so the name is in the file's bytes.
const MODULE_PICKLE_MARK: &[u8] = b"torch.nn.modules";

/// How to write what `import` reads.
const SAVE_A_STATE_DICT: &str = "save the weights instead with \
    torch.save(model.state_dict(), \"model.pt\") (or safetensors.torch.save_file(\
    model.state_dict(), \"model.safetensors\"))";

/// Writes `tensors` to `path` as safetensors (`f32`, little-endian), with `metadata` in its
/// header.
pub fn write_safetensors(
    tensors: &[NamedTensor],
    metadata: &[(&str, String)],
    path: &Path,
) -> Result<(), InteropError> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|tensor| {
            tensor
                .values
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect()
        })
        .collect();
    let format_error = |message: String| InteropError::Format {
        path: path.to_path_buf(),
        message,
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(tensor, bytes)| {
            TensorView::new(Dtype::F32, tensor.shape.clone(), bytes)
                .map(|view| (tensor.name.clone(), view))
                .map_err(|error| format_error(format!("{}: {error}", tensor.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = metadata
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    let file = safetensors::tensor::serialize(views, Some(metadata))
        .map_err(|error| format_error(error.to_string()))?;
    std::fs::write(path, file).map_err(|source| InteropError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The tensors of a state dict file, by name: safetensors, or a `torch.save` file (ZIP or
/// legacy pickle). A whole pickled module is refused with how to save a state dict instead;
/// tensors that are not float32 or float64 are refused by name.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, NamedTensor>, InteropError> {
    let bytes = std::fs::read(path).map_err(|source| InteropError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let format_error = |message: String| InteropError::Format {
        path: path.to_path_buf(),
        message,
    };
    if is_safetensors(&bytes) {
        read_safetensors(&bytes).map_err(format_error)
    } else {
        if contains(&bytes, MODULE_PICKLE_MARK) {
            return Err(format_error(format!(
                "this is a whole pickled nn.Module (torch.save(model, ...)), not a state_dict: \
                 {SAVE_A_STATE_DICT}"
            )));
        }
        read_pytorch(path).map_err(format_error)
    }
}

/// A safetensors file starts with its header's length (8 bytes, little-endian) and the header,
/// a JSON object.
fn is_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 8 && bytes[8] == b'{'
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

fn read_safetensors(bytes: &[u8]) -> Result<HashMap<String, NamedTensor>, String> {
    let file = SafeTensors::deserialize(bytes)
        .map_err(|error| format!("not a valid safetensors file: {error}"))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let width = match view.dtype() {
                Dtype::F32 => Ok(4),
                Dtype::F64 => Ok(8),
                other => Err(format!("{other:?}")),
            };
            named(name, view.shape(), width, view.data())
        })
        .collect()
}

fn read_pytorch(path: &Path) -> Result<HashMap<String, NamedTensor>, String> {
    let reader = PytorchReader::new(path)
        .map_err(|error| format!("not a PyTorch state_dict file (torch.save): {error}"))?;
    reader
        .into_tensors()
        .into_iter()
        .map(|(name, tensor)| {
            let bytes = tensor
                .read()
                .map_err(|error| format!("cannot read tensor {name}: {error}"))?;
            let width = match tensor.dtype() {
                DType::F32 => Ok(4),
                DType::F64 => Ok(8),
                other => Err(format!("{other:?}")),
            };
            named(name, tensor.shape(), width, &bytes)
        })
        .collect()
}

/// A tensor of little-endian floats `width` bytes wide (4 or 8), or the name of the element
/// type it has instead, as `f32` values.
fn named(
    name: String,
    shape: &[usize],
    width: Result<usize, String>,
    bytes: &[u8],
) -> Result<(String, NamedTensor), String> {
    let values = match width.map_err(|dtype| unsupported_dtype(&name, &dtype))? {
        4 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        _ => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
    };
    let tensor = NamedTensor {
        name: name.clone(),
        shape: shape.to_vec(),
        values,
    };
    Ok((name, tensor))
}

fn unsupported_dtype(name: &str, dtype: &str) -> String {
    format!(
        "{name} is {dtype}: only float32 and float64 weights are read; convert the model with \
         model.float() before saving its state_dict"
    )
}
