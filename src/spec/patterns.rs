//! Regular expressions shared by the schema and by error messages, with the words a person
//! should read instead of the expression when a value does not match.

/// An IPv4 CIDR with octets 0-255 and a prefix 0-32.
pub const CIDR: &str = r"^((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])$";

/// `env:VAR` or `file:PATH`.
pub const SECRET_REF: &str = r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:.+)$";

/// What a value matching `pattern` looks like, for error messages.
pub fn describe(pattern: &str) -> Option<&'static str> {
    Some(match pattern {
        CIDR => "an IPv4 CIDR such as 10.10.0.0/16",
        SECRET_REF => "a secret source: env:VAR or file:PATH (never the secret itself)",
        r"^ami-[0-9a-f]{8,17}$" => "an AMI id such as ami-0123456789abcdef0",
        r"^[a-z][a-z0-9-]*\.[a-z0-9]+$" => "an EC2 instance type such as c6i.large",
        r"^[a-z]{2}(-[a-z]+)+-[0-9]+[a-z]$" => "an availability zone such as us-east-1a",
        r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}\.?$" => {
            "a lower-case DNS name such as mqtt.example.com"
        }
        r"^/[^\s]*$" => "an HTTP path starting with /",
        r"^[a-z][a-z0-9-]{0,31}$" => "a lower-case name of up to 32 letters, digits and dashes",
        _ => return None,
    })
}
