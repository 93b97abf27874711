//! The float type the image encoder computes in: float32, or float16 on
//! cores with half-precision arithmetic (Armv8.2 FP16: Cortex-A76, A78, ...),
//! where tract's f16 kernels do twice the multiply-adds per instruction.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use anyhow::{bail, Result};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::floats::FloatPrecisionTranslator;
use tract_onnx::tract_core::transform::ModelTransform;

use super::Precision;

/// What the encoder's arithmetic runs in. The weights come from the
/// [`Precision`] variant either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum Compute {
    #[default]
    F32,
    /// float16, but for the nodes [`keeps_f32`] names.
    F16,
}

impl Compute {
    /// Every compute type, by its key.
    pub const KEYS: [&'static str; 2] = ["f32", "f16"];

    /// The text form.
    pub fn key(self) -> &'static str {
        match self {
            Compute::F32 => "f32",
            Compute::F16 => "f16",
        }
    }

    /// The short name of `precision` weights computed in this type, for
    /// file names and table columns: "int8", or "int8-f16" for an f16 encoder.
    pub fn variant_key(self, precision: Precision) -> String {
        match self {
            Compute::F32 => precision.key().to_string(),
            compute => format!("{}-{compute}", precision.key()),
        }
    }

    /// Whether tract computes in this type natively here: its f16 kernels
    /// need an aarch64 core with FP16 (`asimdhp` in /proc/cpuinfo). Elsewhere
    /// f16 is emulated, about 25 times slower than f32 (on x86-64 an encoder
    /// run takes 70 s).
    pub fn is_native(self) -> bool {
        match self {
            Compute::F32 => true,
            Compute::F16 => tract_linalg::has_fp16(),
        }
    }
}

impl FromStr for Compute {
    type Err = String;

    fn from_str(s: &str) -> Result<Compute, String> {
        match s.trim() {
            "f32" => Ok(Compute::F32),
            "f16" => Ok(Compute::F16),
            other => Err(format!("unknown compute {other:?}, expected \"f32\" or \"f16\"")),
        }
    }
}

impl TryFrom<String> for Compute {
    type Error = String;

