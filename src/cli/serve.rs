//! `maskstore serve`: the signed-URL gateway of the local and memory providers.

use maskstore::{Config, Storage, UrlIssuer};

use super::output::Failure;

pub(crate) async fn run(config: &Config) -> Result<(), Failure> {
    let storage = Storage::connect(config)?;
    if storage.capabilities().signed_urls != UrlIssuer::Gateway {
        return Err(Failure {
            message: format!(
                "maskstore serve serves the signed URLs of the local and memory providers; \
                 provider {}'s signed URLs point at the backend itself",
                config.object_storage.provider
            ),
            code: 2,
        });
    }
    let gateway_failure = |e: maskstore_gateway::GatewayError| Failure {
        message: e.to_string(),
        code: 2,
    };
    let metrics = maskstore_gateway::install_prometheus().map_err(gateway_failure)?;
    let router = maskstore_gateway::router_with_metrics(storage, &config.cors, metrics)
        .map_err(gateway_failure)?;
    let listen = &config.gateway.listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| Failure {
        message: format!(
            "cannot listen on {listen} (gateway.listen): {e}; choose a free address with APP_GATEWAY__LISTEN"
        ),
        code: 2,
    })?;
    eprintln!(
        "maskstore gateway: provider {}, listening on {listen}, URLs under {}",
        config.object_storage.provider, config.gateway.public_url
    );
    maskstore_gateway::serve(listener, router, maskstore_gateway::shutdown_signal())
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            code: 1,
        })?;
    eprintln!("maskstore gateway: stopped");
    Ok(())
}
