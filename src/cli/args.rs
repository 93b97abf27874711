//! Argument types shared by subcommands: prompt values and the model to load.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser};
use maskd::model::{BoxPrompt, Compute, Point, PointLabel, Precision, Sam};
use maskd::offload::{self, Credentials, Endpoint, Fallback, RemoteSettings};

/// `X,Y[,LABEL]`: a click in image pixels; LABEL 1 = object (default), 0 = background.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointArg(pub Point);

impl FromStr for PointArg {
    type Err = String;

    fn from_str(s: &str) -> Result<PointArg, String> {
        let fields = numbers(s)?;
        let label = match fields.as_slice() {
            [_, _] => PointLabel::Foreground,
            [_, _, l] if *l == 1.0 => PointLabel::Foreground,
            [_, _, l] if *l == 0.0 => PointLabel::Background,
            [_, _, l] => return Err(format!("label must be 1 (object) or 0 (background), got {l}")),
            _ => return Err(format!("expected X,Y or X,Y,LABEL, got {} values", fields.len())),
        };
        Ok(PointArg(Point { x: fields[0], y: fields[1], label }))
    }
}

/// `X0,Y0,X1,Y1`: a box in image pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxArg(pub BoxPrompt);

impl FromStr for BoxArg {
    type Err = String;

    fn from_str(s: &str) -> Result<BoxArg, String> {
        match numbers(s)?.as_slice() {
            &[x0, y0, x1, y1] => Ok(BoxArg(BoxPrompt { x0, y0, x1, y1 })),
            other => Err(format!("expected X0,Y0,X1,Y1, got {} values", other.len())),
        }
    }
}