    fn try_from(s: String) -> Result<Compute, String> {
        s.parse()
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// Node names (as exported) that stay float32 in an f16 encoder, each
/// because a value it computes leaves f16's range (largest 65504):
/// - LayerNorm: its variance squares activations of up to ~2000;
/// - the window attention of `models/window_attention.py`: exp of scores
///   clipped to +-60 (on photos, up to 2e10), its row sums and the product of
///   the unnormalized weights with the values, until the division by the sum.
const KEPT_F32: [&str; 6] =
    ["LayerNormalization", "/attn/Clip", "/attn/Exp", "/attn/MatMul_1", "/attn/ReduceSum", "/attn/Div"];

/// Whether the f16 form of a model keeps `name` in float32.
pub fn keeps_f32(name: &str) -> bool {
    KEPT_F32.iter().any(|kept| name.contains(kept))
}

/// Rewrites a typed float32 model to compute in float16 but for the nodes
/// [`keeps_f32`] names. Its inputs and outputs become f16.
///
/// # Errors
/// An `Exp` node would be translated: its output would overflow f16, so the
/// model is not one this rule was made for.
pub fn to_f16(model: &mut TypedModel) -> Result<()> {
    if let Some(exp) = model.nodes().iter().find(|n| n.op().name() == "Exp" && !keeps_f32(&n.name)) {
        bail!("node {} (Exp) would overflow in f16: the f16 encoder supports the window attention of models/window_attention.py only", exp.name);
    }
    FloatPrecisionTranslator::with_filter(f32::datum_type(), f16::datum_type(), |node| !keeps_f32(&node.name))
        .transform(model)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tract_onnx::tract_core::ops::einsum::EinSum;
    use tract_onnx::tract_core::ops::math;

    /// x [2,8] @ w [8,3], then exp: named as the encoder's attention nodes.
    fn matmul_then_exp(exp_name: &str) -> TypedModel {
        let mut model = TypedModel::default();
        let x = model.add_source("x", f32::fact([2, 8])).unwrap();
        let w: Vec<f32> = (0..24).map(|i| (i as f32 - 12.0) / 16.0).collect();
        let w = model.add_const("w", tensor1(&w).into_shape(&[8, 3]).unwrap()).unwrap();
        let product = model
            .wire_node("/attn/MatMul", EinSum::new("ik,kj->ij".parse().unwrap(), f32::datum_type()), &[x, w])
            .unwrap();
        let exp = model.wire_node(exp_name, math::exp(), &product).unwrap();
        model.select_output_outlets(&exp).unwrap();
        model
    }

    fn dtype_of(model: &TypedModel, name: &str) -> DatumType {
        let node = model.nodes().iter().find(|n| n.name == name).unwrap();
        model.outlet_fact(OutletId::new(node.id, 0)).unwrap().datum_type
    }

    #[test]
    fn matmuls_go_f16_and_the_attention_exp_stays_f32() {
        let mut model = matmul_then_exp("/layers.1/blocks.0/attn/Exp");
        to_f16(&mut model).unwrap();
        assert_eq!(dtype_of(&model, "/attn/MatMul"), f16::datum_type());
        assert_eq!(dtype_of(&model, "/layers.1/blocks.0/attn/Exp"), f32::datum_type());

        let x: Vec<f32> = (0..16).map(|i| i as f32 / 8.0).collect();
        let reference = matmul_then_exp("/layers.1/blocks.0/attn/Exp").into_runnable().unwrap();
        let expected = reference.run(tvec![tensor1(&x).into_shape(&[2, 8]).unwrap().into_tvalue()]).unwrap();
        let x16 = tensor1(&x).into_shape(&[2, 8]).unwrap().cast_to::<f16>().unwrap().into_owned();
        let optimized = model.into_optimized().unwrap();
        if tract_linalg::has_fp16() {
            let kernels: Vec<String> = optimized.nodes().iter().flat_map(|n| n.op().info().unwrap()).collect();
            assert!(kernels.iter().any(|k| k.contains("arm64fp16")), "no FP16 kernel chosen: {kernels:?}");
        }
        let got = optimized.into_runnable().unwrap().run(tvec![x16.into_tvalue()]).unwrap();
        let got = got[0].cast_to::<f32>().unwrap();
        let (got, expected) = (got.to_plain_array_view::<f32>().unwrap(), expected[0].to_plain_array_view::<f32>().unwrap());
        for (g, e) in got.iter().zip(expected.iter()) {
            assert!((g - e).abs() <= 1e-2 * e.abs(), "f16 {g} vs f32 {e}");
        }
    }

    #[test]
    fn variant_keys_name_the_weights_and_an_f16_encoder() {
        assert_eq!(Compute::F32.variant_key(Precision::Int8), "int8");
        assert_eq!(Compute::F16.variant_key(Precision::Int8), "int8-f16");
        assert_eq!(Compute::F16.variant_key(Precision::F32), "f32-f16");
    }

    #[test]
    fn computes_read_back_their_keys() {
        for key in Compute::KEYS {
            assert_eq!(key.parse::<Compute>().unwrap().to_string(), key);
        }
        assert!("half".parse::<Compute>().unwrap_err().contains("\"half\""));
    }

    #[test]
    fn an_exp_outside_the_window_attention_is_refused() {
        let err = to_f16(&mut matmul_then_exp("/head/Exp")).unwrap_err().to_string();
        assert!(err.contains("/head/Exp") && err.contains("overflow"), "{err}");
    }

    #[test]
    fn layer_norms_and_the_attention_softmax_parts_are_kept() {
        for name in ["/layers.2/blocks.3/mlp/norm/LayerNormalization.reduced_sum_dd.rms_norm", "/layers.3/blocks.1/attn/Div-recip"] {
            assert!(keeps_f32(name), "{name}");
        }
        for name in ["/layers.2/blocks.3/attn/MatMul", "/layers.1/blocks.0/mlp/fc1/MatMul", "/patch_embed/seq/0/c/Conv"] {
            assert!(!keeps_f32(name), "{name}");
        }
    }
}
