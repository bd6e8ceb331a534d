//! The LSTM sequence on Burn's CubeCL backend (wgpu; it is written for any CubeCL runtime): one
//! kernel launch for the whole recurrence (`kernels.rs`), which computes each step's gates from
//! the bias, the step's inputs and the previous hidden state itself. `weights.rs` packs the fused
//! weight matrix from each gate's parameters, and `loss.rs` is the training loss, a launch each
//! way.
//!
//! Per layer and direction a training step launches, forward, the four packing launches and the
//! recurrent kernel (which writes the outputs and what backward reads); backward,
//! the recurrent kernel (after a transpose of the recurrent weights), the weight gradients as
//! three matmuls and a sum over every step (`autodiff.rs`) and the four unpacking launches.
//! Written in tensor operations (`tensor_ops.rs`) the same work is about fifteen launches per time step
//! forward and more backward.

mod autodiff;
mod kernels;
mod loss;
mod weights;

use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata};
use burn::tensor::{DType, Shape, Slice};
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::{CubeCount, CubeDim};

use super::{Dims, Lengths, LstmCubeOps, LstmCubeSequenceOps, LstmParams, LstmWeightOps, dims};

/// The most batch rows a cube takes on a GPU.
const MAX_ROWS_PER_CUBE: usize = 8;
/// The most batch rows a cube takes on a device that is no card (see [`preferred_rows`]).
const MAX_ROWS_PER_CPU_CUBE: usize = 32;

/// The device a launch is laid out for: its limits and, for a device that is no card (a CPU
/// rasteriser such as lavapipe), the CPU threads its cubes run on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target<'a> {
    hardware: &'a cubecl::ir::HardwareProperties,
    cpu_threads: Option<usize>,
}

impl<'a> Target<'a> {
    /// The device with these properties.
    pub(crate) fn of(properties: &'a cubecl::ir::DeviceProperties) -> Self {
        Self {
            hardware: &properties.hardware,
            // CubeCL reports no physical card for a CPU or a software rasteriser; lavapipe runs
            // cubes on as many threads as the machine has cores.
            cpu_threads: properties.identity.physical.is_none().then(cpu_cores),
        }
    }

    /// A GPU with these limits.
    #[cfg(test)]
    fn gpu(hardware: &'a cubecl::ir::HardwareProperties) -> Self {
        Self {
            hardware,
            cpu_threads: None,
        }
    }
}

/// The machine's cores, asked once: every launch lays itself out with them, and on Linux the
/// answer reads the process's CPU affinity and cgroup quota.
fn cpu_cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES
        .get_or_init(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get))
}

/// How one call is spread over the device: `rows` batch rows per cube, columns in vectors of
/// `vector`, `spread` vector groups of hidden units per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Launch {
    rows: usize,
    /// Values per vector (see `kernels.rs`).
    vector: usize,
    /// Vector groups of hidden units per cube unit.
    spread: usize,
    units: u32,
    cubes: u32,
}

impl Launch {
    /// The forward kernels' layout for `batch` rows of `input` inputs and `hidden` units under
    /// the device's limits, or `None` where a cube cannot have `hidden` units or its shared
    /// memory cannot hold one row's state (the caller then takes the tensor-op path).
    pub(crate) fn new(
        target: Target<'_>,
        batch: usize,
        input: usize,
        hidden: usize,
        elem_size: usize,
    ) -> Option<Self> {
        // The kernel reads the inputs in the same vectors as everything else.
        let vector = largest_power_of_two_dividing(input, widest_vector(target.hardware, hidden));
        Self::with_spread(target, batch, hidden, vector, elem_size, FORWARD_SPREAD)
    }

    /// The backward kernel's layout: its recurrent product sums over four times the columns of
    /// the forward one's, so its units take more hidden units each (measured on lavapipe: 8 a
    /// unit trained faster than 4).
    fn backward(target: Target<'_>, batch: usize, hidden: usize, elem_size: usize) -> Option<Self> {
        let vector = widest_vector(target.hardware, hidden);
        Self::with_spread(target, batch, hidden, vector, elem_size, BACKWARD_SPREAD)
    }

