//! A small HTTP client of the API, for the CLI.

use reqwest::Method;
use serde_json::Value;

/// A refusal or failure, with the server's error code when it sent one.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{code} ({status}): {message}")]
    Api { status: u16, code: String, message: String, details: Value },
    #[error("cannot reach {server}: {}", explain(source))]
    Transport { server: String, source: reqwest::Error },
    #[error("unexpected answer ({status}): {body}")]
    Unexpected { status: u16, body: String },
}

/// A transport error, with what to do when the server's certificate is not trusted.
fn explain(e: &reqwest::Error) -> String {
    let text = format!("{e}");
    let mut chain = text.clone();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(&format!(": {s}"));
        source = s.source();
    }
    if chain.contains("UnknownIssuer") {
        return format!(
            "{text}: the server's certificate is not signed by a CA this client trusts; if the cluster CA issued it, \
             pass --ca-cert <data-dir>/ca/ca.crt.pem (or set DISPATCH_CA_CERT)"
        );
    }
    text
}

/// An API client bound to one server and token.
pub struct Client {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl Client {
    /// A client of `server`, authenticating with `token` when given. `https://`
    /// servers are verified against the platform's roots plus the PEM certificates in
    /// `ca_cert` (the cluster CA's, for a server whose certificate it issued).
    pub fn new(server: &str, token: Option<String>, ca_cert: Option<&std::path::Path>) -> Client {
        let roots = match ca_cert {
            Some(path) => crate::outbound::read_roots(path).unwrap_or_else(|e| {
                eprintln!("warning: --ca-cert ignored: {e:#}");
                vec![]
            }),
            None => vec![],
        };
        let http = crate::outbound::api_client(&roots).unwrap_or_else(|e| {
            eprintln!("warning: {e:#}; using the built-in TLS defaults");
            reqwest::Client::new()
        });
        Client { base: server.trim_end_matches('/').to_owned(), token, http }
    }

    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token this client sends, if any.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The HTTP client (with the TLS roots above), for protocols that bring their own
    /// requests (the MCP bridge).
    pub fn http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Sends a request; mutations carry `idempotency_key`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        self.finish(req, idempotency_key).await
    }

    /// Uploads raw bytes (evidence files).
    pub async fn upload(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/octet-stream")
            .body(bytes);
        self.finish(req, None).await
    }

    /// Streams a GET's body into `out` (backups); an error answer is read as JSON.
    pub async fn download(&self, path: &str, out: &mut (impl std::io::Write + Send)) -> Result<u64, ClientError> {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let transport = |source| ClientError::Transport { server: self.base.clone(), source };
        let mut response = req.send().await.map_err(transport)?;
        if !response.status().is_success() {
            return self.finish_response(response).await.map(|_| 0);
        }
        let mut written = 0u64;
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            out.write_all(&chunk)
                .map_err(|e| ClientError::Unexpected { status: 200, body: format!("writing: {e}") })?;
            written += chunk.len() as u64;
        }
        Ok(written)
    }

    async fn finish(
        &self,
        mut req: reqwest::RequestBuilder,
        idempotency_key: Option<&str>,
    ) -> Result<Value, ClientError> {
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(key) = idempotency_key {
            req = req.header("idempotency-key", key);
        }
        let transport = |source| ClientError::Transport { server: self.base.clone(), source };
        let response = req.send().await.map_err(transport)?;
        self.finish_response(response).await
    }

    async fn finish_response(&self, response: reqwest::Response) -> Result<Value, ClientError> {
        let transport = |source| ClientError::Transport { server: self.base.clone(), source };
        let status = response.status().as_u16();
        let text = response.text().await.map_err(transport)?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if (200..300).contains(&status) {
            return value.ok_or(ClientError::Unexpected { status, body: text });
        }
        match value.as_ref().and_then(|v| v.get("error")) {
            Some(e) => Err(ClientError::Api {
                status,
                code: e["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                message: e["message"].as_str().unwrap_or_default().to_owned(),
                details: e["details"].clone(),
            }),
            None => Err(ClientError::Unexpected { status, body: text }),
        }
    }
}
