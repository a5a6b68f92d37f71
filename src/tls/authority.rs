//! The self-signed certificate authority, as pure decisions over the Secret's contents:
//! what to create, when to renew the serving certificate, how to rotate the CA without a
//! single failed webhook call. The Kubernetes side is [`super::selfsigned`].
//!
//! The Secret holds `ca.crt` (the trusted bundle, the signing CA first), `ca.key`,
//! `tls.crt` and `tls.key`. Every change keeps every serving certificate a replica may
//! still present trusted by the `caBundle` the API server holds:
//!
//! ```text
//!  leaf near expiry ──▶ new leaf from the same CA           (bundle unchanged)
//!  CA near expiry   ──▶ bundle = [new CA, old CA]; a last leaf from the old CA
//!                       (the API server learns the new CA)
//!     …grace…       ──▶ new leaf from the new CA            (replicas swap at their next read)
//!     …grace…       ──▶ bundle = [new CA]                    (no replica serves the old leaf)
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// The Secret's keys.
pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const TLS_CERT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";

/// Certificates are back-dated by this much, for clocks a little behind ours.
const SKEW: Duration = Duration::minutes(5);

/// What the authority issues and how early it renews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The names of the serving certificate (the first is its CN).
    pub dns_names: Vec<String>,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
    /// How long a change must be known before the next one relies on it: the API server
    /// must have the new `caBundle`, and every replica the new serving certificate.
    pub grace: Duration,
}

impl Policy {
    /// Why this policy could serve an expired certificate with replicas that read the
    /// Secret every `interval`, if it could: a serving certificate must outlive a grace
    /// period plus a read, both on its own and when issued at a CA rotation.
    pub fn check(&self, interval: Duration) -> Result<(), String> {
        if self.cert_validity * 2 > self.ca_validity {
            return Err(format!(
                "the serving certificate's lifetime {} must be at most half the CA's {}",
                self.cert_validity, self.ca_validity
            ));
        }
        let shortest = self.cert_validity.min(self.ca_validity / 3);
        if shortest <= self.grace + interval || self.cert_validity / 3 <= interval * 2 {
            return Err(format!(
                "lifetimes too short for a reload interval of {interval}: a serving certificate must outlive \
                 {} (three reloads and two seconds, then one more reload), and a third of it two reloads",
                self.grace + interval
            ));
        }
        Ok(())
    }

    /// Renewal starts when a third of the lifetime is left, as cert-manager's default.
    fn renew_cert_at(&self, not_after: OffsetDateTime) -> OffsetDateTime {
        not_after - self.cert_validity / 3
    }

    fn renew_ca_at(&self, not_after: OffsetDateTime) -> OffsetDateTime {
        not_after - self.ca_validity / 3
    }
}

/// The Secret's certificates and keys, all PEM, and when we last changed them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Material {
    pub ca_pem: String,
    pub ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// When this material was written (the Secret's annotation); `None` counts as long ago.
    pub changed_at: Option<OffsetDateTime>,
}

/// Why the material changes, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Created,
    /// The stored material did not parse, its keys did not match, or it had expired.
    Replaced,
    CaRotated,
    CertRenewed,
    OldCaDropped,
}

