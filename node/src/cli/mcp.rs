//! `dispatch mcp`: MCP on stdin/stdout for agent hosts that launch MCP servers as
//! processes. It moves messages unchanged between the host and the server's `/mcp`
//! (the SDK's own stdio and Streamable HTTP transports at either end), so every call
//! runs on the server as the token's caller; nothing is decided here.

use anyhow::Context;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, Transport};
use rmcp::{RoleClient, RoleServer};

use super::{ClientArgs, connect};

/// Bridges stdin/stdout to `<server>/mcp` until the host closes stdin.
pub(super) async fn bridge(args: ClientArgs) -> anyhow::Result<()> {
    let api = connect(&args).await?;
    let token = api.token().context(
        "no token for the MCP bridge: pass --token or DISPATCH_TOKEN, or run `dispatch login` for this --server",
    )?;
    let mut config = StreamableHttpClientTransportConfig::with_uri(format!("{}/mcp", api.base()));
    config.auth_header = Some(token.to_owned());
    let mut server = StreamableHttpClientTransport::with_client(api.http(), config);
    let mut host = AsyncRwTransport::new_server(tokio::io::stdin(), tokio::io::stdout());
    loop {
        tokio::select! {
            from_host = Transport::<RoleServer>::receive(&mut host) => match from_host {
                Some(message) => server.send(message).await.context("forwarding to the server's /mcp")?,
                None => break,
            },
            from_server = Transport::<RoleClient>::receive(&mut server) => match from_server {
                Some(message) => host.send(message).await.context("writing to stdout")?,
                None => anyhow::bail!("the server's /mcp closed the connection"),
            },
        }
    }
    let _ = Transport::<RoleClient>::close(&mut server).await;
    Ok(())
}
