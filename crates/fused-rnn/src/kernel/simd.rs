//! The LSTM kernel's element-wise arithmetic and its matrix products.
//!
//! The element-wise loops are plain Rust that LLVM vectorises; each has copies compiled for
//! AVX-512 and for AVX2 + FMA, chosen at run time, because the default x86-64 target stops at
//! SSE2. The
//! exponential is a polynomial (Cephes' `expf`, relative error about 1e-7) instead of libm's
//! scalar call, which was a third of the time of the tensor-op path's profile.

/// `ln 2` split so that `n * LN2_HI` is exact for the `n` that occur.
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
/// Adding and subtracting `1.5 * 2^23` rounds an `f32` of magnitude below `2^22` to an integer.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `e^x`, for `x` clamped to the range where the result is a normal `f32`.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = shifted - ROUND_MAGIC;
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // 2^n: `shifted`'s low mantissa bits hold n (its unit is 1), so n + 127 shifted into the
    // exponent field is 2^n, in integer operations that vectorise (a float-to-int cast does
    // not); n is in [-126, 127], so the result is normal.
    p * f32::from_bits(shifted.to_bits().wrapping_add(127) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// Defines `fn` as a dispatcher that runs, once per call, a copy of its body compiled for AVX-512
/// or for AVX2 + FMA where the CPU has them, else the plain one (`#[target_feature]` lets LLVM
/// vectorise the body for that instruction set; the body is inlined into each copy).
macro_rules! multiversion {
    ($(#[$attr:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn generic($($arg: $ty),*) $body

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx512($($arg: $ty),*) {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            #[allow(clippy::too_many_arguments)]
            fn avx2($($arg: $ty),*) {
                generic($($arg),*)
            }

            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx512f") && has!("avx512vl") && has!("fma") {
                    // SAFETY: the CPU has the features `avx512` is compiled for, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if has!("avx2") && has!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            generic($($arg),*)
        }
    };
}

multiversion! {
    /// The forward step's element-wise part for `rows` rows of `4 hidden` gate pre-activations
    /// (`[input | forget | output | cell]`, the cell columns doubled, see `tensor_ops.rs`).
    ///
    /// Turns `gates` into the activations the backward step reads (`i, f, o` and the candidate
    /// `g = 2 sigmoid - 1 = tanh`), and writes the new cell `c = f c_prev + i g` (`c_prev` zero when
    /// `None`), `tanh(c)` and the hidden state `h = o tanh(c)`.
    pub(crate) fn forward_step(
        hidden: usize,
        gates: &mut [f32],
        previous_cell: Option<&[f32]>,
        cell: &mut [f32],
        tanh_cell: &mut [f32],
        output: &mut [f32],
    ) {
        let h = hidden;
        for value in gates.iter_mut() {
            *value = sigmoid(*value);
        }
        for (row, gates) in gates.chunks_exact_mut(4 * h).enumerate() {
            let span = row * h..(row + 1) * h;
            // Every slice cut to `h` up front, so that the loops below carry no bounds checks and
            // vectorise.
            let (ifo, candidate) = gates.split_at_mut(3 * h);
            let candidate = &mut candidate[..h];
            let input = &ifo[..h];
            let forget = &ifo[h..2 * h];
            let out_gate = &ifo[2 * h..3 * h];
            let cell = &mut cell[span.clone()];
            let tanh_cell = &mut tanh_cell[span.clone()];
            let output = &mut output[span.clone()];
            match previous_cell {
                Some(previous) => {
                    let previous = &previous[span];
                    for j in 0..h {
                        let g = 2.0 * candidate[j] - 1.0;
                        candidate[j] = g;
                        cell[j] = forget[j] * previous[j] + input[j] * g;
                    }
                }
                None => {
                    for j in 0..h {
                        let g = 2.0 * candidate[j] - 1.0;
                        candidate[j] = g;
                        cell[j] = input[j] * g;
                    }
                }
            }
            for j in 0..h {
                let t = 2.0 * sigmoid(2.0 * cell[j]) - 1.0;
                tanh_cell[j] = t;
                output[j] = out_gate[j] * t;
            }
        }
    }
}

multiversion! {
    /// The backward step's element-wise part for `rows` rows: from the gradient reaching this step's
    /// hidden state (`output_grad`, from the layer above, plus `recurrent_grad`, from the next step
    /// when there is one) and the cell gradient carried back from the next step (`cell_grad`, updated
    /// in place to the one for the previous step), the gradients of the four gates' pre-activations
    /// (`gate_grads`, `[input | forget | output | cell]` as in the forward pass).
    pub(crate) fn backward_step(
        hidden: usize,
        gates: &[f32],
        previous_cell: Option<&[f32]>,
        tanh_cell: &[f32],
        output_grad: &[f32],
        recurrent_grad: Option<&[f32]>,
        cell_grad: &mut [f32],
        gate_grads: &mut [f32],
    ) {
        let h = hidden;
        let zeros = vec![0.0f32; h];
        for (row, (gates, grads)) in gates
            .chunks_exact(4 * h)
            .zip(gate_grads.chunks_exact_mut(4 * h))
            .enumerate()
        {
            let span = row * h..(row + 1) * h;
            // Every slice cut to `h` up front, so that the loop carries no bounds checks and
            // vectorises; a missing previous cell or recurrent gradient reads as zeros.
            let input = &gates[..h];
            let forget = &gates[h..2 * h];
            let out_gate = &gates[2 * h..3 * h];
            let candidate = &gates[3 * h..4 * h];
            let (d_input, rest) = grads.split_at_mut(h);
            let (d_forget, rest) = rest.split_at_mut(h);
            let (d_out_gate, d_candidate) = rest.split_at_mut(h);
            let d_candidate = &mut d_candidate[..h];
            let tanh_cell = &tanh_cell[span.clone()];
            let output_grad = &output_grad[span.clone()];
            let cell_grad = &mut cell_grad[span.clone()];
            let previous = &previous_cell.map_or(&zeros[..], |p| &p[span.clone()])[..h];
            let recurrent = &recurrent_grad.map_or(&zeros[..], |r| &r[span.clone()])[..h];
            for j in 0..h {
                let dh = output_grad[j] + recurrent[j];
                let c_prev = previous[j];
                let (i, f, o, g, t) = (input[j], forget[j], out_gate[j], candidate[j], tanh_cell[j]);
                let dc = cell_grad[j] + dh * o * (1.0 - t * t);
                d_input[j] = dc * g * i * (1.0 - i);
                d_forget[j] = dc * c_prev * f * (1.0 - f);
                d_out_gate[j] = dh * t * o * (1.0 - o);
                // g = 2 sigmoid(z) - 1 of the doubled pre-activation z: dg/dz = (1 - g^2) / 2.
                d_candidate[j] = dc * i * (1.0 - g * g) * 0.5;
                cell_grad[j] = dc * f;
            }
        }
    }
}

multiversion! {
    /// Column sums of a row-major `[rows, columns]` matrix, added to `sums`.
    pub(crate) fn add_column_sums(
        matrix: &[f32],
        columns: usize,
        sums: &mut [f32],
    ) {
        let sums = &mut sums[..columns];
        for row in matrix.chunks_exact(columns) {
            for (sum, value) in sums.iter_mut().zip(row) {
                *sum += value;
            }
        }
    }
}

/// A matrix view into a slice: element `(r, c)` is `data[r * row_stride + c * column_stride]`,
/// so a transpose is the same slice with the strides swapped.
#[derive(Clone, Copy)]
pub(crate) struct Matrix<'a> {
    data: &'a [f32],
    rows: usize,
    columns: usize,
    row_stride: usize,
    column_stride: usize,
}

impl<'a> Matrix<'a> {
    /// A row-major `[rows, columns]` matrix starting at `data[0]`.
    pub fn row_major(data: &'a [f32], rows: usize, columns: usize) -> Self {
        Self {
            data,
            rows,
            columns,
            row_stride: columns,
            column_stride: 1,
        }
    }

    /// A row-major `[rows, columns]` matrix whose rows are `row_stride` apart.
    pub fn strided(data: &'a [f32], rows: usize, columns: usize, row_stride: usize) -> Self {
        Self {
            data,
            rows,
            columns,
            row_stride,
            column_stride: 1,
        }
    }

    pub fn transpose(self) -> Self {
        Self {
            data: self.data,
            rows: self.columns,
            columns: self.rows,
            row_stride: self.column_stride,
            column_stride: self.row_stride,
        }
    }

    /// Panics unless every element of the view lies inside its slice and both strides fit an
    /// `isize` (what gemm takes), so that gemm reads nothing else.
    fn check(&self, what: &str) {
        let fits = |stride: usize| isize::try_from(stride).is_ok();
        assert!(
            fits(self.row_stride) && fits(self.column_stride),
            "{what}: strides {} and {} do not fit an isize",
            self.row_stride,
            self.column_stride
        );
        if self.rows > 0 && self.columns > 0 {
            let last = (self.rows - 1)
                .checked_mul(self.row_stride)
                .zip((self.columns - 1).checked_mul(self.column_stride))
                .and_then(|(rows, columns)| rows.checked_add(columns));
            assert!(
                last.is_some_and(|last| last < self.data.len()),
                "{what}: a {}x{} view with strides {} and {} reaches past its {} elements",
                self.rows,
                self.columns,
                self.row_stride,
                self.column_stride,
                self.data.len()
            );
        }
    }
}

/// `out = lhs · rhs`, or `out += lhs · rhs` when `accumulate`, for a row-major `out` whose rows
/// are `out_row_stride` apart; one thread (the kernel parallelises over the batch instead).
///
/// # Panics
/// If the shapes disagree, a view reaches past its slice, or the output's rows overlap.
pub(crate) fn matmul(
    out: &mut [f32],
    out_row_stride: usize,
    accumulate: bool,
    lhs: Matrix<'_>,
    rhs: Matrix<'_>,
) {
    assert_eq!(lhs.columns, rhs.rows, "matmul: inner dimensions differ");
    let (m, n, k) = (lhs.rows, rhs.columns, lhs.columns);
    assert!(
        m <= 1 || out_row_stride >= n,
        "matmul: output rows of {n} values {out_row_stride} apart overlap"
    );
    lhs.check("matmul lhs");
    rhs.check("matmul rhs");
    Matrix::strided(out, m, n, out_row_stride).check("matmul out");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for row in out.chunks_mut(out_row_stride).take(m) {
                row[..n].fill(0.0);
            }
        }
        return;
    }
    let stride = |s: usize| s as isize;
    // SAFETY: every element gemm reads or writes lies inside its slice (checked just above), and
    // `out` is borrowed mutably, so it does not alias `lhs` or `rhs`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            stride(out_row_stride),
            accumulate,
            lhs.data.as_ptr(),
            stride(lhs.column_stride),
            stride(lhs.row_stride),
            rhs.data.as_ptr(),
            stride(rhs.column_stride),
            stride(rhs.row_stride),
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_within_float_rounding() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (ours, std) = (exp(x), x.exp());
            assert!(
                ((ours - std) / std).abs() < 3e-7,
                "exp({x}) = {ours}, std says {std}"
            );
        }
    }

    #[test]
    fn sigmoid_saturates_without_nan() {
        assert_eq!(sigmoid(-1000.0), 1.0 / (1.0 + 88f32.exp()));
        assert_eq!(sigmoid(1000.0), 1.0);
        assert!(sigmoid(f32::NAN).is_nan());
    }

    #[test]
    fn matmul_handles_transposed_and_strided_views() {
        // a = [[1, 2, 3], [4, 5, 6]], b = [[1, 0], [0, 1], [1, 1]].
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut out = [0.0; 4];
        matmul(
            &mut out,
            2,
            false,
            Matrix::row_major(&a, 2, 3),
            Matrix::row_major(&b, 3, 2),
        );
        assert_eq!(out, [4.0, 5.0, 10.0, 11.0]);
        // aᵀ a, accumulated onto ones, written with a row stride of 4.
        let mut out = [1.0; 12];
        matmul(
            &mut out,
            4,
            true,
            Matrix::row_major(&a, 2, 3).transpose(),
            Matrix::row_major(&a, 2, 3),
        );
        assert_eq!(
            out,
            [
                18.0, 23.0, 28.0, 1.0, 23.0, 30.0, 37.0, 1.0, 28.0, 37.0, 46.0, 1.0
            ]
        );
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn matmul_refuses_overlapping_output_rows() {
        let a = [1.0; 6];
        let mut out = [0.0; 8];
        matmul(
            &mut out,
            1,
            false,
            Matrix::row_major(&a, 2, 3),
            Matrix::row_major(&a, 3, 2),
        );
    }

    #[test]
    #[should_panic(expected = "reaches past")]
    fn matmul_refuses_a_stride_that_overflows() {
        let a = [1.0; 6];
        let mut out = [0.0; 4];
        let huge = Matrix::strided(&a, 3, 2, usize::MAX / 2);
        matmul(&mut out, 2, false, Matrix::row_major(&a, 2, 3), huge);
    }

    #[test]
    #[should_panic(expected = "matmul rhs")]
    fn matmul_refuses_a_view_past_its_slice() {
        let a = [1.0; 6];
        let mut out = [0.0; 4];
        matmul(
            &mut out,
            2,
            false,
            Matrix::row_major(&a, 2, 3),
            Matrix::row_major(&a[..5], 3, 2),
        );
    }
}
