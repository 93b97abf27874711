//! A matmul against constant weights with its epilogue (bias, residual add,
//! GELU) as one operator, computed block by block so that each block's
//! epilogue runs while the block is still in cache.
//!
//! tract runs these as a packing node, its matmul, and a GELU node of its own
//! that streams the whole output through memory again. On the encoder's 1x1
//! convolutions, whose 64 or 128 input channels make short dot products,
//! tract's matmul ran at 23-29 G multiply-adds/s where matrixmultiply (through
//! ndarray) runs the same shapes at 42-71 (docs/PERFORMANCE.md). [`fuse`]
//! finds `x·W` (a two-operand einsum with constant rank-2 weights) and the
//! bias add, residual add and GELU that follow it, and puts this operator in
//! their place.

use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use tract_onnx::prelude::tract_linalg::multithread::{current_tract_executor, par_chunks_mut, Executor};
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, KernelFormat, PaddingSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::{Add, Mul};
use tract_onnx::tract_core::ops::nn::{DataFormat, GeluExact};

use super::gelu::gelu;
use super::{is_unary, with_const};

/// Output bytes one block covers: its epilogue then reads what its matmul
/// just wrote from cache, while each block's repacking of the weights stays
/// small beside its arithmetic (256 KiB and 4 MiB measured slower).
const BLOCK_BYTES: usize = 512 * 1024;

/// Bounds of the bytes of a convolution's patches for one block. Each
/// thread holds one block's patches: up to 8 MiB, the encoder's neck (3x3,
/// 256 channels) took 4.5 MiB per thread, a transient the daemon's peak
/// RSS carried; at 2 MiB the encoder runs at the same speed
/// (docs/PERFORMANCE.md#memory).
const PATCH_BYTES: std::ops::Range<usize> = 1024 * 1024..2 * 1024 * 1024;

/// `act(x·W + bias + residual)`, with `x` seen as an `n x k` matrix and the
/// output as `n x m` (tokens by channels) or `m x n` (channels by pixels).
#[derive(Debug, Clone, PartialEq)]
pub struct Dense {
    /// `[k, m]` or `[m, k]`, as the model holds them; `layout` has the strides.
    weights: Arc<Tensor>,
    /// One value per output channel.
    bias: Option<Arc<Tensor>>,
    /// A second input, of the output's shape, added after the bias.
    residual: bool,
    gelu: bool,
    layout: Layout,
}

// The weights and bias are constants of the model, never NaN.
impl Eq for Dense {}

/// Sizes and element strides of the product, fixed when the op is made.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    m: usize,
    k: usize,
    n: usize,
    /// Strides of `x` along n and k.
    x_n: isize,
    x_k: isize,
    /// Strides of the weights along k and m.
    w_k: isize,
    w_m: isize,
    /// The output is `[m, n]` (rows are channels), not `[n, m]`.
    channels_first: bool,
    output_shape: TVec<usize>,
    /// The output's channel axis.
    m_axis: usize,
    /// For a convolution, how x's patches make the `k x n` matrix.
    patches: Option<Patches>,
}

/// A 2D convolution's input as the columns of a `k x n` matrix (im2col):
/// column `(oy, ox)` holds the input window of output pixel `(oy, ox)`, row
/// `(channel, ky, kx)` one of its values, zero where it falls in the padding.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Patches {
    channels: usize,
    /// The input's height and width.
    input: (usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    /// Padding rows above and columns left of the input.
    padding: (usize, usize),
    /// The output's width.
    output_width: usize,
}

