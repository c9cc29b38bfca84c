//! `gwctl schema`: a JSON Schema editors can use, in sync with the model.

use crate::support::Regions;

fn schema(kind: &str) -> serde_json::Value {
    let r = Regions::examples();
    let out = r.gwctl().args(["schema", kind]).output().expect("run");
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).expect("schema is JSON")
}

#[test]
fn gateway_schema_describes_fields_and_forbids_unknown_keys() {
    let s = schema("gateway");
    assert_eq!(s["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(s["additionalProperties"], false);
    let required: Vec<&str> = s["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(required.contains(&"region") && required.contains(&"brokers"));
    let brokers = &s["$defs"]["Brokers"];
    assert_eq!(
        brokers["properties"]["instance_type"]["default"],
        "c6i.large"
    );
    assert_eq!(brokers["properties"]["count"]["minimum"], 1);
    assert!(
        brokers["properties"]["count"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("broker nodes"))
    );
}

#[test]
fn backend_schema_requires_the_stack_name() {
    let s = schema("backend");
    let required: Vec<&str> = s["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for key in [
        "stack",
        "region",
        "network_cidr",
        "vpn",
        "brokers",
        "dns",
        "credentials",
    ] {
        assert!(required.contains(&key), "{key}");
    }
}
