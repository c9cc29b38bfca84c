//! The sandbox's proof that the system works end to end: a device publishes telemetry over
//! MQTT on one gateway and a backend service receives it over AMQP; the backend sends a
//! command that reaches a device on another gateway.

use std::time::Duration;

use super::SandboxError;
use super::clients::{AmqpConsumer, Login, MqttSubscriber, amqp_publish, mqtt_publish};
use crate::endpoints::{BrokerAddress, EndpointMap};
use crate::spec::Stack;

const WAIT: Duration = Duration::from_secs(15);

fn address<'a>(map: &'a EndpointMap, region: &str) -> Result<&'a BrokerAddress, SandboxError> {
    map.get(region).and_then(|a| a.first()).ok_or_else(|| {
        SandboxError::Failed(format!("the endpoint file has no broker for `{region}`"))
    })
}

fn client_error(e: super::clients::ClientError) -> SandboxError {
    SandboxError::Failed(e.to_string())
}

/// Sends telemetry from `telemetry_region` and a command to `command_region`; returns what
/// happened, one line per step.
pub async fn run(
    stack: &Stack,
    map: &EndpointMap,
    telemetry_region: &str,
    command_region: &str,
) -> Result<Vec<String>, SandboxError> {
    let dir = &stack.dir;
    let b = &stack.backend.spec.credentials.admin;
    let backend = address(map, "backend")?;
    let service = Login {
        host: backend.host.clone(),
        port: backend.amqp_port,
        user: b.user.clone(),
        password: b.password.resolve(dir)?,
    };
    let device =
        |region: &str| -> Result<Login, SandboxError> {
            let gw = stack
                .gateway(region)
                .ok_or_else(|| SandboxError::Failed(format!("no gateway region `{region}`")))?;
            let cred =
                gw.spec.credentials.device.as_ref().ok_or_else(|| {
                    SandboxError::Failed(format!("{region} declares no device user"))
                })?;
            let a = address(map, region)?;
            let port = a.mqtt_port.ok_or_else(|| {
                SandboxError::Failed(format!("the endpoint file has no MQTT port for `{region}`"))
            })?;
            Ok(Login {
                host: a.host.clone(),
                port,
                user: cred.user.clone(),
                password: cred.password.resolve(dir)?,
            })
        };
    let mut lines = Vec::new();

    let mut telemetry = AmqpConsumer::bind(&service, "amq.topic", "telemetry.#")
        .await
        .map_err(client_error)?;
    let topic = format!("telemetry/device-{telemetry_region}");
    mqtt_publish(
        &device(telemetry_region)?,
        &format!("device-{telemetry_region}"),
        &topic,
        b"{\"temperature\":21.5}",
        WAIT,
    )
    .await
    .map_err(client_error)?;
    let got = telemetry.next(WAIT).await.ok_or_else(|| {
        SandboxError::Failed(format!(
            "telemetry from {telemetry_region} did not reach the backend"
        ))
    })?;
    lines.push(format!(
        "MQTT {topic} on {telemetry_region} -> AMQP consumer on the backend (routing key {})",
        got.key
    ));
    telemetry.close().await;

    let command_topic = format!("commands/device-{command_region}");
    let mut sub = MqttSubscriber::connect(
        &device(command_region)?,
        &format!("device-{command_region}"),
        &command_topic,
        WAIT,
    )
    .await
    .map_err(client_error)?;
    let key = command_topic.replace('/', ".");
    amqp_publish(&service, "amq.topic", &key, b"{\"reboot\":false}")
        .await
        .map_err(client_error)?;
    let got = sub.next(WAIT).await.ok_or_else(|| {
        SandboxError::Failed(format!(
            "the command did not reach the device on {command_region}"
        ))
    })?;
    lines.push(format!(
        "AMQP {key} on the backend -> MQTT device on {command_region} (topic {})",
        got.key
    ));
    sub.disconnect().await;
    Ok(lines)
}
