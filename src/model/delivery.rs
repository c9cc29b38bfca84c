//! How backend messages reach devices, as data: the router's exchanges on the backend, the
//! queues it reads, and how a device id is read from a routing key.
//!
//! Backend applications publish to `routing.exchange` with the routing key of a device's
//! commands topic. With `routing.mode: router`, `gwctl router` consumes those messages and
//! republishes each to the exchange of the region where its device is connected
//! ([`region_exchange`]) or, when it does not know, to [`BROADCAST_EXCHANGE`]; each gateway
//! federates only those two (see [`super::federation::gateway_side`]). The router learns where
//! devices are from the gateways' connection events, which the backend federates from each
//! gateway's event exchange into [`EVENTS_EXCHANGE`] (see
//! [`super::federation::backend_side`]), and from what devices send.

/// The exchange every gateway federates: messages for devices nobody knows the place of.
pub const BROADCAST_EXCHANGE: &str = "gw.all";

/// The exchange one region's gateways federate: messages for devices connected there.
pub fn region_exchange(region: &str) -> String {
    format!("gw.{region}")
}

/// The region a [`region_exchange`] names.
pub fn region_of_exchange(exchange: &str) -> Option<&str> {
    exchange
        .strip_prefix("gw.")
        .filter(|r| *r != "all" && !r.is_empty())
}

/// RabbitMQ's event exchange on each gateway (rabbitmq_event_exchange; internal, topic).
pub const EVENT_SOURCE: &str = "amq.rabbitmq.event";

/// The backend exchange the gateways' connection events arrive in.
pub const EVENTS_EXCHANGE: &str = "gwctl.events";

/// The events the router needs; nothing else crosses the links.
pub const CONNECTION_EVENTS: [&str; 2] = ["connection.created", "connection.closed"];

/// The router's queue of device-bound messages (quorum, single active consumer: however many
/// routers run, one device's messages go through one router at a time, in order).
pub const ROUTER_QUEUE: &str = "gwctl.router.commands";

/// Each router's own queues (events, telemetry) start with this and end with its id: they
/// live as long as the router (exclusive) — a router restarted learns again.
pub const ROUTER_QUEUE_PREFIX: &str = "gwctl.router.";

/// Reads device ids from routing keys laid out as a device topic filter (`commands/{device}/#`:
/// `commands.valve-3.close` is valve-3's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addressing {
    /// Literal levels before the device's.
    prefix: Vec<String>,
    /// Levels after the device's: literal ones, and whether any more may follow (`#`).
    suffix: Vec<String>,
    open: bool,
}

impl Addressing {
    /// From a device topic filter as validated in `backend.yaml` (one `{device}` level, a
    /// literal first level, an optional final `#`).
    pub fn new(filter: &str) -> Addressing {
        let levels: Vec<&str> = filter.split('/').collect();
        let at = levels.iter().position(|l| *l == "{device}").unwrap_or(0);
        let mut suffix: Vec<String> = levels[at + 1..].iter().map(|l| l.to_string()).collect();
        let open = suffix.last().is_some_and(|l| l == "#");
        if open {
            suffix.pop();
        }
        Addressing {
            prefix: levels[..at].iter().map(|l| l.to_string()).collect(),
            suffix,
            open,
        }
    }

    /// The device a routing key addresses, if it follows the layout.
    pub fn device<'k>(&self, routing_key: &'k str) -> Option<&'k str> {
        let levels: Vec<&str> = routing_key.split('.').collect();
        let at = self.prefix.len();
        let fixed = at + 1 + self.suffix.len();
        let fits = if self.open {
            levels.len() >= fixed
        } else {
            levels.len() == fixed
        };
        if !fits || levels[..at] != self.prefix[..] {
            return None;
        }
        if levels[at + 1..fixed] != self.suffix[..] {
            return None;
        }
        Some(levels[at]).filter(|d| !d.is_empty())
    }

    /// The topic binding key matching every routing key of the layout.
    pub fn binding_key(&self) -> String {
        let mut levels: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        levels.push("*");
        levels.extend(self.suffix.iter().map(String::as_str));
        if self.open {
            levels.push("#");
        }
        levels.join(".")
    }
}

/// A gateway connection event, as the router needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    Created {
        device: String,
        connection: String,
    },
    Closed {
        device: Option<String>,
        connection: String,
    },
}