    fn with_spread(
        target: Target<'_>,
        batch: usize,
        hidden: usize,
        vector: usize,
        elem_size: usize,
        max_hidden_per_unit: usize,
    ) -> Option<Self> {
        let hardware = target.hardware;
        let groups = hidden / vector;
        let spread = largest_power_of_two_dividing(groups, (max_hidden_per_unit / vector).max(1));
        let units = groups / spread;
        let unit_limit =
            (hardware.max_units_per_cube as usize).min(hardware.max_cube_dim.0 as usize);
        // The forward pass's double-buffered hidden state, the backward pass's gate gradients.
        let shared_bytes = |rows: usize| rows * 4 * hidden * elem_size;
        let mut rows = preferred_rows(batch, target.cpu_threads);
        while rows > 1 && shared_bytes(rows) > hardware.max_shared_memory_size {
            rows /= 2;
        }
        if units == 0 || units > unit_limit || shared_bytes(rows) > hardware.max_shared_memory_size
        {
            return None;
        }
        let cubes = u32::try_from(batch.div_ceil(rows).max(1)).ok()?;
        (cubes <= hardware.max_cube_count.0).then_some(Self {
            rows,
            vector,
            spread,
            units: units as u32,
            cubes,
        })
    }

    /// Hidden units per cube unit.
    #[cfg(test)]
    fn hidden_per_unit(&self) -> usize {
        self.vector * self.spread
    }

    fn cube_count(&self) -> CubeCount {
        CubeCount::Static(self.cubes, 1, 1)
    }

    fn cube_dim(&self) -> CubeDim {
        CubeDim::new_1d(self.units)
    }
}

/// The widest vector, up to [`MAX_VECTOR`] and the device's widest, that divides `hidden`.
fn widest_vector(hardware: &cubecl::ir::HardwareProperties, hidden: usize) -> usize {
    largest_power_of_two_dividing(hidden, MAX_VECTOR.min(hardware.max_vector_size))
}

/// Batch rows per cube: each recurrent weight a unit reads serves every row of its cube. On a
/// GPU up to [`MAX_ROWS_PER_CUBE`], so that a batch spreads over many cubes (a step's few
/// products per cube are cheap beside a launch). On a device that is no card a cube is one CPU
/// thread's work and every load costs each of its lanes, so there as few cubes as keep every
/// thread busy, up to [`MAX_ROWS_PER_CPU_CUBE`] rows each (measured on lavapipe: docs/gpu.md).
fn preferred_rows(batch: usize, cpu_threads: Option<usize>) -> usize {
    let most = cpu_threads.map_or(MAX_ROWS_PER_CUBE, |threads| {
        batch
            .div_ceil(threads.max(1))
            .next_power_of_two()
            .clamp(MAX_ROWS_PER_CUBE, MAX_ROWS_PER_CPU_CUBE)
    });
    batch.next_power_of_two().clamp(1, most)
}

/// Hidden units per unit of the forward kernel, at most: each weight vector a unit reads serves
/// `rows` rows, each shared hidden vector `4 spread` weight vectors (see docs/gpu.md for what
/// was measured).
const FORWARD_SPREAD: usize = 4;
/// Hidden units per unit of the backward kernel, at most.
const BACKWARD_SPREAD: usize = 8;
/// Values per vector, at most (and at most the device's widest).
const MAX_VECTOR: usize = 4;

/// The largest power of two up to `max` that divides `n`.
fn largest_power_of_two_dividing(n: usize, max: usize) -> usize {
    (0..=max.max(1).ilog2())
        .rev()
        .map(|power| 1 << power)
        .find(|size| n.is_multiple_of(*size))
        .unwrap_or(1)
}

/// Whether the kernel takes sequences of `hidden` units on this device (the input size only
/// narrows the vectors).
pub(crate) fn fits(target: Target<'_>, hidden: usize) -> bool {
    Launch::new(target, 1, hidden, hidden, std::mem::size_of::<f32>()).is_some()
}