impl Change {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Replaced => "replaced unusable certificates",
            Self::CaRotated => "added a new CA to the bundle",
            Self::CertRenewed => "renewed the serving certificate",
            Self::OldCaDropped => "dropped the previous CA from the bundle",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    #[error("generating certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// What one certificate says about itself.
#[derive(Debug, Clone)]
struct Info {
    subject: String,
    issuer: String,
    not_after: OffsetDateTime,
    dns_names: Vec<String>,
}

/// Why stored material cannot be served as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unusable(String);

/// The parsed material: the bundle (signing CA first) and the serving certificate.
#[derive(Debug)]
struct Parsed {
    cas: Vec<(Info, String)>,
    leaf: Info,
}

/// The next material, or `None` when the stored one needs no change at `now`.
pub fn next(
    stored: Option<&Material>,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<Option<(Material, Change)>, AuthorityError> {
    let Some(stored) = stored else { return Ok(Some((fresh(policy, now)?, Change::Created))) };
    let parsed = match check(stored, now) {
        Ok(parsed) => parsed,
        Err(_) => return Ok(Some((fresh(policy, now)?, Change::Replaced))),
    };
    let signing = &parsed.cas[0].0;
    let settled = stored.changed_at.is_none_or(|at| now >= at + policy.grace);
    if now >= policy.renew_ca_at(signing.not_after) && parsed.cas.len() == 1 && signing.subject == parsed.leaf.issuer {
        // The new CA is not trusted yet, so the serving certificate of the grace period
        // comes from the old one, issued now while its key is at hand: it lives as long
        // as the old CA does, longer than the grace.
        let (cert_pem, key_pem) = new_leaf(stored, signing.not_after, policy, now)?;
        let (ca_pem, ca_key) = new_ca(policy, now)?;
        let material = Material {
            ca_pem: format!("{ca_pem}{}", stored.ca_pem),
            ca_key_pem: ca_key.serialize_pem(),
            cert_pem,
            key_pem,
            changed_at: Some(now),
        };
        return Ok(Some((material, Change::CaRotated)));
    }
    let leaf = &parsed.leaf;
    let leaf_expired = now >= leaf.not_after;
    // A renewal that would not outlive the current certificate (capped by the CA's own
    // end) waits for the CA rotation instead of looping.
    let extends = (now + policy.cert_validity).min(signing.not_after) > leaf.not_after;
    let leaf_due = (now >= policy.renew_cert_at(leaf.not_after) && extends) || leaf.dns_names != policy.dns_names;
    let leaf_from_old_ca = leaf.issuer != signing.subject;
    // From the same CA a renewal is always safe; a move to a new CA waits for the grace.
    if leaf_expired || (leaf_due && !leaf_from_old_ca) || (leaf_from_old_ca && settled) {
        let (cert_pem, key_pem) = new_leaf(stored, signing.not_after, policy, now)?;
        let material = Material { cert_pem, key_pem, changed_at: Some(now), ..stored.clone() };
        return Ok(Some((material, Change::CertRenewed)));
    }
    if settled && parsed.cas.len() > 1 {
        let material = Material { ca_pem: parsed.cas[0].1.clone(), changed_at: Some(now), ..stored.clone() };
        return Ok(Some((material, Change::OldCaDropped)));
    }
    Ok(None)
}

/// Whether `material` can be served at `now`: everything parses, the CA key signs the
/// first CA of the bundle, the serving certificate is valid and chains to the bundle.
pub fn usable(material: &Material, now: OffsetDateTime) -> Result<(), Unusable> {
    check(material, now).map(|_| ())
}

fn check(material: &Material, now: OffsetDateTime) -> Result<Parsed, Unusable> {
    let unusable = |key: &str, e: &dyn std::fmt::Display| Unusable(format!("{key}: {e}"));
    let mut cas = Vec::new();
    for block in pem_blocks(&material.ca_pem) {
        let der = CertificateDer::from_pem_slice(block.as_bytes()).map_err(|e| unusable(CA_CERT, &e))?;
        cas.push((info(&der).map_err(|e| unusable(CA_CERT, &e))?, block));
    }
    let Some((signing, signing_pem)) = cas.first() else { return Err(Unusable(format!("{CA_CERT}: no certificate"))) };
    if now >= signing.not_after {
        return Err(Unusable(format!("{CA_CERT}: the CA expired at {}", signing.not_after)));
    }
    let ca_key = KeyPair::from_pem(&material.ca_key_pem).map_err(|e| unusable(CA_KEY, &e))?;
    if public_key(signing_pem).map_err(|e| unusable(CA_CERT, &e))? != ca_key.public_key_raw() {
        return Err(Unusable(format!("{CA_KEY} is not the key of the first CA in {CA_CERT}")));
    }
    let leaf =
        pem_blocks(&material.cert_pem).into_iter().next().ok_or_else(|| unusable(TLS_CERT, &"no certificate"))?;
    let leaf = CertificateDer::from_pem_slice(leaf.as_bytes()).map_err(|e| unusable(TLS_CERT, &e))?;
    let leaf = info(&leaf).map_err(|e| unusable(TLS_CERT, &e))?;
    if !cas.iter().any(|(ca, _)| ca.subject == leaf.issuer) {
        return Err(Unusable(format!("{TLS_CERT} was issued by {}, which {CA_CERT} does not hold", leaf.issuer)));
    }
    KeyPair::from_pem(&material.key_pem).map_err(|e| unusable(TLS_KEY, &e))?;
    Ok(Parsed { cas, leaf })
}

/// The PEM blocks of a bundle, each with its BEGIN and END lines.
fn pem_blocks(text: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let (Some(begin), Some(end)) = (rest.find("-----BEGIN CERTIFICATE-----"), rest.find(END)) {
        if end < begin {
            rest = &rest[end + END.len()..];
            continue;
        }
        blocks.push(format!("{}\n", &rest[begin..end + END.len()]));
        rest = &rest[end + END.len()..];
    }
    blocks
}

fn public_key(pem: &str) -> Result<Vec<u8>, String> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| e.to_string())?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|e| e.to_string())?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

