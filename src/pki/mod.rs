//! Certificates without a PKI project: gwctl's certificate authorities, the certificates it
//! issues (brokers' server certificates, device certificates) and the checks every
//! certificate passes before anything uses it.
//!
//! Keys are ECDSA P-256 (every supported Erlang/OTP and MQTT TLS stack speaks it). Private keys
//! only ever travel as [`Secret`]s, so they print as a mask.
//!
//! Pure computation: nothing here reads files or talks to the network.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::spec::secret::Secret;

/// How long gwctl's certificate authorities are valid.
pub const CA_DAYS: u32 = 3650;
/// How long the certificates gwctl issues are valid (what public CAs may issue at most today).
pub const LEAF_DAYS: u32 = 397;
/// `plan` warns this long before a certificate expires.
pub const WARN_BEFORE: Duration = Duration::from_secs(30 * 86_400);
/// The common name of the certificate the backend's federation links present to gateways: a
/// dot keeps it from ever being a device id.
pub const LINK_COMMON_NAME: &str = "gwctl.backend-link";
/// Certificates start this long in the past, so a peer whose clock runs behind accepts them.
const BACKDATE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PkiError {
    #[error("not a PEM certificate")]
    NotACertificate,
    #[error("not a PEM private key")]
    NotAKey,
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("not a CA certificate (basic constraints CA:FALSE or missing)")]
    NotACa,
    #[error("expired on {0}")]
    Expired(String),
    #[error("not valid before {0}")]
    NotYetValid(String),
    #[error("not signed by the expected CA")]
    UnknownIssuer,
    #[error("does not cover `{0}` (its names: {1})")]
    NameNotCovered(String, String),
    #[error("`{0}` is not a valid DNS name or IP address")]
    BadName(String),
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("cannot issue: {0}")]
    Issue(String),
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: Option<String>,
    /// DNS names and IP addresses (subjectAltName).
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    pub is_ca: bool,
    /// SHA-256 of the DER encoding, hex: identifies a certificate in plans without showing it.
    pub sha256: String,
    /// Subject key identifier (hex), or the SHA-256 of the public key when it has none.
    pub key_id: String,
    /// Authority key identifier (hex): which CA key signed it.
    pub authority_key_id: Option<String>,
}

impl CertInfo {
    /// `2027-01-31` style date of expiry.
    pub fn expires(&self) -> String {
        date(self.not_after)
    }

    /// Whether the certificate expires within `window` of `now`.
    pub fn expires_within(&self, now: SystemTime, window: Duration) -> bool {
        self.not_after <= now + window
    }
}

