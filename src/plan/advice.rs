//! What `plan` points out beyond changes: insecure settings, certificates about to expire, a
//! region that cannot survive a broker out.

use std::time::SystemTime;

use crate::model::resources::{Actual, Kind, Spec};
use crate::pki;
use crate::render::Cas;
use crate::spec::model::{
    DataVolume, GatewaySpec, PLAINTEXT_MQTT_PORT, PLAINTEXT_WEB_MQTT_PORT, RabbitSeries,
};

/// Warnings about a gateway region's availability: a single broker, data that snapshots do not
/// cover.
pub fn availability(gw: &GatewaySpec) -> Vec<String> {
    let mut out = Vec::new();
    if gw.brokers.count == 1 {
        out.push(
            "WARNING: one broker: no queue has a replica, and losing or upgrading that broker \
             takes the region's devices offline; 3 brokers survive one node out"
                .to_string(),
        );
    }
    if gw.brokers.series() == RabbitSeries::V3_10 {
        out.push(format!(
            "WARNING: RabbitMQ 3.10 ({}) is out of RabbitMQ's support and lacks what 4.0 \
             enforces: a device's client id is not tied to its certificate, and quorum queues \
             do not follow the cluster's membership. Pin a 4.0 package on debian-13 \
             images; `gwctl upgrade` moves the region",
            gw.brokers.rabbitmq_package
        ));
    }
    if matches!(gw.brokers.data_volume, DataVolume::InstanceStore(_)) {
        out.push(
            "the data volume is the instance store: it is lost when a broker stops or is \
             replaced, and no snapshot can be taken of it before"
                .to_string(),
        );
    }
    out
}

/// Warnings about a gateway region's security: plaintext listeners, CAs and broker
/// certificates within `pki::WARN_BEFORE` of expiry.
pub fn security(gw: &GatewaySpec, cas: &Cas, actual: &Actual, now: SystemTime) -> Vec<String> {
    let mut out = Vec::new();
    if gw.brokers.insecure_plaintext {
        out.push(format!(
            "WARNING: insecure_plaintext is on: on ports {} and {} there is no TLS and no \
             certificate, so anyone who reaches them can act as any device (user name = any \
             device id, password `none`) and anyone on the path reads the traffic",
            PLAINTEXT_MQTT_PORT, PLAINTEXT_WEB_MQTT_PORT
        ));
    }
    for (what, pem) in [
        ("the backend CA", &cas.backend),
        ("the stack CA", &cas.stack),
        ("the device CA", &cas.device),
    ] {
        if let Ok(info) = pki::inspect(pem)
            && info.expires_within(now, pki::WARN_BEFORE)
        {
            out.push(format!(
                "WARNING: {what} expires on {}: replace it before every certificate it signed \
                 stops verifying",
                info.expires()
            ));
        }
    }
    for o in actual
        .resources
        .iter()
        .filter(|o| o.key.kind == Kind::Certificate)
    {
        if let Spec::Certificate { renew: true, .. } = o.spec {
            out.push(format!(
                "the certificate of {} expires on {}: `up` issues a new one, which the broker \
                 loads at its next restart",
                o.key.name,
                o.parts.get("not_after").map_or("?", String::as_str)
            ));
        }
    }
    out
}
