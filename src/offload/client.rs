//! A KServe v2 (Open Inference Protocol) gRPC client for one encoder model:
//! checks the model's metadata, sends a resized frame, returns its embedding.
//!
//! The frame travels as UINT8 `[1, 3, H, W]`, the image resized so that its
//! longest side is the model's input side and not padded: normalization and
//! padding happen in the server's graph (models/offload_encoder.py), so the
//! request is at most 3 MiB. The embedding comes back as FP32 or FP16,
//! whichever the model declares.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tract_onnx::prelude::{f16, Tensor};

use super::endpoint::Endpoint;
use super::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use super::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::{ModelInferRequest, ModelMetadataRequest, ModelStatisticsRequest};

/// Largest message accepted from the server: an FP32 embedding of a large
/// SAM (256 x 64 x 64 x 4 bytes = 4 MiB, tonic's default limit) plus
/// framing, with room for bigger encoders.
const MAX_MESSAGE: usize = 64 << 20;

/// How an encoder model on the server is called, read from its metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    pub input: String,
    pub output: String,
    pub output_type: Datatype,
}

/// The embedding's datatype on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    Fp32,
    Fp16,
}

impl Datatype {
    fn bytes(self) -> usize {
        match self {
            Datatype::Fp32 => 4,
            Datatype::Fp16 => 2,
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            Datatype::Fp32 => "FP32",
            Datatype::Fp16 => "FP16",
        }
    }
}

/// A resized frame as the encoder model takes it: `[1, 3, height, width]` bytes.
#[derive(Debug, Clone)]
pub struct Planes {
    pub width: u32,
    pub height: u32,
    pub bytes: Vec<u8>,
}

/// What crossed the network for one frame, and the client's own work on the answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exchange {
    pub sent_bytes: usize,
    pub received_bytes: usize,
    /// Turning the received bytes into f32 values (FP16's conversion included).
    pub decode: Duration,
}

/// The server's cumulative time for a model's successful inferences.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerTime {
    /// Waiting for a model instance.
    pub queue: Duration,
    /// Reading the input, running the model, writing the output.
    pub compute: Duration,
    pub count: u64,
}

/// TLS and authorization for servers outside the board's network.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// PEM certificate(s) of the CA that signed the server's certificate;
    /// `None`: the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Sent as `authorization: Bearer <token>` with every call.
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself: settings are logged.
        f.debug_struct("Credentials")
            .field("ca_pem", &self.ca_pem.as_ref().map(|pem| format!("{} bytes", pem.len())))
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish()
    }
}

impl Credentials {
    /// Reads the CA certificates and the token from their files.
    ///
    /// # Errors
    /// A file cannot be read, or the token file is empty.
    pub fn read(ca_file: Option<&std::path::Path>, token_file: Option<&std::path::Path>) -> Result<Credentials> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read(path).with_context(|| format!("reading the encoder's {what} {}", path.display()))
        };
        let ca_pem = ca_file.map(|path| read(path, "CA file")).transpose()?;
        let token = match token_file {
            Some(path) => {
                let token = String::from_utf8(read(path, "token file")?)
                    .with_context(|| format!("{} is not text", path.display()))?;
                let token = token.trim().to_string();
                ensure!(!token.is_empty(), "the encoder's token file {} is empty", path.display());
                Some(token)
            }
            None => None,
        };
        Ok(Credentials { ca_pem, token })
    }
}

/// A connection to one model on one server. Cheap to clone; the channel
/// reconnects by itself after the server comes back.
#[derive(Debug, Clone)]
pub struct Client {
    service: GrpcInferenceServiceClient<Channel>,
    endpoint: Endpoint,
    authorization: Option<MetadataValue<Ascii>>,
}

