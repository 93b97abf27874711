//! Where the remote encoder is: an inference server's address and the
//! model it serves, written as one URL.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, ensure, Context, Error, Result};
use url::Url;

/// Triton's gRPC port, the default when the URL names none.
pub const DEFAULT_PORT: u16 = 8001;

/// `grpc://host:port/model` (plain HTTP/2) or `grpcs://host:port/model`
/// (TLS); `/model/versions/N` pins a version of the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
    pub model: String,
    /// Empty: the version the server's policy picks.
    pub version: String,
}

impl Endpoint {
    /// The address tonic connects to: `http://host:port` or `https://host:port`.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        match self.host.contains(':') {
            true => format!("{scheme}://[{}]:{}", self.host, self.port),
            false => format!("{scheme}://{}:{}", self.host, self.port),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Endpoint> {
        let url = Url::parse(text)
            .with_context(|| format!("{text:?} is not a URL such as grpc://192.168.1.20:8001/mobile_sam_encoder"))?;
        let tls = match url.scheme() {
            "grpc" => false,
            "grpcs" => true,
            other => bail!("{text:?}: the scheme must be grpc:// or grpcs:// (TLS), got {other}://"),
        };
        ensure!(
            url.username().is_empty() && url.password().is_none(),
            "{text:?}: put a token in the token file (encoder.token_file, --encoder-token-file), not in the URL"
        );
        ensure!(url.query().is_none() && url.fragment().is_none(), "{text:?}: only a host, a port and a model are expected");
        let host = url.host_str().filter(|h| !h.is_empty()).with_context(|| format!("{text:?} has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
        let (model, version) = match segments[..] {
            [model] => (model, ""),
            [model, "versions", version] if version.parse::<u64>().is_ok() => (model, version),
            _ => bail!(
                "{text:?}: the path must name the model, as in grpc://host:8001/mobile_sam_encoder \
                 (or .../mobile_sam_encoder/versions/1)"
            ),
        };
        Ok(Endpoint {
            host,
            port: url.port().unwrap_or(DEFAULT_PORT),
            tls,
            model: model.to_string(),
            version: version.to_string(),
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        write!(f, "{scheme}://{host}:{}/{}", self.port, self.model)?;
        if !self.version.is_empty() {
            write!(f, "/versions/{}", self.version)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_port_model_and_transport() {
        let e: Endpoint = "grpc://127.0.0.1:18001/mobile_sam_encoder".parse().unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls, e.model.as_str(), e.version.as_str()), ("127.0.0.1", 18001, false, "mobile_sam_encoder", ""));
        assert_eq!(e.origin(), "http://127.0.0.1:18001");
        assert_eq!(e.to_string(), "grpc://127.0.0.1:18001/mobile_sam_encoder");
        let e: Endpoint = "grpcs://gpu.lan/sam_vit_h/versions/2".parse().unwrap();
        assert_eq!((e.port, e.tls, e.version.as_str()), (DEFAULT_PORT, true, "2"));
        assert_eq!(e.origin(), "https://gpu.lan:8001");
        assert_eq!(e.to_string(), "grpcs://gpu.lan:8001/sam_vit_h/versions/2");
        let e: Endpoint = "grpc://[::1]:9000/m".parse().unwrap();
        assert_eq!((e.host.as_str(), e.origin()), ("::1", "http://[::1]:9000".to_string()));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, expected) in [
            ("http://127.0.0.1:8000/m", "grpc:// or grpcs://"),
            ("grpc://127.0.0.1:8001", "the path must name the model"),
            ("grpc://127.0.0.1:8001/a/b", "the path must name the model"),
            ("grpc://127.0.0.1:8001/m/versions/x", "the path must name the model"),
            ("grpc://user:secret@host/m", "token file"),
            ("grpc://host/m?x=1", "only a host"),
            ("127.0.0.1:8001", "not a URL"),
            ("not a url", "not a URL"),
        ] {
            let err = format!("{:#}", url.parse::<Endpoint>().unwrap_err());
            assert!(err.contains(expected), "{url}: {err}");
        }
    }
}