/// A certificate authority gwctl signs with.
pub struct Authority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A freshly issued certificate and its key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl Authority {
    /// A new self-signed CA; returns the authority and its private key (PEM).
    pub fn generate(common_name: &str, now: SystemTime) -> Result<(Authority, Secret), PkiError> {
        let key = KeyPair::generate().map_err(issue_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, now, CA_DAYS);
        let cert = params.self_signed(&key).map_err(issue_err)?;
        let key_pem = Secret::new(key.serialize_pem());
        Ok((
            Authority {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    /// A CA from its certificate and private key (PEM), checking that they belong together and
    /// that the certificate is a CA valid at `now`.
    pub fn load(cert_pem: &str, key_pem: &Secret, now: SystemTime) -> Result<Authority, PkiError> {
        let der = first_cert(cert_pem)?;
        let info = inspect_der(&der)?;
        if !info.is_ca {
            return Err(PkiError::NotACa);
        }
        check_time(&info, now)?;
        let key = KeyPair::from_pem(key_pem.expose()).map_err(|_| PkiError::NotAKey)?;
        let (_, x509) =
            x509_parser::parse_x509_certificate(&der).map_err(|_| PkiError::NotACertificate)?;
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(PkiError::KeyMismatch);
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(issue_err)?;
        Ok(Authority {
            cert_pem: cert_pem.trim().to_string() + "\n",
            issuer,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server certificate for `names` (DNS names or IP addresses; the first is also the
    /// common name).
    pub fn issue_server(&self, names: &[String], now: SystemTime) -> Result<Issued, PkiError> {
        let first = names
            .first()
            .ok_or_else(|| PkiError::Issue("a server certificate needs a name".into()))?;
        let mut params = CertificateParams::new(names.to_vec())
            .map_err(|_| PkiError::BadName(names.join(", ")))?;
        params.distinguished_name = name(first);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        validity(&mut params, now, LEAF_DAYS);
        self.sign(params)
    }

    /// A TLS client certificate for `common_name`, which is also its DNS name: a gateway
    /// binds an MQTT client id to that name, and a name with a dot (`gwctl.backend-link`) can
    /// never be a device's id, so such a certificate cannot act as a device.
    pub fn issue_client(&self, common_name: &str, now: SystemTime) -> Result<Issued, PkiError> {
        self.sign(client_params(
            common_name,
            vec![common_name.to_string()],
            now,
        )?)
    }

    /// A device's client certificate: its id as common name (the broker's user name) and as
    /// DNS name (the broker ties the MQTT client id to it).
    pub fn issue_device(&self, id: &str, now: SystemTime) -> Result<Issued, PkiError> {
        self.sign(client_params(id, vec![id.to_string()], now)?)
    }

    fn sign(&self, params: CertificateParams) -> Result<Issued, PkiError> {
        let key = KeyPair::generate().map_err(issue_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: Secret::new(key.serialize_pem()),
        })
    }
}

/// Reads the first certificate of a PEM text.
pub fn inspect(pem: &str) -> Result<CertInfo, PkiError> {
    inspect_der(&first_cert(pem)?)
}

/// The certificates of a PEM text without anything else (keys), for showing or storing.
pub fn public_part(pem: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in pem.lines() {
        if line.starts_with("-----BEGIN CERTIFICATE-----") {
            inside = true;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END CERTIFICATE-----") {
            inside = false;
        }
    }
    out
}

/// Checks a CA certificate (PEM) for use at `now`.
pub fn check_ca(pem: &str, now: SystemTime) -> Result<CertInfo, PkiError> {
    let info = inspect(pem)?;
    if !info.is_ca {
        return Err(PkiError::NotACa);
    }
    check_time(&info, now)?;
    Ok(info)
}

/// Checks that a PEM private key parses.
pub fn check_key(key_pem: &Secret) -> Result<(), PkiError> {
    PrivateKeyDer::from_pem_slice(key_pem.expose().as_bytes())
        .map(drop)
        .map_err(|_| PkiError::NotAKey)
}

/// Verifies a server certificate as a TLS client would: signed by `ca_pem`, valid at `now`,
/// covering `name`.
pub fn verify_server(
    ca_pem: &str,
    cert_pem: &str,
    name: &str,
    now: SystemTime,
) -> Result<(), PkiError> {
    let certs = all_certs(cert_pem)?;
    let (leaf, intermediates) = certs.split_first().ok_or(PkiError::NotACertificate)?;
    let info = inspect_der(leaf)?;
    let verifier = webpki_verifier(ca_pem)?;
    let server =
        ServerName::try_from(name.to_string()).map_err(|_| PkiError::BadName(name.into()))?;
    let at = UnixTime::since_unix_epoch(
        now.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    verifier
        .verify_server_cert(leaf, intermediates, &server, &[], at)
        .map(drop)
        .map_err(|e| explain(e, &info, name))
}

/// A root store holding the CA certificates of a PEM text.
pub fn roots(ca_pem: &str) -> Result<RootCertStore, PkiError> {
    let mut store = RootCertStore::empty();
    for der in all_certs(ca_pem)? {
        store
            .add(der)
            .map_err(|e| PkiError::Rejected(e.to_string()))?;
    }
    Ok(store)
}

/// As [`client_config`], verifying the server's certificate against `name` whatever address
/// the connection goes to: a broker reached at an address (its Elastic IP, a sandbox's
/// loopback port) presents its region's name.
pub fn client_config_for_name(
    ca_pem: &str,
    identity: Option<(&str, &Secret)>,
    name: &str,
) -> Result<rustls::ClientConfig, PkiError> {
    let mut config = client_config(ca_pem, identity)?;
    let inner = webpki_verifier(ca_pem)?;
    let name =
        ServerName::try_from(name.to_string()).map_err(|_| PkiError::BadName(name.into()))?;
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(NamedVerifier { inner, name }));
    Ok(config)
}

/// A verifier of server certificates chaining to the CAs of `ca_pem`.
fn webpki_verifier(ca_pem: &str) -> Result<Arc<WebPkiServerVerifier>, PkiError> {
    WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .map_err(|e| PkiError::Rejected(e.to_string()))
}

/// Verifies as WebPKI does, for a fixed name instead of the one the connection asked for.
#[derive(Debug)]
struct NamedVerifier {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for NamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _asked: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A rustls client configuration trusting only the CAs of `ca_pem`, presenting
/// `identity` (certificate chain and key, PEM) when given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &Secret)>,
) -> Result<rustls::ClientConfig, PkiError> {
    let builder = config_builder()?.with_root_certificates(roots(ca_pem)?);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                .map_err(|_| PkiError::NotAKey)?;
            builder
                .with_client_auth_cert(all_certs(cert)?, key)
                .map_err(|e| PkiError::Rejected(e.to_string()))
        }
    }
}

/// A rustls client configuration trusting no CA, for an HTTP client that speaks plain HTTP
/// only but wants a TLS configuration with its crypto provider named (no process-wide default
/// is installed).
pub fn plain_http_config() -> Result<rustls::ClientConfig, PkiError> {
    Ok(config_builder()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}

/// The one choice of crypto provider and protocol versions every client configuration makes.
fn config_builder()
-> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, PkiError> {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| PkiError::Rejected(e.to_string()))
}

fn explain(e: rustls::Error, info: &CertInfo, name: &str) -> PkiError {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => {
            PkiError::Expired(info.expires())
        }
        rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. }) => {
            PkiError::NotYetValid(date(info.not_before))
        }
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            PkiError::UnknownIssuer
        }
        rustls::Error::InvalidCertificate(
            C::NotValidForName | C::NotValidForNameContext { .. },
        ) => PkiError::NameNotCovered(name.to_string(), info.names.join(", ")),
        other => PkiError::Rejected(other.to_string()),
    }
}

fn check_time(info: &CertInfo, now: SystemTime) -> Result<(), PkiError> {
    if info.not_after <= now {
        return Err(PkiError::Expired(info.expires()));
    }
    if info.not_before > now {
        return Err(PkiError::NotYetValid(date(info.not_before)));
    }
    Ok(())
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| PkiError::NotACertificate)
}

