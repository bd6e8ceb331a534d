//! A case of `bench/pytorch/rnn_fixtures.py` run through the layer: the interface the example
//! `torch_parity` gives PyTorch checks, and what the fixture tests run.
//!
//! A case is a safetensors file holding an `nn.LSTM` state dict under its own keys, `input`
//! `[B, T, I]` and, optionally, `h0`, `c0` `[L*D, B, H]`, `lengths` `[B]` (int64) and
//! `grad_output` `[B, T, D*H]`; its metadata `config` is a JSON object with `input_size`,
//! `hidden_size`, `num_layers` and `bidirectional`. The results are `output`, `h_n`, `c_n` and,
//! with `grad_output`, the gradients of `sum(output * grad_output)`: `grad.input`, `grad.h0`,
//! `grad.c0` (when given) and `grad.<key>` for every state-dict key.

use std::collections::{BTreeMap, HashMap};

use burn::tensor::{Device, Tensor, TensorData};
use fused_rnn::{Cell, Lstm, LstmConfig, LstmPath, LstmState, PytorchParameter};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// A tensor read from or written to a case: its shape and `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Values {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A case read from its file.
pub struct Case {
    pub config: LstmConfig,
    pub tensors: HashMap<String, Values>,
    pub lengths: Option<Vec<usize>>,
}

/// What a case file, or a file of results, holds.
pub struct File {
    /// Every `f32` tensor by name.
    pub tensors: HashMap<String, Values>,
    /// `lengths`, when there.
    pub lengths: Option<Vec<usize>>,
    /// The metadata's `config`, when there.
    pub config: Option<String>,
}

/// Reads a case (or a file of results) from safetensors bytes.
pub fn read(bytes: &[u8]) -> Result<File, String> {
    let file =
        SafeTensors::deserialize(bytes).map_err(|e| format!("not a safetensors file: {e}"))?;
    let (_, metadata) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("unreadable header: {e}"))?;
    let config = metadata
        .metadata()
        .as_ref()
        .and_then(|entries| entries.get("config").cloned());
    let mut tensors = HashMap::new();
    let mut lengths = None;
    for (name, view) in file.tensors() {
        let shape = view.shape().to_vec();
        match view.dtype() {
            Dtype::F32 => {
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                tensors.insert(name, Values { shape, data });
            }
            Dtype::I64 if name == "lengths" => {
                let values: Result<Vec<usize>, String> = view
                    .data()
                    .chunks_exact(8)
                    .map(|b| {
                        let value = i64::from_le_bytes(b.try_into().expect("8 bytes"));
                        usize::try_from(value).map_err(|_| format!("negative length {value}"))
                    })
                    .collect();
                lengths = Some(values?);
            }
            other => {
                return Err(format!(
                    "{name}: dtype {other:?}, expected F32 (lengths: I64)"
                ));
            }
        }
    }
    Ok(File {
        tensors,
        lengths,
        config,
    })
}

