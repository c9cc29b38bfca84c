//! The HTTP endpoint of a running `gwctl router` (its metrics and lookups), as a client.

use std::net::SocketAddr;
use std::time::Duration;

/// `GET http://ADDR/PATH`: the body of a 200 answer.
pub async fn get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let url = format!("http://{addr}/{}", path.trim_start_matches('/'));
    // Plain HTTP on a private address.
    let tls = crate::pki::plain_http_config().map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let answer = client
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("{url}: {e} (is `gwctl router run` listening there?)"))?;
    let status = answer.status();
    let body = answer.text().await.map_err(|e| format!("{url}: {e}"))?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{url}: {status}: {}", body.trim()))
    }
}