fn all_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| PkiError::NotACertificate)?;
    if certs.is_empty() {
        return Err(PkiError::NotACertificate);
    }
    Ok(certs)
}

fn inspect_der(der: &[u8]) -> Result<CertInfo, PkiError> {
    use x509_parser::extensions::GeneralName;
    let (_, x509) =
        x509_parser::parse_x509_certificate(der).map_err(|_| PkiError::NotACertificate)?;
    let common_name = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let mut names = Vec::new();
    if let Ok(Some(san)) = x509.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push(d.to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        names.push(std::net::Ipv4Addr::from(v4).to_string());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        names.push(std::net::Ipv6Addr::from(v6).to_string());
                    }
                }
                _ => {}
            }
        }
    }
    let is_ca = matches!(x509.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut key_id = None;
    let mut authority_key_id = None;
    for ext in x509.extensions() {
        match ext.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => {
                key_id = Some(hex(k.0));
            }
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                authority_key_id = a.key_identifier.as_ref().map(|k| hex(k.0));
            }
            _ => {}
        }
    }
    let key_id = key_id.unwrap_or_else(|| {
        crate::model::sha256_hex_bytes(x509.public_key().subject_public_key.data.as_ref())
    });
    let at = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs as u64)
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok(CertInfo {
        common_name,
        names,
        not_before: at(x509.validity().not_before),
        not_after: at(x509.validity().not_after),
        is_ca,
        sha256: crate::model::sha256_hex_bytes(der),
        key_id,
        authority_key_id,
    })
}

fn client_params(
    common_name: &str,
    names: Vec<String>,
    now: SystemTime,
) -> Result<CertificateParams, PkiError> {
    let mut params =
        CertificateParams::new(names).map_err(|_| PkiError::BadName(common_name.into()))?;
    params.distinguished_name = name(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, now, LEAF_DAYS);
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, now: SystemTime, days: u32) {
    let now = OffsetDateTime::from(now);
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

fn issue_err(e: rcgen::Error) -> PkiError {
    PkiError::Issue(e.to_string())
}

/// `YYYY-MM-DD` (UTC).
pub fn date(t: SystemTime) -> String {
    let t = OffsetDateTime::from(t);
    format!("{:04}-{:02}-{:02}", t.year(), u8::from(t.month()), t.day())
}

#[cfg(test)]
mod tests;
