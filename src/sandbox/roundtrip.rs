//! The sandbox's proof that the system works end to end: a device publishes telemetry over
//! MQTT on one gateway and a backend service receives it over AMQP; the backend sends a
//! command that reaches a device on another gateway.

use std::time::Duration;

use super::SandboxError;
use super::clients::{AmqpConsumer, Login, MqttSubscriber, amqp_publish, mqtt_publish};
use crate::endpoints::{BrokerAddress, EndpointMap};
use crate::spec::Stack;
use crate::spec::model::Devices;

const WAIT: Duration = Duration::from_secs(15);

fn address<'a>(map: &'a EndpointMap, region: &str) -> Result<&'a BrokerAddress, SandboxError> {
    map.get(region).and_then(|a| a.first()).ok_or_else(|| {
        SandboxError::Failed(format!("the endpoint file has no broker for `{region}`"))
    })
}

fn client_error(e: super::clients::ClientError) -> SandboxError {
    SandboxError::Failed(e.to_string())
}

/// A backend service's AMQP login (the backend's admin user, verified with its CA).
pub fn service_login(stack: &Stack, map: &EndpointMap) -> Result<Login, SandboxError> {
    let dir = &stack.dir;
    let b = &stack.backend.spec.credentials.admin;
    let backend = address(map, "backend")?;
    let backend_ca = match &backend.ca_file {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| SandboxError::Io(format!("reading {path}"), e))?,
        None => stack.backend.spec.tls.backend_ca.read_public(dir)?,
    };
    Ok(Login {
        host: backend.host.clone(),
        port: backend.amqp_port,
        user: b.user.clone(),
        password: Some(b.password.resolve(dir)?),
        ca_pem: backend_ca,
        identity: None,
    })
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
    let tls = &stack.backend.spec.tls;
    let service = service_login(stack, map)?;
    let stack_ca = tls.stack_ca.cert.read_public(dir)?;
    let device_ca = crate::spec::tls::device_authority(stack)
        .map_err(|e| SandboxError::Failed(e.to_string()))?;
    // A device of each region, with a certificate of the device CA (its id is its user name
    // and its client id).
    let device = |region: &str| -> Result<Login, SandboxError> {
        let a = address(map, region)?;
        let port = a.mqtt_port.ok_or_else(|| {
            SandboxError::Failed(format!("the endpoint file has no MQTT port for `{region}`"))
        })?;
        let login = super::device_login(&device_ca, &stack_ca, &format!("device-{region}"))?;
        Ok(login.at(&a.host, port))
    };
    let devices = &stack.backend.spec.devices;
    let mut lines = Vec::new();

    let sender = device(telemetry_region)?;
    let telemetry_topic = Devices::topic(&devices.telemetry, &sender.user, "temperature");
    let mut telemetry = AmqpConsumer::bind(
        &service,
        "amq.topic",
        &Devices::routing_key(&telemetry_topic),
    )
    .await
    .map_err(client_error)?;
    mqtt_publish(
        &sender,
        &sender.user,
        &telemetry_topic,
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
        "MQTT {telemetry_topic} on {telemetry_region} -> AMQP consumer on the backend (routing key {})",
        got.key
    ));
    telemetry.close().await;

    let receiver = device(command_region)?;
    let command_topic = Devices::topic(&devices.commands, &receiver.user, "reboot");
    let mut sub = MqttSubscriber::connect(
        &receiver,
        &receiver.user,
        &devices.commands.replace("{device}", &receiver.user),
        WAIT,
    )
    .await
    .map_err(client_error)?;
    let key = Devices::routing_key(&command_topic);
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
