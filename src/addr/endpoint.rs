//! An HTTP endpoint's address: `http://host[:port][/prefix]`.

/// Where an endpoint is: what to connect to, what to call it, what to put before paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The `Host` header.
    pub host: String,
    /// A path prefix (`""` or `/api`), without a trailing slash.
    pub prefix: String,
}

impl Endpoint {
    /// Parse `http://host[:port][/prefix]`.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "`{url}`: https is not supported by swarm's client yet; \
                     reach it through a TLS-terminating proxy on http"
                ));
            }
            _ => return Err(format!("`{url}` must start with http://")),
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("`{url}` has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "`{url}`: credentials in the URL are not sent; use target.api_key_env"
            ));
        }
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        Ok(Endpoint {
            address: format!("{host}:{port}"),
            host: authority.as_str().to_string(),
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
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
    }

    #[test]
    fn endpoints_that_cannot_be_driven_are_refused_with_a_reason() {
        assert!(
            Endpoint::parse("https://x.example")
                .unwrap_err()
                .contains("https")
        );
        assert!(Endpoint::parse("ftp://x").unwrap_err().contains("http://"));
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