impl Case {
    /// Reads a case from safetensors bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let File {
            tensors,
            lengths,
            config,
        } = read(bytes)?;
        let config = config.ok_or("the metadata has no \"config\"")?;
        let config: serde_json::Value =
            serde_json::from_str(&config).map_err(|e| format!("config is not JSON: {e}"))?;
        let size = |key: &str| {
            config
                .get(key)
                .and_then(serde_json::Value::as_u64)
                .map(|value| value as usize)
                .ok_or(format!("config.{key}: a positive integer expected"))
        };
        let cell = match config.get("cell") {
            None => Cell::Lstm,
            Some(name) => name
                .as_str()
                .ok_or(format!("config.cell: one of {} expected", Cell::allowed()))?
                .parse()
                .map_err(|e| format!("config.cell: {e}"))?,
        };
        let config = LstmConfig::new(size("input_size")?, size("hidden_size")?)
            .with_cell(cell)
            .with_num_layers(size("num_layers")?)
            .with_bidirectional(
                config
                    .get("bidirectional")
                    .and_then(serde_json::Value::as_bool)
                    .ok_or("config.bidirectional: true or false expected")?,
            );
        config.validate().map_err(|e| e.to_string())?;
        Ok(Self {
            config,
            tensors,
            lengths,
        })
    }

    fn tensor<const D: usize>(&self, name: &str, device: &Device) -> Option<Tensor<D>> {
        self.tensors.get(name).map(|values| {
            Tensor::from_data(
                TensorData::new(values.data.clone(), values.shape.clone()),
                device,
            )
        })
    }

    /// The layer with the case's weights on `device`, running the kernel or not.
    fn layer(&self, device: &Device, kernel: bool) -> Result<Lstm, String> {
        self.config
            .clone()
            .with_kernel(kernel)
            .init(device)
            .with_pytorch_parameters(|key, shape| {
                let values = self
                    .tensors
                    .get(key)
                    .ok_or(format!("the case has no {key}"))?;
                if values.shape != shape {
                    return Err(format!(
                        "{key}: shape {:?}, expected {shape:?}",
                        values.shape
                    ));
                }
                Ok(Some(TensorData::new(
                    values.data.clone(),
                    values.shape.clone(),
                )))
            })
    }

    /// The computation the case's layer runs on `device`, the kernel allowed or not.
    #[allow(dead_code)] // the tests ask; the example runs whatever the device has
    pub fn path(&self, device: &Device, kernel: bool) -> Result<LstmPath, String> {
        Ok(self.layer(device, kernel)?.path(device))
    }

    /// Runs the case on `device` (an autodiff one when the case has `grad_output`) and gives the
    /// results by name.
    pub fn run(&self, device: &Device, kernel: bool) -> Result<BTreeMap<String, Values>, String> {
        let lstm = self.layer(device, kernel)?;
        let input: Tensor<3> = self
            .tensor("input", device)
            .ok_or("the case has no input")?;
        let [batch, steps, _] = input.dims();
        if let Some(lengths) = &self.lengths {
            Lstm::check_lengths(lengths, batch, steps)?;
        }
        let grad_output = self.tensor::<3>("grad_output", device);
        // Gradients are asked for (and the device is an autodiff one) only with `grad_output`.
        let tracked = |tensor: Tensor<3>| {
            if grad_output.is_some() {
                tensor.require_grad()
            } else {
                tensor
            }
        };
        let input = tracked(input);
        // A GRU or RNN has no cell state: `h0` alone, and no `c_n`.
        let has_cell = self.config.cell == Cell::Lstm;
        let state = match (
            self.tensor::<3>("h0", device),
            self.tensor::<3>("c0", device),
        ) {
            (Some(hidden), Some(cell)) if has_cell => Some(LstmState {
                hidden: tracked(hidden),
                cell: tracked(cell),
            }),
            (Some(hidden), None) if !has_cell => Some(LstmState {
                cell: hidden.zeros_like(),
                hidden: tracked(hidden),
            }),
            (None, None) => None,
            _ if has_cell => return Err("h0 and c0 come together".into()),
            _ => return Err(format!("a {} has h0 and no c0", self.config.cell)),
        };
        let (output, final_state) =
            lstm.forward(input.clone(), state.clone(), self.lengths.as_deref());
        let mut results = BTreeMap::new();
        results.insert("output".into(), values(output.clone()));
        results.insert("h_n".into(), values(final_state.hidden));
        if has_cell {
            results.insert("c_n".into(), values(final_state.cell));
        }
        let Some(grad_output) = grad_output else {
            return Ok(results);
        };
        let grads = (output * grad_output).sum().backward();
        let mut gradient = |name: &str, grad: Option<Values>| -> Result<(), String> {
            let grad = grad.ok_or(format!("no gradient reached {name}"))?;
            results.insert(format!("grad.{name}"), grad);
            Ok(())
        };
        gradient("input", input.grad(&grads).map(values))?;
        if let Some(state) = &state {
            gradient("h0", state.hidden.grad(&grads).map(values))?;
            if has_cell {
                gradient("c0", state.cell.grad(&grads).map(values))?;
            }
        }
        for parameter in lstm.pytorch_parameters() {
            let grad = match &parameter {
                PytorchParameter::Matrix(_, param) => param.grad(&grads).map(values),
                PytorchParameter::Vector(_, param) => param.grad(&grads).map(values),
            };
            gradient(parameter.key(), grad)?;
        }
        Ok(results)
    }
}

fn values<const D: usize>(tensor: Tensor<D>) -> Values {
    let shape = tensor.dims().to_vec();
    let data = tensor.into_data().iter::<f32>().collect();
    Values { shape, data }
}

/// `results` as safetensors bytes (`f32`, little-endian).
pub fn write(results: &BTreeMap<String, Values>) -> Result<Vec<u8>, String> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = results
        .iter()
        .map(|(name, values)| {
            let bytes = values.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name.clone(), values.shape.clone(), bytes)
        })
        .collect();
    let views: Result<Vec<(String, TensorView<'_>)>, String> = bytes
        .iter()
        .map(|(name, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("{name}: {e}"))
        })
        .collect();
    safetensors::tensor::serialize(views?, None).map_err(|e| e.to_string())
}
