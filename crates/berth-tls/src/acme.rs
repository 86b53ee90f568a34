//! ACME (RFC 8555) issuance with HTTP-01 challenges: the account (created once, its credentials
//! kept 0600 in the state directory), one order per certificate, the challenges handed to a
//! [`ChallengeSink`] (the daemon puts them into the edge's routing table), polling with bounded
//! back-off, a CSR with a fresh key, and the chain and key written atomically (0600).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use berth_model::routing::CertificateFiles;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, Order, OrderStatus, RetryPolicy,
};
use rcgen::{CertificateParams, DistinguishedName, KeyPair};
use rustls_pki_types::pem::PemObject as _;

use crate::error::{Result, TlsError};
use crate::files::{cert_info, private_dir, write_private};
use crate::local::write_pair;

/// Let's Encrypt's production directory: the default.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (untrusted certificates, generous rate limits).
pub const LETS_ENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// Where and how to ask for certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeSettings {
    /// The ACME directory URL (any RFC 8555 server).
    pub directory_url: String,
    /// Account contacts, e.g. `mailto:ops@example.com` (may be empty).
    pub contact: Vec<String>,
    /// A PEM CA certificate to verify the ACME server's own HTTPS with, instead of the system's
    /// roots: for a test server such as pebble that uses its own CA. `None`: the system's roots.
    pub server_root: Option<PathBuf>,
    /// How long one issuance (order, validation, finalization, download) may take in all.
    pub timeout: Duration,
}

impl Default for AcmeSettings {
    fn default() -> Self {
        AcmeSettings {
            directory_url: LETS_ENCRYPT.to_owned(),
            contact: Vec::new(),
            server_root: None,
            timeout: Duration::from_secs(180),
        }
    }
}

/// Receives the HTTP-01 challenges of the certificates being issued. The daemon implements it by
/// putting them into the edge's table (`TlsTable::challenges`) and pushing the table.
///
/// `publish` must return only once the answer is served (the table pushed and taken), since the
/// ACME server is told to validate right after; an error stops the attempt before the server is
/// asked, so it does not count as a failed validation. `withdraw` is called for every published
/// token when the attempt ends, whether it succeeded or not.
#[async_trait]
pub trait ChallengeSink: Send + Sync {
    /// Serve `key_authorization` at `/.well-known/acme-challenge/{token}` on port 80.
    async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String>;
    /// Stop serving `token`.
    async fn withdraw(&self, token: &str);
}

/// A [`ChallengeSink`] that keeps the challenges in memory: tests serve from it, and a daemon can
/// copy [`ChallengeMap::snapshot`] into the routing table.
#[derive(Debug, Default)]
pub struct ChallengeMap {
    challenges: Mutex<BTreeMap<String, String>>,
}

impl ChallengeMap {
    /// The key authorization for `token`, if published.
    pub fn get(&self, token: &str) -> Option<String> {
        self.lock().get(token).cloned()
    }

    /// All published challenges: token → key authorization.
    pub fn snapshot(&self) -> BTreeMap<String, String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, String>> {
        self.challenges.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ChallengeSink for ChallengeMap {
    async fn publish(&self, token: &str, key_authorization: &str) -> Result<(), String> {
        self.lock()
            .insert(token.to_owned(), key_authorization.to_owned());
        Ok(())
    }

    async fn withdraw(&self, token: &str) {
        self.lock().remove(token);
    }
}

/// An ACME account on one directory.
#[derive(Clone)]
pub struct AcmeAccount {
    account: Account,
    settings: AcmeSettings,
}

impl std::fmt::Debug for AcmeAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The account key stays out of logs.
        f.debug_struct("AcmeAccount")
            .field("id", &self.account.id())
            .field("directory_url", &self.settings.directory_url)
            .finish_non_exhaustive()
    }
}

/// The file that keeps the account of `directory_url`: one per directory, so switching from
/// staging to production (or to a test server) keeps every account.
pub fn account_file(dir: &Path, directory_url: &str) -> PathBuf {
    let slug: String = directory_url
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("account-{slug}.json"))
}