fn info(der: &CertificateDer<'_>) -> Result<Info, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let not_after =
        OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).map_err(|e| e.to_string())?;
    let dns_names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(name) => Some((*name).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(Info { subject: cert.subject().to_string(), issuer: cert.issuer().to_string(), not_after, dns_names })
}

/// A new CA and a serving certificate it signed.
fn fresh(policy: &Policy, now: OffsetDateTime) -> Result<Material, AuthorityError> {
    let (ca_pem, ca_key) = new_ca(policy, now)?;
    let mut material = Material {
        ca_pem,
        ca_key_pem: ca_key.serialize_pem(),
        cert_pem: String::new(),
        key_pem: String::new(),
        changed_at: Some(now),
    };
    let (cert_pem, key_pem) = new_leaf(&material, now + policy.ca_validity, policy, now)?;
    material.cert_pem = cert_pem;
    material.key_pem = key_pem;
    Ok(material)
}

fn new_ca(policy: &Policy, now: OffsetDateTime) -> Result<(String, KeyPair), rcgen::Error> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    // Unique per CA (a piece of its public key), so a serving certificate names the CA
    // that signed it.
    let raw = key.public_key_raw();
    let id: String = raw[raw.len().saturating_sub(8)..].iter().map(|b| format!("{b:02x}")).collect();
    params.distinguished_name.push(DnType::CommonName, format!("apisix-canary CA {id}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - SKEW;
    params.not_after = now + policy.ca_validity;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key))
}

/// A serving certificate signed by the first CA of `material`, never outliving it.
fn new_leaf(
    material: &Material,
    ca_not_after: OffsetDateTime,
    policy: &Policy,
    now: OffsetDateTime,
) -> Result<(String, String), rcgen::Error> {
    let ca_key = KeyPair::from_pem(&material.ca_key_pem)?;
    let first_ca = pem_blocks(&material.ca_pem).into_iter().next().ok_or(rcgen::Error::CouldNotParseCertificate)?;
    let issuer = Issuer::from_ca_cert_pem(&first_ca, ca_key)?;
    let mut params = CertificateParams::new(policy.dns_names.clone())?;
    if let Some(cn) = policy.dns_names.first() {
        params.distinguished_name.push(DnType::CommonName, cn.as_str());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - SKEW;
    params.not_after = (now + policy.cert_validity).min(ca_not_after);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
#[path = "authority/tests.rs"]
mod tests;