fn numbers(s: &str) -> Result<Vec<f32>, String> {
    s.split(',')
        .map(|f| {
            let f = f.trim();
            let v: f32 = f.parse().map_err(|_| format!("{f:?} is not a number"))?;
            if v.is_finite() {
                Ok(v)
            } else {
                Err(format!("{f:?} is not a finite number"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_with_default_and_explicit_labels() {
        assert_eq!("10,20".parse::<PointArg>().unwrap().0, Point::foreground(10.0, 20.0));
        assert_eq!(" 1.5, 2 ,0".parse::<PointArg>().unwrap().0, Point::background(1.5, 2.0));
        assert_eq!("1,2,1".parse::<PointArg>().unwrap().0.label, PointLabel::Foreground);
    }

    #[test]
    fn bad_points_say_what_is_wrong() {
        assert_eq!("1,2,3".parse::<PointArg>().unwrap_err(), "label must be 1 (object) or 0 (background), got 3");
        assert_eq!("1".parse::<PointArg>().unwrap_err(), "expected X,Y or X,Y,LABEL, got 1 values");
        assert_eq!("1,x".parse::<PointArg>().unwrap_err(), "\"x\" is not a number");
        assert_eq!("NaN,1".parse::<PointArg>().unwrap_err(), "\"NaN\" is not a finite number");
    }

    #[test]
    fn precision_and_compute_flags_take_the_model_keys() {
        let command = clap::Command::new("maskd");
        let parse = |value: &str| precision_parser().parse_ref(&command, None, std::ffi::OsStr::new(value));
        assert_eq!(parse("int8").unwrap(), Precision::Int8);
        assert_eq!(parse("f32").unwrap(), Precision::F32);
        let err = parse("f16").unwrap_err().to_string();
        assert!(err.contains("f16") && err.contains("int8") && err.contains("f32"), "{err}");
        let parse = |value: &str| compute_parser().parse_ref(&command, None, std::ffi::OsStr::new(value));
        assert_eq!(parse("f16").unwrap(), Compute::F16);
        assert!(parse("half").is_err());
    }

    #[test]
    fn boxes_need_four_numbers() {
        assert_eq!("1,2,3,4".parse::<BoxArg>().unwrap().0, BoxPrompt { x0: 1.0, y0: 2.0, x1: 3.0, y1: 4.0 });
        assert_eq!("1,2,3".parse::<BoxArg>().unwrap_err(), "expected X0,Y0,X1,Y1, got 3 values");
    }
}

/// Which model a command loads: `--model DIR`, `--precision` and
/// `--compute`, and where its encoder runs.
#[derive(Debug, clap::Args)]
pub struct ModelArgs {
    #[command(flatten)]
    local: LocalModelArgs,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// Which model a command loads on this machine: `--model DIR`, `--precision` and `--compute`.
#[derive(Debug, clap::Args)]
pub struct LocalModelArgs {
    /// Weights to load: f32 (the reference export) or int8 (int8 weights,
    /// float32 compute: half the encoder's file size, docs/EVAL.md).
    #[arg(long, default_value_t = Precision::default(), value_parser = precision_parser())]
    pub precision: Precision,
    /// What the encoder computes in: f32, or f16 for aarch64 cores with FP16
    /// arithmetic (Cortex-A76 and newer; emulated and many times slower
    /// elsewhere). Measure it on the board with `maskd bench --compute f16`.
    #[arg(long, default_value_t = Compute::default(), value_parser = compute_parser())]
    pub compute: Compute,
    /// Model directory (holding manifest.json).
    #[arg(long = "model", env = "MASKD_MODEL", default_value = "models/mobile_sam")]
    pub dir: PathBuf,
}

/// An inference server that runs the image encoder (docs/OFFLOAD.md).
#[derive(Debug, clap::Args)]
pub struct RemoteArgs {
    /// Encode on an inference server (Triton, KServe v2 gRPC), e.g.
    /// grpc://127.0.0.1:8001/mobile_sam_encoder; grpcs:// for TLS.
    #[arg(long = "encoder-url", value_name = "URL")]
    url: Option<Endpoint>,
    /// Longest wait for the server's embedding before the fallback encodes.
    #[arg(long = "encoder-deadline-ms", value_name = "MS", default_value_t = RemoteSettings::DEFAULT_DEADLINE.as_millis() as u64)]
    deadline_ms: u64,
    /// What encodes when the server fails: local (this machine) or none (an error).
    #[arg(long = "encoder-fallback", default_value_t = Fallback::default(),
          value_parser = PossibleValuesParser::new(Fallback::KEYS).try_map(|key| key.parse::<Fallback>()))]
    fallback: Fallback,
    /// A file holding a token sent as `authorization: Bearer TOKEN`.
    #[arg(long = "encoder-token-file", value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// PEM file of the CA that signed a grpcs:// server's certificate (default: the system's roots).
    #[arg(long = "encoder-ca-file", value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

impl RemoteArgs {
    /// The server's settings, when `--encoder-url` was given.
    fn settings(&self) -> Result<Option<RemoteSettings>> {
        let Some(endpoint) = &self.url else { return Ok(None) };
        let credentials = Credentials::read(self.ca_file.as_deref(), self.token_file.as_deref())?;
        Ok(Some(RemoteSettings {
            deadline: Duration::from_millis(self.deadline_ms),
            fallback: self.fallback,
            credentials,
            ..RemoteSettings::new(endpoint.clone())
        }))
    }
}

/// `--precision`'s values, listed in `--help`, parsed by [`Precision`]'s `FromStr`.
pub fn precision_parser() -> impl TypedValueParser<Value = Precision> {
    PossibleValuesParser::new(Precision::KEYS).try_map(|key| key.parse::<Precision>())
}

/// `--compute`'s values, listed in `--help`, parsed by [`Compute`]'s `FromStr`.
pub fn compute_parser() -> impl TypedValueParser<Value = Compute> {
    PossibleValuesParser::new(Compute::KEYS).try_map(|key| key.parse::<Compute>())
}

impl ModelArgs {
    /// The model, its encoder on the server of `--encoder-url` if given.
    pub fn load(&self) -> Result<Sam> {
        let LocalModelArgs { dir, precision, compute } = &self.local;
        match self.remote.settings()? {
            Some(remote) => Ok(offload::load(dir, *precision, *compute, remote)?.0),
            None => Sam::load_computing(dir, *precision, *compute),
        }
    }
}
