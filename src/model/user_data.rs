//! How user-data travels to EC2: gzip-compressed (cloud-init recognises the gzip magic and
//! inflates it), because RunInstances refuses more than 16 KiB and a broker's cloud-config,
//! with its scripts and configuration, is larger.

use std::io::Write;

/// EC2's limit on user-data, in bytes before base64.
pub const MAX_BYTES: usize = 16_384;

/// The bytes RunInstances receives for `text`.
pub fn encode(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(text.as_bytes());
    gz.finish().unwrap_or_default()
}

/// [`encode`], base64-encoded: the `UserData` parameter of RunInstances (and the file
/// `export terraform` writes for an instance's `user_data_base64`).
pub fn encode_base64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(encode(text))
}

/// The text of user-data as RunInstances received it: inflated when gzip-compressed (as
/// gwctl sends it), as is otherwise.
pub fn decode(bytes: &[u8]) -> Result<String, std::io::Error> {
    use std::io::Read;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut text = String::new();
        flate2::read::GzDecoder::new(bytes).read_to_string(&mut text)?;
        Ok(text)
    } else {
        String::from_utf8(bytes.to_vec())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }
}

/// The `rabbitmq-server` version a broker's cloud-config installs (its `packages` entry, as
/// `templates/gateway/user-data.yaml.tera` renders it).
pub fn rabbitmq_package(text: &str) -> Option<&str> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("- [rabbitmq-server, \""))
        .and_then(|rest| rest.strip_suffix("\"]"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn round_trips_and_shrinks() {
        let text = "#cloud-config\n".to_string() + &"write_files: []\n".repeat(2000);
        let bytes = encode(&text);
        assert!(bytes.len() < text.len() / 10);
        assert_eq!(
            &bytes[..2],
            &[0x1f, 0x8b],
            "gzip magic, which cloud-init looks for"
        );
        let mut back = String::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut back)
            .expect("inflate");
        assert_eq!(back, text);
        assert_eq!(decode(&bytes).expect("decode"), text);
        assert_eq!(decode(text.as_bytes()).expect("plain"), text);
    }

    #[test]
    fn finds_the_package_a_broker_installs() {
        let text = "#cloud-config\npackages:\n  - [rabbitmq-server, \"4.0.5-6+deb13u2\"]\n";
        assert_eq!(rabbitmq_package(text), Some("4.0.5-6+deb13u2"));
        assert_eq!(rabbitmq_package("#cloud-config\n"), None);
    }
}
