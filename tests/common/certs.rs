//! Certificates the tests make (rcgen): two unrelated CAs, a client CA, and server
//! certificates for loopback, expired, and for another name.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

/// A certificate authority the tests trust (or not).
pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).expect("ca");
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

/// A certificate for `names` signed by `ca`, written as `{stem}.pem` and `{stem}-key.pem`.
pub fn leaf(dir: &Path, stem: &str, ca: &Ca, names: &[&str], expired: bool, client: bool) {
    let key = KeyPair::generate().expect("key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name.push(DnType::CommonName, stem);
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    if client {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    let cert = params.signed_by(&key, &ca.issuer).expect("sign");
    std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).expect("write");
    std::fs::write(dir.join(format!("{stem}-key.pem")), key.serialize_pem()).expect("write");
}

/// Every certificate the tests use, under one directory.
pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path();
        let trusted = ca("swarm test CA");
        let other = ca("some other CA");
        let clients = ca("swarm test client CA");
        std::fs::write(d.join("ca.pem"), &trusted.pem).expect("write");
        std::fs::write(d.join("other-ca.pem"), &other.pem).expect("write");
        std::fs::write(d.join("client-ca.pem"), &clients.pem).expect("write");
        leaf(
            d,
            "server",
            &trusted,
            &["127.0.0.1", "localhost"],
            false,
            false,
        );
        leaf(d, "expired", &trusted, &["127.0.0.1"], true, false);
        leaf(d, "wrong-name", &trusted, &["shop.example"], false, false);
        leaf(d, "client", &clients, &["agent.example"], false, true);
        Certs { dir }
    }

    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}
