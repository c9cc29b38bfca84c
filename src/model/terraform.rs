//! A Terraform configuration as data (what `gwctl export terraform` writes): blocks with
//! labels, attributes and nested blocks, values and references. `render::terraform` turns it
//! into HCL text.

/// A value on the right of `=`.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Num(i64),
    Bool(bool),
    List(Vec<Value>),
    /// An object (`tags = { ... }`), keys in order.
    Map(Vec<(String, Value)>),
    /// An expression written as is: a reference (`aws_vpc.main.id`), `var.x`, a function call.
    Expr(String),
}

impl Value {
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn strs<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Value {
        Value::List(items.into_iter().map(|s| Value::str(s.as_ref())).collect())
    }

    pub fn expr(s: impl Into<String>) -> Value {
        Value::Expr(s.into())
    }

    pub fn map<K: AsRef<str>, V: AsRef<str>>(items: impl IntoIterator<Item = (K, V)>) -> Value {
        Value::Map(
            items
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_string(), Value::str(v.as_ref())))
                .collect(),
        )
    }
}

/// `TYPE "label" "label" { body }`.
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub kind: String,
    pub labels: Vec<String>,
    pub body: Body,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Body {
    pub attrs: Vec<(String, Value)>,
    pub blocks: Vec<Block>,
    /// A comment written above the block (why something is as it is).
    pub comment: Option<String>,
}

impl Body {
    pub fn new() -> Body {
        Body::default()
    }

    pub fn attr(mut self, name: &str, value: Value) -> Body {
        self.attrs.push((name.to_string(), value));
        self
    }

    pub fn attr_opt(self, name: &str, value: Option<Value>) -> Body {
        match value {
            Some(v) => self.attr(name, v),
            None => self,
        }
    }

    pub fn block(mut self, kind: &str, body: Body) -> Body {
        self.blocks.push(Block {
            kind: kind.to_string(),
            labels: Vec::new(),
            body,
        });
        self
    }

    pub fn comment(mut self, text: impl Into<String>) -> Body {
        self.comment = Some(text.into());
        self
    }
}

impl Block {
    pub fn new(kind: &str, labels: &[&str], body: Body) -> Block {
        Block {
            kind: kind.to_string(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            body,
        }
    }
}

/// Everything `gwctl export terraform` writes for one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Export {
    pub region: String,
    /// `resource` blocks, in dependency order.
    pub resources: Vec<Block>,
    /// (resource address, the id `terraform import` takes).
    pub imports: Vec<(String, String)>,
    /// Sensitive input variables: (name, what it holds).
    pub variables: Vec<(String, String)>,
    /// Files beside the configuration (path, contents): each broker's user-data.
    pub files: Vec<(String, String)>,
    /// What gwctl manages there that the export leaves out: (what, why).
    pub not_exported: Vec<(String, String)>,
}

/// A Terraform identifier from a gwctl name: letters, digits and `_`, not starting with a
/// digit (`broker-1` → `broker_1`, `us-east-1a` → `us_east_1a`).
pub fn identifier(name: &str) -> String {
    let mut id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if id.is_empty() || id.starts_with(|c: char| c.is_ascii_digit()) {
        id.insert(0, '_');
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_terraform_names() {
        assert_eq!(identifier("broker-1"), "broker_1");
        assert_eq!(identifier("us-east-1a"), "us_east_1a");
        assert_eq!(identifier("1st"), "_1st");
        assert_eq!(identifier(""), "_");
    }
}
