//! Structural checks against the JSON Schema derived from the model: unknown keys (with the
//! nearest known key suggested), types, enums, ranges, required keys. Every violation in a file
//! is reported, each at the line and column of the offending key or value.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use schemars::JsonSchema;
use serde_json::Value;

use super::diag::Sink;
use super::model::{BackendSpec, GatewaySpec};
use super::patterns;
use super::yaml::pointer_segment;

/// Which kind of region file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileKind {
    Gateway,
    Backend,
}

/// The JSON Schema of one kind of region file.
pub fn schema(kind: FileKind) -> &'static Value {
    static GATEWAY: OnceLock<Value> = OnceLock::new();
    static BACKEND: OnceLock<Value> = OnceLock::new();
    match kind {
        FileKind::Gateway => GATEWAY.get_or_init(|| to_value::<GatewaySpec>("gateway")),
        FileKind::Backend => BACKEND.get_or_init(|| to_value::<BackendSpec>("backend")),
    }
}

fn to_value<T: JsonSchema>(name: &str) -> Value {
    let mut v = schemars::schema_for!(T).to_value();
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "$id".into(),
            Value::String(format!("https://gwctl.dev/schema/{name}.json")),
        );
    }
    v
}

fn validator(kind: FileKind) -> &'static Validator {
    static GATEWAY: OnceLock<Validator> = OnceLock::new();
    static BACKEND: OnceLock<Validator> = OnceLock::new();
    let cell = match kind {
        FileKind::Gateway => &GATEWAY,
        FileKind::Backend => &BACKEND,
    };
    // The schema is generated from our own types at build time; failing to compile it is a bug
    // in gwctl, not something input can cause.
    cell.get_or_init(|| {
        jsonschema::validator_for(schema(kind)).expect("the generated schema compiles")
    })
}

/// Checks `value` against the schema of `kind`, reporting every violation into `sink`.
pub fn check(kind: FileKind, value: &Value, sink: &mut Sink<'_>) {
    let root = schema(kind);
    for error in validator(kind).iter_errors(value) {
        report(root, &error, sink);
    }
}

fn report(root: &Value, error: &ValidationError<'_>, sink: &mut Sink<'_>) {
    let at = error.instance_path().as_str().to_string();
    match error.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            let known = known_keys(root, &at);
            for key in unexpected {
                let mut msg = format!("unknown key `{key}`");
                match suggest(key, &known) {
                    Some(s) => msg.push_str(&format!(" (did you mean `{s}`?)")),
                    None if !known.is_empty() => {
                        msg.push_str(&format!(" (known keys: {})", known.join(", ")))
                    }
                    None => {}
                }
                sink.at_key(&format!("{at}/{}", pointer_segment(key)), msg);
            }
        }
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            // At the parent's key (`brokers:`), where the missing key belongs.
            sink.at_key(&at, format!("missing required key `{name}`"));
        }
        ValidationErrorKind::Type { .. } => {
            let expected = expected_types(root, &at);
            sink.at(
                &at,
                format!(
                    "must be {expected}, not {}",
                    describe_value(error.instance(), &at)
                ),
            );
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|o| o.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut msg = format!("must be one of: {}", opts.join(", "));
            if let Some(s) = error.instance().as_str().and_then(|v| suggest(v, &opts)) {
                msg.push_str(&format!(" (did you mean `{s}`?)"));
            }
            sink.at(&at, msg);
        }
        ValidationErrorKind::Constant { expected_value } => {
            sink.at(&at, format!("must be {expected_value}"));
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => {
            sink.at(&at, format!("must be at least {limit}"));
        }
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => {
            sink.at(&at, format!("must be at most {limit}"));
        }
        ValidationErrorKind::MinItems { limit } => {
            sink.at(
                &at,
                format!(
                    "needs at least {limit} entr{}",
                    if *limit == 1 { "y" } else { "ies" }
                ),
            );
        }
        ValidationErrorKind::MaxItems { limit } => {
            sink.at(&at, format!("allows at most {limit} entries"));
        }
        ValidationErrorKind::MinLength { limit } if *limit == 1 => {
            sink.at(&at, "must not be empty")
        }
        ValidationErrorKind::MinLength { limit } => {
            sink.at(&at, format!("must be at least {limit} characters"))
        }
        ValidationErrorKind::MaxLength { limit } => {
            sink.at(&at, format!("must be at most {limit} characters"))
        }
        ValidationErrorKind::Pattern { pattern } => {
            let what = patterns::describe(pattern)
                .map(str::to_string)
                .unwrap_or_else(|| format!("a value matching {pattern}"));
            sink.at(
                &at,
                format!("{} is not {what}", describe_value(error.instance(), &at)),
            );
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            match best_branch(context, &at) {
                Some(branch) => {
                    for e in branch {
                        report(root, e, sink);
                    }
                }
                None => sink.at(
                    &at,
                    format!(
                        "must be {}, not {}",
                        expected_types(root, &at),
                        describe_value(error.instance(), &at)
                    ),
                ),
            }
        }
        _ => sink.at(&at, error.to_string()),
    }
}