/// Reads an event of RabbitMQ's event exchange from its routing key and headers (`get(name)`
/// gives a header's text values). Only MQTT connections count; a device is its user (the
/// certificate's common name), else its client id: RabbitMQ 4.0 sends
/// `client_properties` = [`{client_id,longstr,<<"dev42">>}`] with both events, 3.10 only
/// `variable_map` = `#{<<"client_id">> => <<"dev42">>}` with `created` (and nothing but the
/// connection's name with `closed`).
pub fn connection_event(
    routing_key: &str,
    get: impl Fn(&str) -> Option<Vec<String>>,
) -> Option<ConnectionEvent> {
    let one = |name: &str| get(name).and_then(|v| v.into_iter().next());
    let connection = one("name")?;
    let mqtt = one("protocol").map(|p| p.contains("MQTT"));
    let device = one("user").filter(|u| !u.is_empty()).or_else(|| {
        get("client_properties")
            .into_iter()
            .flatten()
            .chain(one("variable_map"))
            .find_map(|text| client_id(&text))
    });
    match routing_key {
        "connection.created" if mqtt == Some(true) => Some(ConnectionEvent::Created {
            device: device?,
            connection,
        }),
        // 3.10's `closed` names no protocol: the table knows whether it was a device's.
        "connection.closed" if mqtt != Some(false) => {
            Some(ConnectionEvent::Closed { device, connection })
        }
        _ => None,
    }
}

/// The client id in Erlang term text: `{client_id,longstr,<<"dev42">>}` or
/// `#{<<"client_id">> => <<"dev42">>}`.
fn client_id(text: &str) -> Option<String> {
    let after = &text[text.find("client_id")?..];
    let start = after.find("<<\"").map(|i| i + 3)?;
    let rest = &after[start..];
    // In the map form the key itself is a binary: skip to the value's.
    let rest = match rest.strip_prefix("client_id\">>") {
        Some(tail) => &tail[tail.find("<<\"")? + 3..],
        None => rest,
    };
    let end = rest.find("\">>")?;
    Some(rest[..end].to_string()).filter(|id| !id.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_device_from_keys_of_the_layout_only() {
        let a = Addressing::new("commands/{device}/#");
        assert_eq!(a.binding_key(), "commands.*.#");
        assert_eq!(a.device("commands.valve-3.close"), Some("valve-3"));
        assert_eq!(a.device("commands.valve-3"), Some("valve-3"));
        assert_eq!(a.device("telemetry.valve-3.t"), None);
        assert_eq!(a.device("commands"), None);
        assert_eq!(a.device("commands..x"), None);

        let exact = Addressing::new("site/a/{device}/cmd");
        assert_eq!(exact.binding_key(), "site.a.*.cmd");
        assert_eq!(exact.device("site.a.d1.cmd"), Some("d1"));
        assert_eq!(exact.device("site.a.d1.cmd.more"), None);
        assert_eq!(exact.device("site.b.d1.cmd"), None);
    }

    #[test]
    fn reads_connection_events_of_4_0_and_3_10() {
        let v4 = |k: &str| -> Option<Vec<String>> {
            match k {
                "name" => Some(vec!["10.0.0.9:5123 -> 10.10.1.5:8883".into()]),
                "protocol" => Some(vec!["{'MQTT',{3,1,1}}".into()]),
                "user" => Some(vec!["valve-3".into()]),
                "client_properties" => Some(vec!["{client_id,longstr,<<\"valve-3\">>}".into()]),
                _ => None,
            }
        };
        assert_eq!(
            connection_event("connection.created", v4),
            Some(ConnectionEvent::Created {
                device: "valve-3".into(),
                connection: "10.0.0.9:5123 -> 10.10.1.5:8883".into()
            })
        );
        assert!(matches!(
            connection_event("connection.closed", v4),
            Some(ConnectionEvent::Closed { device: Some(d), .. }) if d == "valve-3"
        ));
        let v310 = |k: &str| -> Option<Vec<String>> {
            match k {
                "name" => Some(vec!["c".into()]),
                "protocol" => Some(vec!["{'MQTT',\"3.1.1\"}".into()]),
                "variable_map" => Some(vec!["#{<<\"client_id\">> => <<\"dev42\">>}".into()]),
                _ => None,
            }
        };
        assert!(matches!(
            connection_event("connection.created", v310),
            Some(ConnectionEvent::Created { device, .. }) if device == "dev42"
        ));
        let amqp = |k: &str| -> Option<Vec<String>> {
            match k {
                "name" => Some(vec!["c".into()]),
                "protocol" => Some(vec!["{0,9,1}".into()]),
                "user" => Some(vec!["gwctl.federation".into()]),
                _ => None,
            }
        };
        assert_eq!(connection_event("connection.created", amqp), None);
        assert_eq!(connection_event("connection.closed", amqp), None);
        assert_eq!(connection_event("queue.created", v4), None);
    }

    #[test]
    fn region_exchanges_name_their_region() {
        assert_eq!(region_exchange("us-east-1"), "gw.us-east-1");
        assert_eq!(region_of_exchange("gw.us-east-1"), Some("us-east-1"));
        assert_eq!(region_of_exchange(BROADCAST_EXCHANGE), None);
        assert_eq!(region_of_exchange("amq.topic"), None);
    }
}