impl Client {
    /// A client for `endpoint`; connects on first use (inside a Tokio runtime).
    ///
    /// # Errors
    /// The TLS settings or the token are unusable.
    pub fn new(endpoint: &Endpoint, credentials: &Credentials, deadline: Duration) -> Result<Client> {
        let mut channel = Channel::from_shared(endpoint.origin())
            .with_context(|| format!("{endpoint} is not a valid address"))?
            .connect_timeout(deadline)
            .tcp_nodelay(true)
            // A server that vanishes without closing the connection is
            // noticed by the next call's deadline; keep-alives find it sooner.
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(deadline)
            .keep_alive_while_idle(true);
        if endpoint.tls {
            let mut tls = ClientTlsConfig::new().domain_name(endpoint.host.clone());
            tls = match &credentials.ca_pem {
                Some(pem) => tls.ca_certificate(Certificate::from_pem(pem)),
                None => tls.with_native_roots(),
            };
            channel = channel.tls_config(tls).with_context(|| format!("TLS settings for {endpoint}"))?;
        }
        let authorization = match &credentials.token {
            Some(token) => Some(
                format!("Bearer {}", token.trim())
                    .parse()
                    .context("the encoder token must be printable ASCII")?,
            ),
            None => None,
        };
        let service = GrpcInferenceServiceClient::new(channel.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        Ok(Client { service, endpoint: endpoint.clone(), authorization })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = &self.authorization {
            request.metadata_mut().insert("authorization", value.clone());
        }
        request
    }

    /// Reads the model's metadata and checks that it is an encoder maskd can
    /// call whose embeddings have `embedding_shape` (`[C, H, W]`).
    ///
    /// # Errors
    /// The server does not answer, does not serve the model, or the model's
    /// inputs or outputs are not an offload encoder's (the message names the field).
    pub async fn model_spec(&self, embedding_shape: [usize; 3]) -> Result<ModelSpec> {
        let request = ModelMetadataRequest { name: self.endpoint.model.clone(), version: self.endpoint.version.clone() };
        let metadata = self
            .service
            .clone()
            .model_metadata(self.request(request))
            .await
            .map_err(|status| status_error(&self.endpoint, "reading the model's metadata", status))?
            .into_inner();
        let model = &self.endpoint;
        let [input] = &metadata.inputs[..] else {
            bail!("{model}: the model has {} inputs, an offload encoder has one (the image)", metadata.inputs.len());
        };
        let [output] = &metadata.outputs[..] else {
            bail!("{model}: the model has {} outputs, an offload encoder has one (the embedding)", metadata.outputs.len());
        };
        check_input(model, input)?;
        let output_type = check_output(model, output, embedding_shape)?;
        Ok(ModelSpec { input: input.name.clone(), output: output.name.clone(), output_type })
    }

    /// Encodes one frame: sends `planes`, returns the embedding as f32
    /// `[1, C, H, W]` and the bytes that crossed the network.
    ///
    /// # Errors
    /// The server fails or answers something other than `spec` promised.
    pub async fn embed(&self, spec: &ModelSpec, planes: Planes, embedding_shape: [usize; 3]) -> Result<(Tensor, Exchange)> {
        let sent_bytes = planes.bytes.len();
        let request = ModelInferRequest {
            model_name: self.endpoint.model.clone(),
            model_version: self.endpoint.version.clone(),
            inputs: vec![InferInputTensor {
                name: spec.input.clone(),
                datatype: "UINT8".into(),
                shape: vec![1, 3, i64::from(planes.height), i64::from(planes.width)],
                ..Default::default()
            }],
            outputs: vec![InferRequestedOutputTensor { name: spec.output.clone(), ..Default::default() }],
            raw_input_contents: vec![planes.bytes],
            ..Default::default()
        };
        let response = self
            .service
            .clone()
            .model_infer(self.request(request))
            .await
            .map_err(|status| status_error(&self.endpoint, "encoding a frame", status))?
            .into_inner();
        let model = &self.endpoint;
        let [c, h, w] = embedding_shape;
        let position = response
            .outputs
            .iter()
            .position(|o| o.name == spec.output)
            .with_context(|| format!("{model}: the answer has no output {:?}", spec.output))?;
        let output = &response.outputs[position];
        ensure!(
            output.datatype == spec.output_type.key(),
            "{model}: the answer's {} is {}, its metadata said {}",
            spec.output,
            output.datatype,
            spec.output_type.key()
        );
        ensure!(
            output.shape == [1, c as i64, h as i64, w as i64],
            "{model}: the answer's {} has shape {:?}, expected [1, {c}, {h}, {w}]",
            spec.output,
            output.shape
        );
        let raw = response.raw_output_contents.get(position).with_context(|| {
            format!("{model}: the answer carries its embedding in another form than raw bytes (raw_output_contents)")
        })?;
        let values = c * h * w;
        ensure!(
            raw.len() == values * spec.output_type.bytes(),
            "{model}: the embedding has {} bytes, {values} {} values need {}",
            raw.len(),
            spec.output_type.key(),
            values * spec.output_type.bytes()
        );
        let decoding = std::time::Instant::now();
        let floats: Vec<f32> = match spec.output_type {
            Datatype::Fp32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            Datatype::Fp16 => raw.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        };
        let tensor = Tensor::from_shape(&[1, c, h, w], &floats)?;
        Ok((tensor, Exchange { sent_bytes, received_bytes: raw.len(), decode: decoding.elapsed() }))
    }

    /// The server's cumulative time for the model's successful inferences.
    ///
    /// # Errors
    /// The server does not answer or keeps no statistics for the model.
    pub async fn server_time(&self) -> Result<ServerTime> {
        let request = ModelStatisticsRequest { name: self.endpoint.model.clone(), version: self.endpoint.version.clone() };
        let statistics = self
            .service
            .clone()
            .model_statistics(self.request(request))
            .await
            .map_err(|status| status_error(&self.endpoint, "reading the model's statistics", status))?
            .into_inner();
        let model = statistics.model_stats.first().with_context(|| format!("{}: no statistics", self.endpoint))?;
        let stats = model.inference_stats.as_ref().with_context(|| format!("{}: no inference statistics", self.endpoint))?;
        let ns = |d: &Option<super::proto::StatisticDuration>| d.as_ref().map_or(0, |d| d.ns);
        Ok(ServerTime {
            queue: Duration::from_nanos(ns(&stats.queue)),
            compute: Duration::from_nanos(ns(&stats.compute_input) + ns(&stats.compute_infer) + ns(&stats.compute_output)),
            count: stats.success.as_ref().map_or(0, |d| d.count),
        })
    }
}

fn check_input(model: &Endpoint, input: &TensorMetadata) -> Result<()> {
    let name = &input.name;
    ensure!(
        input.datatype == "UINT8",
        "{model}: input {name:?} has datatype {}, maskd sends UINT8 pixels (the offload encoder of models/triton/)",
        input.datatype
    );
    let dynamic = |d: i64| d == -1;
    ensure!(
        input.shape.len() == 4
            && matches!(input.shape[0], 1 | -1)
            && matches!(input.shape[1], 3 | -1)
            && dynamic(input.shape[2])
            && dynamic(input.shape[3]),
        "{model}: input {name:?} has shape {:?}, maskd sends [1, 3, H, W] with H and W free (the resized, \
         unpadded frame: the offload encoder of models/triton/ pads it)",
        input.shape
    );
    Ok(())
}

fn check_output(model: &Endpoint, output: &TensorMetadata, embedding_shape: [usize; 3]) -> Result<Datatype> {
    let name = &output.name;
    let datatype = match output.datatype.as_str() {
        "FP32" => Datatype::Fp32,
        "FP16" => Datatype::Fp16,
        other => bail!("{model}: output {name:?} has datatype {other}, maskd reads FP32 or FP16 embeddings"),
    };
    let [c, h, w] = embedding_shape.map(|d| d as i64);
    ensure!(
        output.shape.len() == 4 && matches!(output.shape[0], 1 | -1) && output.shape[1..] == [c, h, w],
        "{model}: output {name:?} has shape {:?}, the decoder of this model takes embeddings of [1, {c}, {h}, {w}] \
         (is the server running another model's encoder?)",
        output.shape
    );
    Ok(datatype)
}

/// A failed call to the server, saying whether the server was reached.
#[derive(Debug, thiserror::Error)]
#[error("{endpoint}: {why}")]
pub struct ServerError {
    endpoint: String,
    why: String,
    unreachable: bool,
}

impl ServerError {
    /// The server did not answer (refused, closed, or slower than the deadline).
    pub fn unreachable(endpoint: &Endpoint, why: impl Into<String>) -> ServerError {
        ServerError { endpoint: endpoint.to_string(), why: why.into(), unreachable: true }
    }

    /// Whether `error` comes from a server that did not answer, rather than
    /// one that answered no (which a retry would not change).
    pub fn is_unreachable(error: &anyhow::Error) -> bool {
        error.chain().any(|e| e.downcast_ref::<ServerError>().is_some_and(|e| e.unreachable))
    }
}

fn status_error(endpoint: &Endpoint, doing: &str, status: tonic::Status) -> anyhow::Error {
    // The transport's own errors (refused, TLS) are in the sources, not the message.
    let mut message = status.message().to_string();
    let mut source = std::error::Error::source(&status);
    while let Some(cause) = source {
        message = format!("{message}: {cause}");
        source = cause.source();
    }
    let (unreachable, why) = match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
            (true, format!("{doing}: the server does not answer ({message})"))
        }
        tonic::Code::NotFound => (false, format!("{doing}: the server does not serve this model ({message})")),
        tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => (
            false,
            format!("{doing}: the server refused the credentials ({message}): check the token file"),
        ),
        code => (false, format!("{doing}: {code:?}: {message}")),
    };
    ServerError { endpoint: endpoint.to_string(), why, unreachable }.into()
}
