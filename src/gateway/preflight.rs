//! Before any agent starts: every region reached over HTTP answers a harmless request
//! (through TLS, when https), and accepts the API key. A run against a closed port or with a wrong key stops here
//! with the reason, instead of running blind and ending `unknown`.

use std::time::Duration;

use super::contract::excerpt;
use super::region::Region;
use crate::history::Code;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a region cannot be driven.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PreflightError {
    /// Nothing usable answers: a network failure, or a server error to a lookup.
    #[error("region {region} ({url}) is unreachable: {reason}")]
    Unreachable {
        region: String,
        url: String,
        reason: String,
    },
    /// The connection opens and TLS fails: a certificate, a name, a client certificate.
    #[error("region {region} ({url}): TLS failed: {reason}")]
    Tls {
        region: String,
        url: String,
        reason: String,
    },
    /// It answers, and refuses us: the scenario's key or endpoint is wrong.
    #[error("region {region} ({url}) refused a harmless lookup with HTTP {status}: {reason}")]
    Refused {
        region: String,
        url: String,
        status: u16,
        reason: String,
    },
}

/// Probe every HTTP region once (in-process kernels need none).
pub async fn check(regions: &[Region]) -> Result<(), PreflightError> {
    for region in regions {
        let Some(gateway) = region.http() else {
            continue;
        };
        let unreachable = |reason: String| PreflightError::Unreachable {
            region: region.name.clone(),
            url: gateway.url.clone(),
            reason,
        };
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, gateway.probe()).await {
            Err(_) => {
                return Err(unreachable(format!(
                    "no answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(failure)) => {
                let mut explained = super::tls::explain(&*failure.cause, gateway.server_name());
                if explained.is_none()
                    && let Some(cause) = gateway.diagnose_tls().await
                {
                    explained = super::tls::explain(&*cause, gateway.server_name());
                }
                return Err(match explained {
                    Some(reason) => PreflightError::Tls {
                        region: region.name.clone(),
                        url: gateway.url.clone(),
                        reason,
                    },
                    None => unreachable(format!(
                        "{} ({})",
                        transport(failure.code),
                        super::tls::chain(&*failure.cause)
                    )),
                });
            }
            Ok(Ok(answer)) => answer,
        };
        match answer.status {
            401 | 403 => {
                return Err(PreflightError::Refused {
                    region: region.name.clone(),
                    url: gateway.url.clone(),
                    status: answer.status,
                    reason: format!(
                        "the API key (target.api_key_env) is missing or not accepted ({})",
                        excerpt(&answer.body)
                    ),
                });
            }
            500..=599 => {
                return Err(unreachable(format!(
                    "HTTP {} to a harmless lookup ({})",
                    answer.status,
                    excerpt(&answer.body)
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

fn transport(code: Code) -> &'static str {
    match code {
        Code::Refused => "connection refused",
        Code::Timeout => "timed out",
        Code::Reset => "connection reset",
        _ => "the request failed",
    }
}