impl AcmeAccount {
    /// Loads the account kept in `dir` for the settings' directory, or registers a new one
    /// there and keeps its credentials (0600). Either way the directory is fetched once.
    pub async fn load_or_create(settings: &AcmeSettings, dir: &Path) -> Result<AcmeAccount> {
        let path = account_file(dir, &settings.directory_url);
        let builder = || match &settings.server_root {
            Some(root) => Account::builder_with_root(root).map_err(TlsError::acme("http client")),
            None => Account::builder().map_err(TlsError::acme("http client")),
        };
        let account = if path.exists() {
            let json = std::fs::read(&path).map_err(|e| TlsError::io("read", &path, e))?;
            // The parser's message could quote the file; say only what is wrong.
            let credentials: AccountCredentials =
                serde_json::from_slice(&json).map_err(|_| TlsError::BadFile {
                    path: path.clone(),
                    reason: "not ACME account credentials; remove it to register a new account"
                        .into(),
                })?;
            builder()?
                .from_credentials(credentials)
                .await
                .map_err(TlsError::acme("directory"))?
        } else {
            let contact: Vec<&str> = settings.contact.iter().map(String::as_str).collect();
            let (account, credentials) = builder()?
                .create(
                    &NewAccount {
                        contact: &contact,
                        terms_of_service_agreed: true,
                        only_return_existing: false,
                    },
                    settings.directory_url.clone(),
                    None,
                )
                .await
                .map_err(TlsError::acme("new account"))?;
            private_dir(dir)?;
            let json = serde_json::to_vec(&credentials).expect("credentials serialize");
            write_private(&path, &json)?;
            tracing::info!(
                directory = %settings.directory_url,
                account = account.id(),
                "registered an acme account"
            );
            account
        };
        Ok(AcmeAccount {
            account,
            settings: settings.clone(),
        })
    }

    /// The account's URL at the server.
    pub fn id(&self) -> &str {
        self.account.id()
    }

    /// Orders a certificate for `hosts`, answers its HTTP-01 challenges through `sink`, and
    /// writes the chain and a fresh key into `dir` (`cert.pem`, `key.pem`, 0600). Takes at most
    /// the settings' timeout; every published challenge is withdrawn before it returns.
    pub async fn issue(
        &self,
        hosts: &[String],
        sink: &dyn ChallengeSink,
        dir: &Path,
    ) -> Result<CertificateFiles> {
        let mut published = Vec::new();
        let timeout = self.settings.timeout;
        let attempt = tokio::time::timeout(
            timeout,
            self.order_and_download(hosts, sink, &mut published),
        )
        .await;
        for token in &published {
            sink.withdraw(token).await;
        }
        let (chain, key) = attempt.map_err(|_| TlsError::Timeout {
            hosts: hosts.join(", "),
            seconds: timeout.as_secs(),
        })??;
        write_pair(dir, &chain, &key, hosts)
    }