impl Patches {
    /// Writes the columns of output rows `rows` into `matrix` (`k` rows of
    /// `rows.len() x output_width` values).
    fn gather(&self, x: &[f32], rows: std::ops::Range<usize>, matrix: &mut [f32]) {
        let (height, width) = self.input;
        let (kh, kw) = self.kernel;
        let (sy, sx) = self.stride;
        let (py, px) = self.padding;
        let ow = self.output_width;
        let columns = rows.len() * ow;
        for channel in 0..self.channels {
            let plane = &x[channel * height * width..][..height * width];
            for ky in 0..kh {
                for kx in 0..kw {
                    let row = &mut matrix[((channel * kh + ky) * kw + kx) * columns..][..columns];
                    for (oy, out) in rows.clone().zip(row.chunks_exact_mut(ow)) {
                        let iy = (oy * sy + ky).wrapping_sub(py);
                        if iy >= height {
                            out.fill(0.0);
                            continue;
                        }
                        let line = &plane[iy * width..][..width];
                        // Output columns whose input column ox * sx + kx - px is inside.
                        let first = px.saturating_sub(kx).div_ceil(sx).min(ow);
                        let end = (width + px).saturating_sub(kx).div_ceil(sx).clamp(first, ow);
                        out[..first].fill(0.0);
                        out[end..].fill(0.0);
                        let inside = &mut out[first..end];
                        let start = first * sx + kx - px;
                        if sx == 1 {
                            inside.copy_from_slice(&line[start..][..inside.len()]);
                        } else {
                            for (value, source) in inside.iter_mut().zip(line[start..].iter().step_by(sx)) {
                                *value = *source;
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Op for Dense {
    fn name(&self) -> StaticName {
        "Dense".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        let Layout { m, k, n, channels_first, .. } = self.layout;
        let epilogue: Vec<&str> = [(self.bias.is_some(), "bias"), (self.residual, "residual"), (self.gelu, "gelu")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        Ok(vec![format!(
            "m {m} k {k} n {n}, {} first, then {}",
            if channels_first { "channels" } else { "tokens" },
            if epilogue.is_empty() { "nothing".to_string() } else { epilogue.join(", ") }
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for Dense {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let layout = &self.layout;
        let x = inputs[0].try_as_plain_ram()?;
        let x = x.as_slice::<f32>()?;
        let expected = match &layout.patches {
            Some(p) => p.channels * p.input.0 * p.input.1,
            None => layout.n * layout.k,
        };
        ensure!(x.len() == expected, "Dense: input of {} values, expected {expected}", x.len());
        let residual = match self.residual {
            true => Some(inputs[1].try_as_plain_ram()?),
            false => None,
        };
        let residual = residual.as_ref().map(|r| r.as_slice::<f32>()).transpose()?;
        let weights = self.weights.try_as_plain_ram()?;
        let weights = weights.as_slice::<f32>()?;
        let bias = self.bias.as_ref().map(|b| b.try_as_plain_ram()).transpose()?;
        let bias = bias.as_ref().map(|b| b.as_slice::<f32>()).transpose()?;
        let epilogue = Epilogue { bias, residual, gelu: self.gelu };
        // SAFETY: every element is written by the matmul (beta = 0, so
        // matrixmultiply never reads the output) before anything reads it.
        let mut output = unsafe { Tensor::uninitialized::<f32>(&layout.output_shape)? };
        let mut output_ram = output.try_as_plain_ram_mut()?;
        let output_slice = output_ram.as_slice_mut::<f32>()?;
        advise_huge_pages(output_slice);
        ensure!(output_slice.len() == layout.m * layout.n);
        let work = layout.m * layout.k * layout.n;
        if layout.channels_first {
            // Threads take blocks of pixels: split by channels instead, each
            // would pack (or gather the patches of) every pixel.
            let block = self.pixels_per_block();
            let mut starts: Vec<usize> = (0..layout.n).step_by(block).collect();
            let output = OutputPointer(output_slice.as_mut_ptr());
            par_chunks_mut(&mut starts, 1, work, |_, starts| self.channels(x, weights, &output, starts, block, &epilogue))?;
        } else {
            par_chunks_mut(output_slice, layout.m, work, |first, chunk| self.tokens(x, weights, chunk, first, &epilogue))?;
        }
        Ok(tvec!(output.into_tvalue()))
    }
}

/// Asks Linux for 2 MiB pages under an output above glibc's largest mmap
/// threshold (32 MiB), which glibc maps afresh for each run and unmaps after
/// (a one-shot run, or a plan's first: later runs take it from the memory
/// plan's arena, advised whole):
/// layer 0's downsampling product (33.5 MB) then takes 16 page faults
/// instead of 8,192, and 21 ms instead of 26 (docs/PERFORMANCE.md). Only
/// advice: the kernel may have no huge page to give, or the option off.
fn advise_huge_pages(output: &mut [f32]) {
    const HUGE_PAGE: usize = 2 << 20;
    let bytes = std::mem::size_of_val(output);
    if bytes < 32 << 20 {
        return;
    }
    let start = (output.as_ptr() as usize).next_multiple_of(HUGE_PAGE);
    let end = (output.as_ptr() as usize + bytes) & !(HUGE_PAGE - 1);
    // SAFETY: the range lies inside `output`, and MADV_HUGEPAGE changes no
    // content; a refusal only leaves the pages small.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
}

/// The output of a channels-first product, written block by block from
/// several threads, each block its own columns.
struct OutputPointer(*mut f32);

// SAFETY: the threads write disjoint elements (`Dense::channels`).
unsafe impl Sync for OutputPointer {}

/// What follows the matmul, applied to each block.
struct Epilogue<'a> {
    bias: Option<&'a [f32]>,
    residual: Option<&'a [f32]>,
    gelu: bool,
}

impl Epilogue<'_> {
    /// Adds the bias and the residual to `values`, the output elements from
    /// flat index `at` on, all of output channel `channel` if given, else of
    /// channels `0..values.len()`.
    fn add(&self, values: &mut [f32], at: usize, channel: Option<usize>) {
        if let Some(bias) = self.bias {
            match channel {
                Some(c) => values.iter_mut().for_each(|v| *v += bias[c]),
                None => values.iter_mut().zip(bias).for_each(|(v, b)| *v += b),
            }
        }
        if let Some(residual) = self.residual {
            values.iter_mut().zip(&residual[at..]).for_each(|(v, r)| *v += r);
        }
    }

    /// Applies the activation to a whole block at once.
    fn activate(&self, block: &mut [f32]) {
        if self.gelu {
            gelu(block);
        }
    }
}

impl Dense {
    /// Pixels per block of a channels-first product: whole output rows of a
    /// convolution, and enough blocks for every thread to take several.
    fn pixels_per_block(&self) -> usize {
        let Layout { m, k, n, .. } = self.layout;
        let threads = match current_tract_executor() {
            Executor::MultiThread(pool) => pool.current_num_threads(),
            _ => 1,
        };
        let most = if threads > 1 { n.div_ceil(4 * threads) } else { n };
        match &self.layout.patches {
            // Each block repacks the weights, so a block's patches are kept at
            // several times the weights' size.
            Some(p) => {
                let bytes = (4 * 4 * m * k).clamp(PATCH_BYTES.start, PATCH_BYTES.end);
                let lines = (bytes / 4 / (k * p.output_width)).min(most / p.output_width).max(1);
                lines * p.output_width
            }
            None => (BLOCK_BYTES / 4 / m).min(most).max(16).min(n),
        }
    }

    /// The blocks of `block` pixels from each of `starts`, every channel.
    fn channels(&self, x: &[f32], weights: &[f32], output: &OutputPointer, starts: &[usize], block: usize, epilogue: &Epilogue) -> TractResult<()> {
        let Layout { m, k, n, x_n, x_k, w_k, w_m, .. } = self.layout;
        let w = ArrayView2::from_shape((m, k).strides((w_m as usize, w_k as usize)), weights)?;
        let mut patches = vec![0f32; if self.layout.patches.is_some() { k * block } else { 0 }];
        // The block is computed into a buffer of its own, contiguous, so that
        // the activation runs over it in one call before it is copied out.
        let mut buffer = vec![0f32; m * block];
        for &start in starts {
            let width = block.min(n - start);
            let xs = match &self.layout.patches {
                Some(p) => {
                    let line = start / p.output_width;
                    p.gather(x, line..line + width / p.output_width, &mut patches);
                    ArrayView2::from_shape((k, width), &patches[..k * width])?
                }
                None => ArrayView2::from_shape((k, width).strides((x_k as usize, x_n as usize)), &x[start * x_n as usize..])?,
            };
            let mut out = ArrayViewMut2::from_shape((m, width), &mut buffer[..m * width])?;
            general_mat_mul(1.0, &w, &xs, 0.0, &mut out);
            let block = &mut buffer[..m * width];
            for (channel, values) in block.chunks_exact_mut(width).enumerate() {
                epilogue.add(values, channel * n + start, Some(channel));
            }
            epilogue.activate(block);
            for (channel, values) in block.chunks_exact(width).enumerate() {
                // SAFETY: the output holds m x n values, and each block writes
                // only its own pixels' columns of it.
                unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), output.0.add(channel * n + start), width) };
            }
        }
        Ok(())
    }

    /// Tokens from `first` on (`chunk`: their rows of all channels), a block
    /// of tokens at a time.
    fn tokens(&self, x: &[f32], weights: &[f32], chunk: &mut [f32], first: usize, epilogue: &Epilogue) -> TractResult<()> {
        let Layout { m, k, x_n, x_k, w_k, w_m, .. } = self.layout;
        let rows = chunk.len() / m;
        let block = (BLOCK_BYTES / 4 / m).max(16);
        let w = ArrayView2::from_shape((k, m).strides((w_k as usize, w_m as usize)), weights)?;
        for start in (0..rows).step_by(block) {
            let height = block.min(rows - start);
            let xs = ArrayView2::from_shape((height, k).strides((x_n as usize, x_k as usize)), &x[(first + start) * x_n as usize..])?;
            let mut out = ArrayViewMut2::from_shape((height, m), &mut chunk[start * m..][..height * m])?;
            general_mat_mul(1.0, &xs, &w, 0.0, &mut out);
            let block = &mut chunk[start * m..][..height * m];
            for (row, values) in block.chunks_exact_mut(m).enumerate() {
                epilogue.add(values, (first + start + row) * m, None);
            }
            epilogue.activate(block);
        }
        Ok(())
    }
}

impl TypedOp for Dense {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.iter().all(|i| i.datum_type == f32::datum_type()), "Dense takes f32 inputs");
        Ok(tvec!(f32::datum_type().fact(&*self.layout.output_shape)))
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let Layout { m, k, n, .. } = self.layout;
        Ok(tvec!((Cost::FMA(f32::datum_type()), (m * k * n).to_dim())))
    }

    as_op!();
}

/// Replaces every float32 `x·W` of `model` (decluttered), with the bias add,
/// residual add and GELU that follow it, by a [`Dense`]; returns how many.
pub fn fuse(model: &mut TypedModel) -> TractResult<usize> {
    super::rewrite_matches(model, pattern)
}

/// The patch replacing the matmul at node `id` and its epilogue, if it is one.
fn pattern(model: &TypedModel, id: usize) -> TractResult<Option<TypedModelPatch>> {
    let node = model.node(id);
    let product = match einsum_product(model, node)? {
        Some(product) => Some(product),
        None => convolution(model, node)?,
    };
    rule_if_some!((x, weights, mut bias, layout) = product);

    // The epilogue: bias, residual, GELU, each optional, in this order.
    let mut last = node;
    let mut residual = None;
    let mut gelu = false;
    if let Some((next, constant)) = add_after(model, last)?.filter(|(_, other)| bias.is_none() && other.is_const()) {
        let constant = constant.fact.konst.unwrap();
        if is_channel_vector(&constant, layout.m_axis, layout.output_shape.len(), layout.m) {
            bias = Some(Arc::new(constant.into_tensor().into_shape(&[layout.m])?));
            last = next;
        }
    }
    if let Some((next, other)) = add_after(model, last)?.filter(|(_, other)| !other.is_const()) {
        if other.fact.shape.as_concrete() == Some(&*layout.output_shape) && other.fact.datum_type == f32::datum_type() {
            residual = Some(other.outlet);
            last = next;
        }
    }
    if let Some(next) = only_successor(model, last)? {
        if is_unary::<GeluExact>(next) {
            gelu = true;
            last = next;
        }
    }

    // A LayerNorm's affine step just before the product, times gamma plus
    // beta along k, folds into the weights and the bias.
    let (x, weights, bias) = match affine_before(model, x, &layout)? {
        Some((input, gamma, beta)) => {
            let (weights, bias) = fold_affine(&weights, bias.as_deref(), &gamma, &beta, &layout)?;
            (input, weights, Some(bias))
        }
        None => (x, weights, bias),
    };
    let op = Dense { weights, bias, residual: residual.is_some(), gelu, layout };
    let mut patch = TypedModelPatch::new(format!("dense layer at {}", node.name));
    let mut inputs = tvec!(patch.tap_model(model, x)?);
    if let Some(residual) = residual {
        inputs.push(patch.tap_model(model, residual)?);
    }
    let output = patch.wire_node(format!("{}.dense", last.name), op, &inputs)?;
    patch.shunt_outside(model, last.id.into(), output[0])?;
    Ok(Some(patch))
}

/// What a product node gives [`Dense`]: its input, weights, bias and layout.
type Product = (OutletId, Arc<Tensor>, Option<Arc<Tensor>>, Layout);

/// `node` as `x·W`: a float32 two-operand einsum with constant rank-2 weights.
fn einsum_product(model: &TypedModel, node: &TypedNode) -> TractResult<Option<Product>> {
    rule_if_some!(einsum = node.op_as::<EinSum>());
    rule_if!(einsum.q_params.is_none() && node.inputs.len() == 2 && einsum.operating_dt == f32::datum_type());
    let facts = model.node_input_facts(node.id)?;
    rule_if_some!(w_slot = facts.iter().position(|f| f.konst.is_some()));
    let x_slot = 1 - w_slot;
    rule_if!(facts[x_slot].konst.is_none() && facts.iter().all(|f| f.datum_type == f32::datum_type()));
    let weights = facts[w_slot].konst.clone().unwrap();
    rule_if_some!(x_shape = facts[x_slot].shape.as_concrete());
    rule_if_some!(output_shape = model.outlet_fact(node.id.into())?.shape.as_concrete());
    rule_if_some!(layout = layout(einsum, x_slot, x_shape, weights.shape(), output_shape)?);
    Ok(Some((node.inputs[x_slot], weights, None, layout)))
}

/// `node` as a float32 2D convolution (one group, channels first, one image)
/// with constant weights: the weights times the input's patches.
fn convolution(model: &TypedModel, node: &TypedNode) -> TractResult<Option<Product>> {
    rule_if_some!(conv = node.op_as::<Conv>());
    let spec = &conv.pool_spec;
    rule_if!(conv.q_params.is_none() && conv.group == 1 && conv.kernel_fmt == KernelFormat::OIHW);
    rule_if!(matches!(spec.data_format, DataFormat::NCHW | DataFormat::CHW) && spec.kernel_shape.len() == 2);
    rule_if!(spec.dilations.as_ref().is_none_or(|d| d.iter().all(|&d| d == 1)));
    let PaddingSpec::Explicit(before, _) = &spec.padding else { return Ok(None) };
    let facts = model.node_input_facts(node.id)?;
    rule_if!(facts.len() == 3 && facts.iter().all(|f| f.datum_type == f32::datum_type()));
    rule_if_some!(weights = facts[1].konst.clone());
    rule_if_some!(bias = facts[2].konst.clone());
    rule_if_some!(x_shape = facts[0].shape.as_concrete());
    rule_if_some!(output_shape = model.outlet_fact(node.id.into())?.shape.as_concrete());
    let batch = usize::from(spec.data_format == DataFormat::NCHW);
    rule_if!(x_shape.len() == 3 + batch && output_shape.len() == 3 + batch && x_shape[..batch].iter().all(|&d| d == 1));
    let (channels, m) = (x_shape[batch], output_shape[batch]);
    let [kh, kw] = [spec.kernel_shape[0], spec.kernel_shape[1]];
    rule_if!(weights.shape() == [m, channels, kh, kw]);
    let stride = spec.strides.as_ref().map_or((1, 1), |s| (s[0], s[1]));
    let k = channels * kh * kw;
    let n = output_shape[batch + 1] * output_shape[batch + 2];
    // A bias of one value per channel, or a zero scalar for none.
    let bias = match bias.len() {
        1 if bias.cast_to_scalar::<f32>()? == 0.0 => None,
        len if len == m => Some(Arc::new(bias.into_tensor().into_shape(&[m])?)),
        _ => return Ok(None),
    };
    let layout = Layout {
        m,
        k,
        n,
        x_n: 1,
        x_k: n as isize,
        w_k: 1,
        w_m: k as isize,
        channels_first: true,
        output_shape: output_shape.into(),
        m_axis: batch,
        patches: Some(Patches {
            channels,
            input: (x_shape[batch + 1], x_shape[batch + 2]),
            kernel: (kh, kw),
            stride,
            padding: (before[0], before[1]),
            output_width: output_shape[batch + 2],
        }),
    };
    Ok(Some((node.inputs[0], weights, bias, layout)))
}

/// `x` as `input * gamma + beta`, both constants along x's last axis k, and
/// nothing else using the product or the sum: `(input, gamma, beta)`.
fn affine_before(model: &TypedModel, x: OutletId, layout: &Layout) -> TractResult<Option<(OutletId, Arc<Tensor>, Arc<Tensor>)>> {
    rule_if!(layout.patches.is_none() && layout.x_k == 1);
    let sum = model.node(x.node);
    rule_if_some!((beta, scaled) = with_const::<Add>(model, sum)?);
    let scaled = model.node(scaled.node);
    rule_if!(scaled.outputs[0].successors.len() == 1);
    rule_if_some!((gamma, input) = with_const::<Mul>(model, scaled)?);
    let along_k = |t: &Tensor| t.datum_type() == f32::datum_type() && t.len() == layout.k && t.shape().last() == Some(&layout.k);
    rule_if!(along_k(&gamma) && along_k(&beta) && sum.outputs[0].successors.len() == 1);
    Ok(Some((input, gamma, beta)))
}

/// Weights and bias of `(input * gamma + beta)·W + bias`, as `input·W' + bias'`:
/// `W'[k, m] = gamma[k] W[k, m]`, `bias'[m] = bias[m] + Σ beta[k] W[k, m]`.
fn fold_affine(weights: &Tensor, bias: Option<&Tensor>, gamma: &Tensor, beta: &Tensor, layout: &Layout) -> TractResult<(Arc<Tensor>, Arc<Tensor>)> {
    let (gamma, beta) = (gamma.try_as_plain_ram()?, beta.try_as_plain_ram()?);
    let (gamma, beta) = (gamma.as_slice::<f32>()?, beta.as_slice::<f32>()?);
    let mut folded = weights.clone();
    let mut ram = folded.try_as_plain_ram_mut()?;
    let w = ram.as_slice_mut::<f32>()?;
    let mut sums: Vec<f64> = match bias {
        Some(b) => b.try_as_plain_ram()?.as_slice::<f32>()?.iter().map(|&v| v as f64).collect(),
        None => vec![0.0; layout.m],
    };
    for (k, (g, b)) in gamma.iter().zip(beta).enumerate() {
        for (m, sum) in sums.iter_mut().enumerate() {
            let value = &mut w[k * layout.w_k as usize + m * layout.w_m as usize];
            *sum += *b as f64 * *value as f64;
            *value *= g;
        }
    }
    let bias: Vec<f32> = sums.into_iter().map(|v| v as f32).collect();
    Ok((Arc::new(folded), Arc::new(Tensor::from_shape(&[layout.m], &bias)?)))
}

/// The other operand of an `Add` that is `node`'s only successor.
struct Operand {
    outlet: OutletId,
    fact: TypedFact,
}

impl Operand {
    fn is_const(&self) -> bool {
        self.fact.konst.is_some()
    }
}

/// `node`'s only successor if it is an `Add`, with the add's other operand.
fn add_after<'m>(model: &'m TypedModel, node: &TypedNode) -> TractResult<Option<(&'m TypedNode, Operand)>> {
    rule_if_some!(next = only_successor(model, node)?);
    rule_if!(next.op_as::<TypedBinOp>().is_some_and(|op| op.0.is::<Add>()));
    rule_if!(next.inputs.len() == 2 && next.inputs[0] != next.inputs[1]);
    let other = if next.inputs[0].node == node.id { next.inputs[1] } else { next.inputs[0] };
    let fact = model.outlet_fact(other)?.clone();
    Ok(Some((next, Operand { outlet: other, fact })))
}

/// `node`'s only successor, if it has exactly one and is not a model output.
fn only_successor<'m>(model: &'m TypedModel, node: &TypedNode) -> TractResult<Option<&'m TypedNode>> {
    rule_if!(node.outputs.len() == 1 && !model.output_outlets()?.contains(&node.id.into()));
    model.single_succ(node.id)
}

/// `constant` holds one value per output channel, laid out along the
/// output's channel axis `m_axis` (every other axis of size 1).
fn is_channel_vector(constant: &Tensor, m_axis: usize, rank: usize, m: usize) -> bool {
    constant.datum_type() == f32::datum_type()
        && constant.rank() == rank
        && constant.shape().iter().enumerate().all(|(ix, d)| *d == if ix == m_axis { m } else { 1 })
}

/// Strides of a row-major tensor of `shape`.
fn strides(shape: &[usize]) -> TVec<isize> {
    let mut strides: TVec<isize> = tvec![1; shape.len()];
    for ix in (0..shape.len().saturating_sub(1)).rev() {
        strides[ix] = strides[ix + 1] * shape[ix + 1] as isize;
    }
    strides
}

/// The axes of `positions` that have more than one element, merged into one
/// strided axis: its stride, if they are laid out as one.
fn merged_stride(positions: &[usize], shape: &[usize], strides: &[isize]) -> Option<isize> {
    let big: Vec<usize> = positions.iter().copied().filter(|&p| shape[p] > 1).collect();
    for pair in big.windows(2) {
        if strides[pair[0]] != strides[pair[1]] * shape[pair[1]] as isize {
            return None;
        }
    }
    Some(big.last().map_or(1, |&p| strides[p]))
}

/// Pairs of axis positions, sorted by the first, as two lists.
fn in_order(mut pairs: Vec<(usize, usize)>) -> (Vec<usize>, Vec<usize>) {
    pairs.sort();
    pairs.into_iter().unzip()
}

/// How `einsum` maps onto `n x k` times `k x m`, if it does: contracted axes
/// (k) shared by x and the weights and laid out as one in both, one weights
/// axis m kept in the output, and x's other axes (n) kept in order and laid
/// out as one in x and in the output; any other axis has size 1.
fn layout(einsum: &EinSum, x_slot: usize, x_shape: &[usize], w_shape: &[usize], output_shape: &[usize]) -> TractResult<Option<Layout>> {
    let w_slot = 1 - x_slot;
    let mut m = None;
    let mut k = vec![];
    let mut x_n = vec![];
    let mut out_n = vec![];
    for axis in einsum.axes.iter_all_axes() {
        let (xs, ws, outs) = (&axis.inputs[x_slot], &axis.inputs[w_slot], &axis.outputs[0]);
        rule_if!(xs.len() <= 1 && ws.len() <= 1 && outs.len() <= 1);
        match (xs.first(), ws.first(), outs.first()) {
            (Some(&x), Some(&w), None) => k.push((x, w)),
            (None, Some(&w), Some(&o)) => {
                rule_if!(m.is_none());
                m = Some((w, o));
            }
            (Some(&x), None, Some(&o)) => {
                x_n.push(x);
                out_n.push(o);
            }
            (Some(&x), None, None) => rule_if!(x_shape[x] == 1),
            (None, None, Some(&o)) => rule_if!(output_shape[o] == 1),
            _ => return Ok(None),
        }
    }
    rule_if_some!((m_w, m_out) = m);
    rule_if!(!k.is_empty() && w_shape.len() == k.len() + 1);
    // x's n axes must come out in the same order, and the k axes of x and of
    // the weights must be in the same order.
    let (x_n, out_n) = in_order(x_n.into_iter().zip(out_n).collect());
    let (x_k, w_k) = in_order(k);
    rule_if!(out_n.windows(2).all(|p| p[0] < p[1]) && w_k.windows(2).all(|p| p[0] < p[1]));
    let (x_strides, w_strides, out_strides) = (strides(x_shape), strides(w_shape), strides(output_shape));
    rule_if_some!(x_n_stride = merged_stride(&x_n, x_shape, &x_strides));
    rule_if_some!(x_k_stride = merged_stride(&x_k, x_shape, &x_strides));
    rule_if_some!(w_k_stride = merged_stride(&w_k, w_shape, &w_strides));
    rule_if_some!(out_n_stride = merged_stride(&out_n, output_shape, &out_strides));
    let n: usize = x_n.iter().map(|&p| x_shape[p]).product();
    let m = w_shape[m_w];
    let out_m_stride = if m > 1 { out_strides[m_out] } else { 1 };
    // The output must be rows of channels or rows of pixels, each row whole.
    let channels_first = if out_m_stride == 1 && out_n_stride == m as isize {
        false
    } else if out_n_stride == 1 && out_m_stride == n as isize {
        true
    } else {
        return Ok(None);
    };
    Ok(Some(Layout {
        m,
        k: x_k.iter().map(|&p| x_shape[p]).product(),
        n,
        x_n: x_n_stride,
        x_k: x_k_stride,
        w_k: w_k_stride,
        w_m: w_strides[m_w],
        channels_first,
        output_shape: output_shape.into(),
        m_axis: m_out,
        patches: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::prelude::tract_linalg::multithread::{multithread_tract_scope, Executor};
    use tract_onnx::tract_core::ops::cnn::PoolSpec;
    use tract_onnx::tract_core::ops::element_wise::ElementWiseOp;
    use tract_onnx::tract_core::ops::math::{add, mul};

    /// Reproducible values in [-2, 2).
    fn values(shape: &[usize], seed: u64) -> Tensor {
        let values: Vec<f32> = crate::model::ops::test_values(shape.iter().product(), seed).iter().map(|v| v * 2.0).collect();
        Tensor::from_shape(shape, &values).unwrap()
    }

    /// Runs `model` as tract computes it and after [`fuse`], on one thread and
    /// on two, and checks that one [`Dense`] replaced all but its inputs and
    /// that the outputs agree.
    fn check(model: TypedModel, inputs: TVec<Tensor>) {
        let run = |model: &TypedModel| -> Tensor {
            let plan = model.clone().into_runnable().unwrap();
            plan.run(inputs.iter().cloned().map(|t| t.into_tvalue()).collect()).unwrap().remove(0).into_tensor()
        };
        let want = run(&model);
        let mut fused = model.clone();
        assert_eq!(fuse(&mut fused).unwrap(), 1);
        fused = fused.into_compact().unwrap();
        let dense = fused.nodes().iter().filter(|n| n.op_is::<Dense>()).count();
        assert_eq!((dense, fused.nodes().len()), (1, 1 + inputs.len()), "{fused}");
        for threads in [1, 2] {
            let got = multithread_tract_scope(Executor::multithread(threads), || run(&fused));
            assert_eq!(got.shape(), want.shape());
            let (got, want) = (got.try_as_plain_ram().unwrap(), want.try_as_plain_ram().unwrap());
            for (ix, (g, w)) in got.as_slice::<f32>().unwrap().iter().zip(want.as_slice::<f32>().unwrap()).enumerate() {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{threads} thread(s), element {ix}: {g} against {w}");
            }
        }
    }

    #[test]
    fn tokens_times_weights_with_bias_residual_and_gelu() {
        // Enough tokens for more than one block of 8 channels.
        let (n, k, m) = (40_000, 5, 8);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([n, k])).unwrap();
        let residual = model.add_source("residual", f32::fact([n, m])).unwrap();
        let w = model.add_const("w", values(&[k, m], 1)).unwrap();
        let bias = model.add_const("bias", values(&[1, m], 2)).unwrap();
        let product = model.wire_node("product", EinSum::new("nk,km->nm".parse().unwrap(), f32::datum_type()), &[x, w]).unwrap();
        let biased = model.wire_node("biased", add(), &[product[0], bias]).unwrap();
        let summed = model.wire_node("summed", add(), &[residual, biased[0]]).unwrap();
        let out = model.wire_node("gelu", ElementWiseOp(Box::new(GeluExact {}), None), &summed).unwrap();
        model.select_output_outlets(&out).unwrap();
        check(model, tvec!(values(&[n, k], 3), values(&[n, m], 4)));
    }

    #[test]
    fn layer_norm_affine_step_folds_into_the_weights() {
        let (n, k, m) = (300, 6, 5);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([3, n, k])).unwrap();
        let gamma = model.add_const("gamma", values(&[1, 1, k], 14)).unwrap();
        let beta = model.add_const("beta", values(&[1, 1, k], 15)).unwrap();
        let w = model.add_const("w", values(&[k, m], 16)).unwrap();
        let bias = model.add_const("bias", values(&[1, 1, m], 17)).unwrap();
        let scaled = model.wire_node("scaled", mul(), &[gamma, x]).unwrap();
        let shifted = model.wire_node("shifted", add(), &[scaled[0], beta]).unwrap();
        let product = model.wire_node("product", EinSum::new("ank,km->anm".parse().unwrap(), f32::datum_type()), &[shifted[0], w]).unwrap();
        let out = model.wire_node("biased", add(), &[product[0], bias]).unwrap();
        model.select_output_outlets(&out).unwrap();
        check(model, tvec!(values(&[3, n, k], 18)));
    }

    #[test]
    fn weights_times_channels_first_pixels_with_bias() {
        // A 1x1 convolution as tract declutters it, over more than one block.
        let (k, m, h, w) = (3, 4, 2, 35_000);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([1, k, h, w])).unwrap();
        let weights = model.add_const("w", values(&[m, k], 5)).unwrap();
        let bias = model.add_const("bias", values(&[m, 1, 1], 6)).unwrap();
        let product = model.wire_node("product", EinSum::new("NIHW,OI->OHW".parse().unwrap(), f32::datum_type()), &[x, weights]).unwrap();
        let out = model.wire_node("biased", add(), &[product[0], bias]).unwrap();
        model.select_output_outlets(&out).unwrap();
        check(model, tvec!(values(&[1, k, h, w], 7)));
    }

    #[test]
    fn heads_and_head_dims_contracted_as_one_axis() {
        // The attention's output projection: [windows, tokens, heads, head_dim] by [heads, head_dim, channels].
        let (windows, tokens, heads, dim, m) = (3, 7, 2, 4, 6);
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([windows, tokens, heads, dim])).unwrap();
        let w = model.add_const("w", values(&[heads, dim, m], 11)).unwrap();
        let bias = model.add_const("bias", values(&[1, 1, m], 12)).unwrap();
        let product = model.wire_node("product", EinSum::new("ambk,bkn->amn".parse().unwrap(), f32::datum_type()), &[x, w]).unwrap();
        let out = model.wire_node("biased", add(), &[product[0], bias]).unwrap();
        model.select_output_outlets(&out).unwrap();
        check(model, tvec!(values(&[windows, tokens, heads, dim], 13)));
    }

    fn convolution(kernel: (usize, usize), stride: usize, padding: ([usize; 2], [usize; 2]), bias: bool, input: [usize; 4]) {
        let [_, channels, height, width] = input;
        let out_h = (height + padding.0[0] + padding.1[0] - kernel.0) / stride + 1;
        let out_w = (width + padding.0[1] + padding.1[1] - kernel.1) / stride + 1;
        let m = 5;
        let conv = Conv {
            pool_spec: PoolSpec {
                data_format: DataFormat::NCHW,
                kernel_shape: tvec![kernel.0, kernel.1],
                padding: PaddingSpec::Explicit(padding.0.iter().copied().collect(), padding.1.iter().copied().collect()),
                dilations: None,
                strides: Some(tvec![stride, stride]),
                input_channels: channels,
                output_channels: m,
            },
            kernel_fmt: KernelFormat::OIHW,
            group: 1,
            q_params: None,
        };
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact(input)).unwrap();
        let weights = model.add_const("w", values(&[m, channels, kernel.0, kernel.1], 8)).unwrap();
        let bias = match bias {
            true => model.add_const("bias", values(&[m], 9)).unwrap(),
            false => model.add_const("bias", tensor0(0f32)).unwrap(),
        };
        let convolved = model.wire_node("conv", conv, &[x, weights, bias]).unwrap();
        assert_eq!(model.outlet_fact(convolved[0]).unwrap().shape.as_concrete().unwrap(), [1, m, out_h, out_w]);
        let out = model.wire_node("gelu", ElementWiseOp(Box::new(GeluExact {}), None), &convolved).unwrap();
        model.select_output_outlets(&out).unwrap();
        check(model, tvec!(values(&input, 10)));
    }

    #[test]
    fn strided_convolution_with_uneven_padding_bias_and_gelu() {
        convolution((3, 3), 2, ([0, 1], [1, 1]), true, [1, 3, 9, 11]);
    }

    #[test]
    fn convolution_without_bias_over_several_blocks() {
        // 1 MiB of patches holds 1,111 output rows of 8 pixels x 27 values.
        convolution((3, 3), 1, ([1, 1], [1, 1]), false, [1, 3, 2_500, 8]);
    }
}