/// A call's operands on the device, ready for a kernel.
struct Call {
    dims: Dims,
    dtype: DType,
    launch: Launch,
    /// `[batch, steps, input]`, contiguous.
    inputs: CubeTensor,
    /// The fused weights, `[input + 1 + hidden, 4 hidden]`, contiguous.
    weights: CubeTensor,
    /// The initial state `[batch, 2, hidden]`, contiguous, where the call has one (else a
    /// tensor the kernels do not read).
    initial: CubeTensor,
    has_initial: bool,
    /// Each row's valid steps, `[batch]` u32.
    lengths: CubeTensor,
    /// Whether the call gave lengths (else every row is read whole).
    has_lengths: bool,
    reverse: bool,
    last_only: bool,
}

/// `tensor[start..end]` along `dim`, every index of the other dimensions, on any backend.
fn narrow<B: Backend>(
    tensor: FloatTensor<B>,
    dim: usize,
    start: usize,
    end: usize,
) -> FloatTensor<B> {
    let slices: Vec<Slice> = (0..tensor.shape().num_dims())
        .map(|d| {
            if d == dim {
                Slice::new(start as isize, Some(end as isize), 1)
            } else {
                Slice::new(0, None, 1)
            }
        })
        .collect();
    B::float_slice(tensor, &slices)
}

/// A new contiguous tensor of `shape` with `like`'s dtype, on its device (the kernels index
/// their outputs as contiguous, which `client.empty_tensor` need not give).
fn empty_like(like: &CubeTensor, shape: impl Into<Shape>) -> CubeTensor {
    let shape = shape.into();
    let buffer = like.client.empty(shape.num_elements() * like.dtype.size());
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        shape,
        buffer,
        like.dtype,
    )
}

/// Each row's valid steps as a `[batch]` u32 tensor on `like`'s device: `lengths`, or `steps`
/// for every row. A copy to the device, no launch.
fn lengths_on(
    like: &CubeTensor,
    lengths: Option<&Lengths>,
    batch: usize,
    steps: usize,
) -> CubeTensor {
    let values: Vec<u32> = match lengths {
        Some(lengths) => {
            assert!(
                lengths.len() == batch && lengths.iter().all(|l| (1..=steps).contains(l)),
                "lstm_sequence: {batch} lengths in 1..={steps} expected, got {lengths:?}"
            );
            lengths.iter().map(|&length| length as u32).collect()
        }
        None => vec![steps as u32; batch],
    };
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|value| value.to_ne_bytes())
        .collect();
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new([batch]),
        like.client.create_from_slice(&bytes),
        DType::U32,
    )
}

/// What a call asks for besides its inputs and weights (the extension methods' arguments).
struct Options {
    initial: CubeTensor,
    has_initial: bool,
    lengths: Option<Lengths>,
    reverse: bool,
    last_only: bool,
}

impl Call {
    fn new(inputs: CubeTensor, weights: CubeTensor, options: Options) -> Self {
        let dims = dims(&inputs, &weights);
        let Dims {
            batch,
            steps,
            input,
            hidden,
        } = dims;
        let dtype = inputs.dtype;
        let launch = Launch::new(
            Target::of(inputs.client.properties()),
            batch,
            input,
            hidden,
            dtype.size(),
        )
        .unwrap_or_else(|| {
            panic!(
                "lstm_sequence: {hidden} hidden units do not fit this device's shared memory; \
                 kernel::kernel_on should have sent this model to the tensor-op path"
            )
        });
        if options.has_initial {
            assert_eq!(
                options.initial.meta.shape().dims::<3>(),
                [batch, 2, hidden],
                "lstm_sequence: the initial state must be [batch, 2, hidden]"
            );
        }
        let has_lengths = options.lengths.is_some();
        let lengths = lengths_on(&inputs, options.lengths.as_ref(), batch, steps);
        Self {
            dims,
            dtype,
            launch,
            inputs: into_contiguous(inputs),
            weights: into_contiguous(weights),
            initial: into_contiguous(options.initial),
            has_initial: options.has_initial,
            lengths,
            has_lengths,
            reverse: options.reverse,
            last_only: options.last_only,
        }
    }

    /// A new contiguous tensor of the call's dtype on its device.
    fn empty(&self, shape: impl Into<Shape>) -> CubeTensor {
        empty_like(&self.inputs, shape)
    }

