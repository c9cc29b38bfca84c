use std::path::Path;
use std::time::{Duration, Instant};

use crate::cli::SandboxArgs;
use crate::error::{Error, Result, Status};
use crate::printer::Printer;
use crate::sandbox::clients::{AmqpConsumer, MqttSubscriber, amqp_publish, mqtt_publish};
use crate::sandbox::{BACKEND, Sandbox, SandboxError};
use crate::spec::{self, Selection};

const WAIT: Duration = Duration::from_secs(10);

pub fn demo(regions: &Path, args: &SandboxArgs, printer: &Printer) -> Result<Status> {
    let stack = spec::load(regions, &Selection::All).map_err(Error::Invalid)?;
    printer.success(
        "ok",
        &format!(
            "validated {} gateway regions and the backend",
            stack.gateways.len()
        ),
    );
    let temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("gwctl-sandbox-")
                .tempdir()
                .map_err(|e| Error::io("creating a sandbox directory", e))?;
            temp.path().to_path_buf()
        }
    };
    super::runtime()?.block_on(async {
        let started = Instant::now();
        printer.info(&format!(
            "starting {} local RabbitMQ nodes in {}",
            stack.gateways.len() + 1,
            dir.display()
        ));
        let sandbox = Sandbox::start(&stack, &dir, &args.rabbitmq_bin)
            .await
            .map_err(sandbox_error)?;
        let outcome = exercise(&sandbox, &stack, printer, started).await;
        printer.info("stopping the sandbox");
        sandbox.stop(Duration::from_secs(10)).await;
        outcome
    })?;
    Ok(Status::Success)
}

async fn exercise(
    sandbox: &Sandbox,
    stack: &spec::Stack,
    printer: &Printer,
    started: Instant,
) -> Result<()> {
    printer.success(
        "ok",
        &format!(
            "nodes ready after {:.1} s: {}",
            started.elapsed().as_secs_f32(),
            sandbox.node_names().join(", ")
        ),
    );
    sandbox.federate_backend().await.map_err(sandbox_error)?;
    let links = sandbox
        .wait_links_running(Duration::from_secs(30))
        .await
        .map_err(sandbox_error)?;
    for (node, links) in &links {
        for l in links {
            printer.info(&format!("  link {node} <- {}: {}", l.upstream, l.status));
        }
    }
    printer.success("ok", "every federation link is running");

    // With the examples: telemetry from a device in Japan, a command to a device in the US.
    let (command_region, telemetry_region) = match (stack.gateways.first(), stack.gateways.last()) {
        (Some(f), Some(l)) => (l.spec.region.clone(), f.spec.region.clone()),
        _ => {
            return Err(Error::Failed(
                "the sandbox needs at least one gateway region".into(),
            ));
        }
    };
    // Device → backend: telemetry published over MQTT on one gateway reaches a backend consumer.
    let backend_admin = sandbox.admin_login(BACKEND).map_err(sandbox_error)?;
    let mut telemetry = AmqpConsumer::bind(&backend_admin, "amq.topic", "telemetry.#")
        .await
        .map_err(client_error)?;
    let device = sandbox
        .device_login(&telemetry_region)
        .map_err(sandbox_error)?;
    let topic = format!("telemetry/device-{telemetry_region}");
    mqtt_publish(
        &device,
        &format!("device-{telemetry_region}"),
        &topic,
        b"{\"temperature\":21.5}",
        WAIT,
    )
    .await
    .map_err(client_error)?;
    let got = telemetry.next(WAIT).await.ok_or_else(|| {
        Error::Failed(format!(
            "telemetry from {telemetry_region} did not reach the backend"
        ))
    })?;
    printer.success(
        "ok",
        &format!(
            "MQTT {topic} on {telemetry_region} -> AMQP consumer on the backend (routing key {})",
            got.key
        ),
    );

    // Backend → device: a command published over AMQP on the backend reaches an MQTT device.
    let device = sandbox
        .device_login(&command_region)
        .map_err(sandbox_error)?;
    let command_topic = format!("commands/device-{command_region}");
    let mut sub = MqttSubscriber::connect(
        &device,
        &format!("device-{command_region}"),
        &command_topic,
        WAIT,
    )
    .await
    .map_err(client_error)?;
    amqp_publish(
        &backend_admin,
        "amq.topic",
        &command_topic.replace('/', "."),
        b"{\"reboot\":false}",
    )
    .await
    .map_err(client_error)?;
    let got = sub.next(WAIT).await.ok_or_else(|| {
        Error::Failed(format!(
            "the command did not reach the device on {command_region}"
        ))
    })?;
    printer.success(
        "ok",
        &format!(
            "AMQP {} on the backend -> MQTT device on {command_region} (topic {})",
            command_topic.replace('/', "."),
            got.key
        ),
    );
    sub.disconnect().await;
    telemetry.close().await;
    printer.success(
        "done",
        &format!(
            "sandbox round trip in {:.1} s",
            started.elapsed().as_secs_f32()
        ),
    );
    Ok(())
}

fn sandbox_error(e: SandboxError) -> Error {
    Error::Failed(e.to_string())
}

fn client_error(e: crate::sandbox::clients::ClientError) -> Error {
    Error::Failed(e.to_string())
}
