//! The layer's parameters under `nn.LSTM`'s state-dict keys.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};

use crate::lstm::{Lstm, LstmDirection};

/// One parameter of an [`Lstm`] with its `nn.LSTM` state-dict key (`weight_ih_l0`,
/// `bias_hh_l1_reverse`, ...) and PyTorch's shape, which is the parameter's own.
#[derive(Debug)]
pub enum PytorchParameter<'a> {
    /// `weight_ih_l{k}` `[4 hidden, input]` or `weight_hh_l{k}` `[4 hidden, hidden]`.
    Matrix(String, &'a Param<Tensor<2>>),
    /// `bias_ih_l{k}` or `bias_hh_l{k}`, `[4 hidden]`.
    Vector(String, &'a Param<Tensor<1>>),
}

impl PytorchParameter<'_> {
    /// The state-dict key.
    pub fn key(&self) -> &str {
        match self {
            PytorchParameter::Matrix(key, _) | PytorchParameter::Vector(key, _) => key,
        }
    }

    /// The shape, PyTorch's and the parameter's.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            PytorchParameter::Matrix(_, param) => param.dims().to_vec(),
            PytorchParameter::Vector(_, param) => param.dims().to_vec(),
        }
    }
}

/// The key ending of direction `index` of a stack with `directions` per layer: `l0`,
/// `l0_reverse`, `l1`, ...
fn suffix(index: usize, directions: usize) -> String {
    let reverse = if index % directions == 1 {
        "_reverse"
    } else {
        ""
    };
    format!("l{}{reverse}", index / directions)
}

impl Lstm {
    /// Every parameter with its `nn.LSTM` state-dict key, in the state dict's order; the values
    /// are laid out as PyTorch's, so an export is a copy and an import a copy back (see
    /// [`LstmDirection`]'s fields).
    pub fn pytorch_parameters(&self) -> Vec<PytorchParameter<'_>> {
        let directions = self.num_directions();
        self.directions
            .iter()
            .enumerate()
            .flat_map(|(index, direction)| {
                let end = suffix(index, directions);
                let LstmDirection {
                    weight_ih,
                    weight_hh,
                    bias_ih,
                    bias_hh,
                } = direction;
                [
                    PytorchParameter::Matrix(format!("weight_ih_{end}"), weight_ih),
                    PytorchParameter::Matrix(format!("weight_hh_{end}"), weight_hh),
                    PytorchParameter::Vector(format!("bias_ih_{end}"), bias_ih),
                    PytorchParameter::Vector(format!("bias_hh_{end}"), bias_hh),
                ]
            })
            .collect()
    }

    /// The layer with the parameter under each state-dict key replaced by what `value` gives for
    /// it (`None` keeps it), on the parameter's device, still tracked as a parameter.
    ///
    /// # Errors
    /// The first error `value` returns.
    pub fn with_pytorch_parameters<E>(
        mut self,
        mut value: impl FnMut(&str, &[usize]) -> Result<Option<TensorData>, E>,
    ) -> Result<Self, E> {
        let directions = self.num_directions();
        for (index, direction) in self.directions.iter_mut().enumerate() {
            let end = suffix(index, directions);
            replace(
                &mut direction.weight_ih,
                &format!("weight_ih_{end}"),
                &mut value,
            )?;
            replace(
                &mut direction.weight_hh,
                &format!("weight_hh_{end}"),
                &mut value,
            )?;
            replace(
                &mut direction.bias_ih,
                &format!("bias_ih_{end}"),
                &mut value,
            )?;
            replace(
                &mut direction.bias_hh,
                &format!("bias_hh_{end}"),
                &mut value,
            )?;
        }
        Ok(self)
    }
}

/// Replaces `param`'s value with what `value` gives for `key` (keeping its id, its device and
/// whether it requires a gradient); leaves it when `value` gives `None`.
fn replace<const D: usize, E>(
    param: &mut Param<Tensor<D>>,
    key: &str,
    value: &mut impl FnMut(&str, &[usize]) -> Result<Option<TensorData>, E>,
) -> Result<(), E> {
    if let Some(data) = value(key, &param.dims())? {
        let current = param.val();
        let tensor = Tensor::<D>::from_data(data, &current.device())
            .set_require_grad(current.is_require_grad());
        *param = Param::initialized(param.id, tensor);
    }
    Ok(())
}