/// Of the alternatives of an `anyOf`/`oneOf`, the one whose errors are fewest, ignoring
/// alternatives the value does not even have the shape of. `None` if no alternative fits.
fn best_branch<'a>(
    context: &'a [Vec<ValidationError<'static>>],
    at: &str,
) -> Option<&'a Vec<ValidationError<'static>>> {
    context
        .iter()
        .filter(|errs| {
            !errs.iter().any(|e| {
                e.instance_path().as_str() == at
                    && matches!(e.kind(), ValidationErrorKind::Type { .. })
            })
        })
        .min_by_key(|errs| errs.len())
}

/// Fields that name a secret source. If someone writes the secret itself there by mistake,
/// error messages must not repeat it.
const SECRET_FIELDS: [&str; 2] = ["password", "erlang_cookie"];

fn describe_value(v: &Value, pointer: &str) -> String {
    if SECRET_FIELDS
        .iter()
        .any(|f| pointer.ends_with(&format!("/{f}")))
    {
        return "the value given (not shown: this field names a secret source)".to_string();
    }
    match v {
        Value::Null => "empty".to_string(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string \"{s}\""),
        Value::Array(_) => "a list".to_string(),
        Value::Object(_) => "a mapping".to_string(),
    }
}

/// The sub-schema describing the value at `pointer`, with `$ref`s resolved; alternatives of
/// `anyOf`/`oneOf` are returned together.
fn schemas_at<'a>(root: &'a Value, pointer: &str) -> Vec<&'a Value> {
    let mut current = expand(root, root);
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let mut next = Vec::new();
        for s in current {
            let child = s
                .get("properties")
                .and_then(|p| p.get(seg.as_str()))
                .or_else(|| s.get("items"))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()));
            if let Some(child) = child {
                next.extend(expand(root, child));
            }
        }
        current = next;
    }
    current
}

fn expand<'a>(root: &'a Value, schema: &'a Value) -> Vec<&'a Value> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = r.strip_prefix('#').and_then(|p| root.pointer(p));
        return target.map(|t| expand(root, t)).unwrap_or_default();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(alts) = schema.get(key).and_then(Value::as_array) {
            return alts.iter().flat_map(|a| expand(root, a)).collect();
        }
    }
    vec![schema]
}

fn known_keys(root: &Value, pointer: &str) -> Vec<String> {
    let mut keys: Vec<String> = schemas_at(root, pointer)
        .into_iter()
        .filter_map(|s| s.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().cloned())
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn expected_types(root: &Value, pointer: &str) -> String {
    let mut names: Vec<&str> = Vec::new();
    for s in schemas_at(root, pointer) {
        let types: Vec<&str> = match s.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ if s.get("enum").is_some() => vec!["string"],
            _ => vec![],
        };
        for t in types {
            let name = match t {
                "object" => "a mapping",
                "array" => "a list",
                "string" => "a string",
                "integer" => "an integer",
                "number" => "a number",
                "boolean" => "true or false",
                "null" => continue,
                _ => continue,
            };
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        "a valid value".to_string()
    } else {
        names.join(" or ")
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a plausible typo.
pub fn suggest(word: &str, candidates: &[String]) -> Option<String> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.clone())
}
