//! An HTTP endpoint's address: `http[s]://host[:port][/prefix]`.

/// Where an endpoint is: what to connect to, what to call it, what to put before paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` header.
    pub host: String,
    /// A path prefix (`""` or `/api`), without a trailing slash.
    pub prefix: String,
    /// `https://`: the connection speaks TLS.
    pub tls: bool,
    /// The host without its port: what a certificate must name (and SNI says).
    pub server_name: String,
}

impl Endpoint {
    /// Parse `http[s]://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("`{url}` must start with http:// or https://")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("`{url}` has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}`: credentials in the URL are not sent; use target.api_key_env"
            ));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host = authority.host();
        Ok(Endpoint {
            address: format!("{host}:{port}"),
            host: authority.as_str().to_string(),
            prefix: uri.path().trim_end_matches('/').to_string(),
            tls,
            // `[::1]` is named `::1` in a certificate.
            server_name: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
        })
    }

    /// A plain-HTTP endpoint on a loopback socket (swarm's in-process servers).
    pub fn loopback(addr: std::net::SocketAddr, tls: bool) -> Endpoint {
        Endpoint {
            address: addr.to_string(),
            host: addr.to_string(),
            prefix: String::new(),
            tls,
            server_name: addr.ip().to_string(),
        }
    }

    /// `http[s]://host[/prefix]`, for messages.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}{}", self.host, self.prefix)
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Endpoint, String> {
        Endpoint::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_port_host_and_prefix() {
        let e = Endpoint::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(e.address, "127.0.0.1:8080");
        assert_eq!(e.host, "127.0.0.1:8080");
        assert_eq!(e.prefix, "");
        let e = Endpoint::parse("http://shop.example/api/").unwrap();
        assert_eq!(e.address, "shop.example:80");
        assert_eq!(e.host, "shop.example");
        assert_eq!(e.prefix, "/api");
        assert!(!e.tls);
        let e = Endpoint::parse("https://shop.example/v1/sandbox").unwrap();
        assert_eq!(e.address, "shop.example:443");
        assert_eq!(e.server_name, "shop.example");
        assert!(e.tls);
        assert_eq!(e.url(), "https://shop.example/v1/sandbox");
        let e = Endpoint::parse("https://[::1]:8443").unwrap();
        assert_eq!(
            (e.address.as_str(), e.server_name.as_str()),
            ("[::1]:8443", "::1")
        );
    }

    #[test]
    fn endpoints_that_cannot_be_driven_are_refused_with_a_reason() {
        assert!(Endpoint::parse("ftp://x").unwrap_err().contains("https://"));
        assert!(
            Endpoint::parse("not a url")
                .unwrap_err()
                .contains("not a URL")
        );
        assert!(
            Endpoint::parse("http://u:p@x")
                .unwrap_err()
                .contains("api_key_env")
        );
    }
}
