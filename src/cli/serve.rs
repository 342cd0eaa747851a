//! `maskstore serve`: the signed-URL gateway of the local and memory providers.

use maskstore::{Config, Storage, UrlIssuer};
use maskstore_gateway::Limits;

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
    let limits = Limits::from_config(&config.gateway);
    let metrics = maskstore_gateway::install_prometheus().map_err(gateway_failure)?;
    let objects = maskstore_gateway::Routes::objects(storage.clone(), &config.cors, &limits)
        .map_err(gateway_failure)?;
    let admin = maskstore_gateway::admin_router(storage, Some(metrics));
    let bind = |address: String, key: &'static str| async move {
        tokio::net::TcpListener::bind(&address)
            .await
            .map_err(|e| Failure {
                message: format!(
                    "cannot listen on {address} (gateway.{key}): {e}; choose a free address with APP_GATEWAY__{}",
                    key.to_uppercase()
                ),
                code: 2,
            })
    };
    let listen = &config.gateway.listen;
    let listener = bind(listen.clone(), "listen").await?;
    // One shutdown signal stops both listeners.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        maskstore_gateway::shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let public = match &config.gateway.admin_listen {
        Some(admin_listen) => {
            let admin_listener = bind(admin_listen.clone(), "admin_listen").await?;
            eprintln!(
                "maskstore gateway: /health and /metrics on {admin_listen} (gateway.admin_listen)"
            );
            let admin_limits = limits.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move {
                if let Err(e) = maskstore_gateway::serve_with_limits(
                    admin_listener,
                    admin,
                    &admin_limits,
                    until_stopped(stopped),
                )
                .await
                {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            });
            objects
        }
        None => objects.merge(admin),
    };
    eprintln!(
        "maskstore gateway: provider {}, listening on {listen}, URLs under {}",
        config.object_storage.provider, config.gateway.public_url
    );
    maskstore_gateway::serve_with_limits(listener, public, &limits, until_stopped(stopped))
        .await
        .map_err(|e| Failure {
            message: e.to_string(),
            code: 1,
        })?;
    eprintln!("maskstore gateway: stopped");
    Ok(())
}