    /// The forward kernels' output: every step's hidden state unless `last_only`, then the
    /// final hidden and cell states (`sequence::OutputLayout` on the CPU).
    fn outputs(&self) -> CubeTensor {
        let Dims {
            batch,
            steps,
            hidden,
            ..
        } = self.dims;
        let kept = if self.last_only { 0 } else { steps };
        self.empty([batch * kept + 2 * batch, hidden])
    }
}

impl LstmCubeSequenceOps for CubeBackend {
    fn lstm_cube_sequence(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> FloatTensor<Self> {
        let options = Options {
            initial,
            has_initial,
            lengths,
            reverse,
            last_only,
        };
        let call = Call::new(inputs, weights, options);
        let Dims {
            batch,
            steps,
            input,
            hidden,
        } = call.dims;
        let outputs = call.outputs();
        // SAFETY: every index the kernel reads or writes is within the tensors built here: rows
        // are checked against `batch`, time indices against each row's length (checked in
        // `lengths_on` to be within `steps`), columns and units stay below the widths `dims`
        // checked, and `initial` is read only when `has_initial` (its shape checked).
        unsafe {
            kernels::lstm_forward_infer::launch_unchecked(
                &call.inputs.client,
                call.launch.cube_count(),
                call.launch.cube_dim(),
                call.launch.vector,
                call.inputs.clone().into_tensor_arg(),
                call.weights.clone().into_tensor_arg(),
                call.initial.clone().into_tensor_arg(),
                call.lengths.clone().into_tensor_arg(),
                outputs.clone().into_tensor_arg(),
                batch as u32,
                steps as u32,
                input as u32,
                u32::from(call.reverse),
                call.launch.rows,
                hidden,
                call.launch.vector,
                call.launch.spread,
                !call.last_only,
                call.has_initial,
                call.has_lengths,
                dtype_to_storage_type(call.dtype),
            )
        };
        outputs
    }
}

impl LstmCubeOps for CubeBackend {
    fn lstm_cube_forward(
        inputs: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> (
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
        FloatTensor<Self>,
    ) {
        let options = Options {
            initial,
            has_initial,
            lengths,
            reverse,
            last_only,
        };
        let call = Call::new(inputs, weights, options);
        let Dims {
            batch,
            steps,
            input,
            hidden,
        } = call.dims;
        let outputs = call.outputs();
        let previous = call.empty([batch, steps, hidden]);
        let cells = call.empty([batch, steps, hidden]);
        let gates = call.empty([batch, steps, 4 * hidden]);
        // SAFETY: as for `lstm_forward_infer` above.
        unsafe {
            kernels::lstm_forward_train::launch_unchecked(
                &call.inputs.client,
                call.launch.cube_count(),
                call.launch.cube_dim(),
                call.launch.vector,
                call.inputs.clone().into_tensor_arg(),
                call.weights.clone().into_tensor_arg(),
                call.initial.clone().into_tensor_arg(),
                call.lengths.clone().into_tensor_arg(),
                outputs.clone().into_tensor_arg(),
                previous.clone().into_tensor_arg(),
                cells.clone().into_tensor_arg(),
                gates.clone().into_tensor_arg(),
                batch as u32,
                steps as u32,
                input as u32,
                u32::from(call.reverse),
                call.launch.rows,
                hidden,
                call.launch.vector,
                call.launch.spread,
                !call.last_only,
                call.has_initial,
                call.has_lengths,
                dtype_to_storage_type(call.dtype),
            )
        };
        (outputs, previous, cells, gates)
    }

    fn lstm_cube_backward(
        output_grad: FloatTensor<Self>,
        gates: FloatTensor<Self>,
        cells: FloatTensor<Self>,
        weights: FloatTensor<Self>,
        initial: FloatTensor<Self>,
        has_initial: bool,
        lengths: Option<Lengths>,
        reverse: bool,
        last_only: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let [batch, steps, width] = gates.meta.shape().dims::<3>();
        let hidden = width / 4;
        let input = weights.meta.shape()[0] - 1 - hidden;
        let dtype = gates.dtype;
        let launch = Launch::backward(
            Target::of(gates.client.properties()),
            batch,
            hidden,
            dtype.size(),
        )
        .expect("the forward pass took the kernel, so its backward pass fits too");
        let has_lengths = lengths.is_some();
        let lengths = lengths_on(&gates, lengths.as_ref(), batch, steps);
        let recurrent = narrow::<CubeBackend>(weights, 0, input + 1, input + 1 + hidden);
        let recurrent_t = into_contiguous(CubeBackend::float_transpose(recurrent));
        let output_grad = into_contiguous(output_grad);
        let gates = into_contiguous(gates);
        let cells = into_contiguous(cells);
        let initial = into_contiguous(initial);
        let dz = empty_like(&gates, [batch, steps, width]);
        let initial_grad = empty_like(&gates, [batch, 2, hidden]);
        // SAFETY: as for `lstm_forward_infer` above.
        unsafe {
            kernels::lstm_backward::launch_unchecked(
                &dz.client,
                launch.cube_count(),
                launch.cube_dim(),
                launch.vector,
                output_grad.into_tensor_arg(),
                gates.into_tensor_arg(),
                cells.into_tensor_arg(),
                recurrent_t.into_tensor_arg(),
                initial.into_tensor_arg(),
                lengths.into_tensor_arg(),
                dz.clone().into_tensor_arg(),
                initial_grad.clone().into_tensor_arg(),
                batch as u32,
                steps as u32,
                u32::from(reverse),
                launch.rows,
                hidden,
                launch.vector,
                launch.spread,
                !last_only,
                has_initial,
                has_lengths,
                dtype_to_storage_type(dtype),
            )
        };
        (dz, initial_grad)
    }

    fn lstm_unpack_gate(
        grad: FloatTensor<Self>,
        input: usize,
        gate: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        weights::unpack(grad, input, gate)
    }
}

impl LstmWeightOps for CubeBackend {
    fn lstm_pack_weights(params: LstmParams<Self>) -> FloatTensor<Self> {
        weights::pack([params.input, params.forget, params.output, params.cell])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hardware(shared: usize, units: u32) -> cubecl::ir::HardwareProperties {
        cubecl::ir::HardwareProperties {
            load_width: 128,
            vector_register_count: None,
            plane_size_min: 32,
            plane_size_max: 32,
            max_bindings: 8,
            max_shared_memory_size: shared,
            max_cube_count: (65535, 65535, 65535),
            max_units_per_cube: units,
            max_cube_dim: (units, units, 64),
            num_streaming_multiprocessors: None,
            num_cpu_cores: None,
            last_level_cache_size: None,
            num_tensor_cores: None,
            min_tensor_cores_dim: None,
            max_vector_size: 4,
            cube_mma_reserved_shared_memory: 0,
        }
    }

    #[test]
    fn a_cube_takes_up_to_eight_rows_and_a_unit_per_four_hidden_units() {
        let gpu = hardware(48 * 1024, 1024);
        let launch = Launch::new(Target::gpu(&gpu), 1000, 28, 64, 4).expect("fits");
        assert_eq!((launch.rows, launch.units, launch.cubes), (8, 16, 125));
        let launch = Launch::new(Target::gpu(&gpu), 64, 28, 256, 4).expect("fits");
        assert_eq!((launch.rows, launch.units, launch.cubes), (8, 64, 8));
        let launch = Launch::new(Target::gpu(&gpu), 33, 28, 20, 4).expect("fits");
        assert_eq!((launch.rows, launch.units, launch.cubes), (8, 5, 5));
        assert_eq!(launch.vector, 4);
        // Vectors of 4 where the hidden size allows, of 2 or 1 where not: 4 divides neither 30
        // nor 7; 2 divides 30.
        let spread = |hidden| {
            Launch::new(Target::gpu(&gpu), 8, 28, hidden, 4).map(|l| (l.hidden_per_unit(), l.units))
        };
        assert_eq!(spread(30), Some((2, 15)));
        assert_eq!(spread(7), Some((1, 7)));
        let vector = |hidden| Launch::new(Target::gpu(&gpu), 8, 28, hidden, 4).map(|l| l.vector);
        assert_eq!((vector(30), vector(7)), (Some(2), Some(1)));
        let mut scalar_only = gpu.clone();
        scalar_only.max_vector_size = 1;
        let launch = Launch::new(Target::gpu(&scalar_only), 8, 28, 64, 4).expect("fits");
        assert_eq!(
            (launch.vector, launch.hidden_per_unit(), launch.units),
            (1, 4, 16)
        );
        let backward = Launch::backward(Target::gpu(&gpu), 64, 64, 4).expect("fits");
        assert_eq!(
            (backward.rows, backward.hidden_per_unit(), backward.units),
            (8, 8, 8)
        );
        assert_eq!((backward.vector, backward.spread), (4, 2));
        let backward = Launch::backward(Target::gpu(&gpu), 64, 20, 4).expect("fits");
        assert_eq!((backward.hidden_per_unit(), backward.units), (4, 5));
        let launch = Launch::new(Target::gpu(&gpu), 1, 28, 64, 4).expect("fits");
        assert_eq!((launch.rows, launch.cubes), (1, 1));
        let launch = Launch::new(Target::gpu(&gpu), 3, 28, 64, 4).expect("fits");
        assert_eq!((launch.rows, launch.cubes), (4, 1));
    }

    #[test]
    fn rows_shrink_to_fit_shared_memory_and_what_cannot_fit_is_refused() {
        // 4 * 512 hidden * 4 bytes = 8 KiB a row: 16 KiB takes 2 rows, and 1024 units 1.
        let small = hardware(16 * 1024, 1024);
        let launch = Launch::new(Target::gpu(&small), 1000, 28, 512, 4).expect("fits");
        assert_eq!((launch.rows, launch.cubes), (2, 500));
        let launch = Launch::new(Target::gpu(&small), 1000, 28, 1024, 4).expect("fits");
        assert_eq!((launch.rows, launch.cubes), (1, 1000));
        assert_eq!(Launch::new(Target::gpu(&small), 64, 28, 1100, 4), None);
        assert!(fits(Target::gpu(&small), 512));
        assert!(!fits(Target::gpu(&small), 1100));
        // More hidden units than a cube has units, four to a unit.
        assert!(!fits(Target::gpu(&hardware(1 << 20, 64)), 260));
        assert!(fits(Target::gpu(&hardware(1 << 20, 64)), 256));
    }

    #[test]
    fn the_inputs_narrow_the_vectors() {
        let gpu = hardware(48 * 1024, 1024);
        let launch = Launch::new(Target::gpu(&gpu), 64, 30, 64, 4).expect("fits");
        assert_eq!(
            (launch.vector, launch.hidden_per_unit(), launch.units),
            (2, 4, 16)
        );
        let launch = Launch::new(Target::gpu(&gpu), 64, 27, 64, 4).expect("fits");
        assert_eq!(
            (launch.vector, launch.hidden_per_unit(), launch.units),
            (1, 4, 16)
        );
        // The backward kernel reads no inputs.
        let backward = Launch::backward(Target::gpu(&gpu), 64, 64, 4).expect("fits");
        assert_eq!(backward.vector, 4);
    }

    #[test]
    fn a_cpu_rasteriser_takes_fewer_fatter_cubes() {
        // lavapipe's limits: 32 KiB of shared memory.
        let lavapipe = hardware(32 * 1024, 1024);
        let cpu = |threads| Target {
            hardware: &lavapipe,
            cpu_threads: Some(threads),
        };
        let layout = |target, batch, hidden| {
            Launch::new(target, batch, 28, hidden, 4).map(|l| (l.rows, l.cubes))
        };
        // A cube a thread on 2 threads, up to 32 rows a cube.
        assert_eq!(layout(cpu(2), 64, 64), Some((32, 2)));
        assert_eq!(layout(cpu(2), 1000, 64), Some((32, 32)));
        // Never fewer rows than on a GPU, nor more than the batch.
        assert_eq!(layout(cpu(16), 64, 64), Some((8, 8)));
        assert_eq!(layout(cpu(2), 3, 64), Some((4, 1)));
        // Shared memory still bounds them: 16 rows of 128 hidden units fill 32 KiB.
        assert_eq!(layout(cpu(2), 64, 128), Some((16, 4)));
        assert_eq!(layout(Target::gpu(&lavapipe), 64, 64), Some((8, 8)));
    }
}