    /// Returns the PEM chain and the PEM key.
    async fn order_and_download(
        &self,
        hosts: &[String],
        sink: &dyn ChallengeSink,
        published: &mut Vec<String>,
    ) -> Result<(String, String)> {
        let identifiers: Vec<Identifier> = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => Identifier::Dns(h.clone()),
            })
            .collect();
        let mut order = self
            .account
            .new_order(&NewOrder::new(&identifiers))
            .await
            .map_err(TlsError::acme("new order"))?;

        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.map_err(TlsError::acme("authorization"))?;
            let host = authorization.identifier().to_string();
            match authorization.status {
                // Already validated for this account (servers may reuse authorizations).
                AuthorizationStatus::Valid => continue,
                AuthorizationStatus::Pending => {}
                other => {
                    return Err(TlsError::Validation {
                        host,
                        reason: format!("the authorization is {other:?}"),
                    })
                }
            }
            let Some(mut challenge) = authorization.challenge(ChallengeType::Http01) else {
                return Err(TlsError::Validation {
                    host,
                    reason: "the server offers no http-01 challenge (wildcard names need dns-01, \
                             which Berth does not do)"
                        .into(),
                });
            };
            let key_authorization = challenge.key_authorization();
            // Noted before publishing: if the attempt times out during `publish`, the token is
            // still withdrawn (withdrawing one that never arrived is harmless).
            published.push(challenge.token.clone());
            sink.publish(&challenge.token, key_authorization.as_str())
                .await
                .map_err(|reason| TlsError::Publish {
                    host: host.clone(),
                    reason,
                })?;
            challenge
                .set_ready()
                .await
                .map_err(TlsError::acme("challenge ready"))?;
        }

        let retries = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(self.settings.timeout);
        match order.poll_ready(&retries).await {
            Ok(OrderStatus::Ready) => {}
            Ok(_) | Err(instant_acme::Error::Api(_)) => {
                return Err(why_invalid(&mut order, hosts).await)
            }
            Err(e) => return Err(TlsError::acme("waiting for validation")(e)),
        }

        let key = KeyPair::generate().map_err(TlsError::generate("a certificate key"))?;
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(TlsError::generate("a certificate request"))?;
        params.distinguished_name = DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .map_err(TlsError::generate("a certificate request"))?;
        order
            .finalize_csr(csr.der())
            .await
            .map_err(TlsError::acme("finalize"))?;
        let chain = order
            .poll_certificate(&retries)
            .await
            .map_err(TlsError::acme("certificate download"))?;

        // Check what came back before it replaces a certificate that works.
        let leaf = rustls_pki_types::CertificateDer::pem_slice_iter(chain.as_bytes())
            .next()
            .and_then(|c| c.ok())
            .ok_or_else(|| TlsError::Validation {
                host: hosts.join(", "),
                reason: "the server sent no PEM certificate".into(),
            })?;
        let info = cert_info(&leaf).map_err(|reason| TlsError::Validation {
            host: hosts.join(", "),
            reason,
        })?;
        if !info.covers_all(hosts) {
            return Err(TlsError::Validation {
                host: hosts.join(", "),
                reason: format!("the server's certificate names {:?}", info.names),
            });
        }
        Ok((chain, key.serialize_pem()))
    }
}

/// The reason an order did not become ready: the first invalid authorization's challenge error.
async fn why_invalid(order: &mut Order, hosts: &[String]) -> TlsError {
    let mut authorizations = order.authorizations();
    while let Some(Ok(mut authorization)) = authorizations.next().await {
        let host = authorization.identifier().to_string();
        let Ok(state) = authorization.refresh().await else {
            continue;
        };
        if state.status == AuthorizationStatus::Invalid {
            let reason = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref())
                .map(|p| p.to_string())
                .unwrap_or_else(|| "the server gave no reason".into());
            return TlsError::Validation { host, reason };
        }
    }
    let reason = match &order.state().error {
        Some(problem) => problem.to_string(),
        None => format!("the order is {:?}", order.state().status),
    };
    TlsError::Validation {
        host: hosts.join(", "),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_account_file_per_directory() {
        let dir = Path::new("/state/acme");
        assert_eq!(
            account_file(dir, LETS_ENCRYPT),
            dir.join("account-acme-v02_api_letsencrypt_org_directory.json")
        );
        assert_ne!(
            account_file(dir, LETS_ENCRYPT),
            account_file(dir, LETS_ENCRYPT_STAGING)
        );
    }

    #[tokio::test]
    async fn the_challenge_map_publishes_and_withdraws() {
        let map = ChallengeMap::default();
        map.publish("tok", "tok.thumb").await.unwrap();
        assert_eq!(map.get("tok").as_deref(), Some("tok.thumb"));
        map.withdraw("tok").await;
        assert!(map.snapshot().is_empty());
    }
}
