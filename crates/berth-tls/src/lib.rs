//! Where the edge's certificate files come from: a local CA for development, ACME (RFC 8555,
//! HTTP-01) for the internet, and files the user manages; issuance, storage in the stack's state
//! folder and renewal.
//!
//! This crate owns the certificate files and decides when they change. It knows nothing of the
//! edge process, its sockets or its table beyond `berth_model::routing::CertificateFiles`, and
//! nothing of the daemon: HTTP-01 answers leave through the [`ChallengeSink`] trait, outcomes
//! through [`CertEvent`]s. It never logs or formats a private key or the ACME account key; they
//! exist only in their 0600 files.
//!
//! # Driving it (the daemon)
//! 1. `Manager::new(Settings { state_dir, acme }, desired, sink)` with the certificates the spec
//!    asks for ([`Desired`]: a name, hosts, [`Source`]) and a [`ChallengeSink`] that puts
//!    `token → key authorization` into `TlsTable::challenges` and pushes the table before
//!    returning (or a [`ChallengeMap`] whose snapshot the daemon copies into the table).
//! 2. `manager.serving(now)` → `TlsTable::certificates`: usable right away after a restart,
//!    from the files kept in the state folder, without asking the ACME server anything.
//! 3. Loop: `manager.tick(now).await` issues/renews what is due and returns [`CertEvent`]s
//!    (issued, renewed, failed with reason and back-off); after `Issued`/`Renewed`, push a table
//!    with the new `serving(now)`. Sleep `manager.next_due(now)`, capped at e.g. an hour. A
//!    failed renewal leaves the old files in place, and `serving` keeps them until they expire.
//! 4. `set_desired` after a spec change; [`trust_instructions`] for `berth` to print once the
//!    local CA exists ([`Manager::local_ca_cert`]).
//!
//! # Pieces
//! - [`policy`]: when to (re)issue, as pure functions (30 days before expiry, back-off 1 min
//!   doubling to 6 h after failures).
//! - [`LocalCa`]: the development CA and its leaves.
//! - [`AcmeAccount`]: the account and one issuance.
//! - [`files`]: 0600 atomic writes and what a certificate on disk says.
//!
//! # Choices
//! - instant-acme with `default-features = false, features = ["ring", "hyper-rustls"]`: a small
//!   async RFC 8555 client on hyper + rustls, with badNonce retries and bounded polling. `ring`
//!   rather than its default `aws-lc-rs` because the edge's rustls already uses ring (one crypto
//!   library built and linked, no C toolchain for aws-lc-sys); `hyper-rustls` for its built-in
//!   HTTPS client (system roots through rustls-platform-verifier, or only the CA of
//!   [`AcmeSettings::server_root`] for a test server such as pebble). Its `rcgen` feature is not
//!   used: CSRs are made here with rcgen so the key stays under our control.
//! - rcgen 0.14 (ring, pem, x509-parser: the stored CA certificate signs again) for keys
//!   (ECDSA P-256), the local CA, leaves and CSRs; x509-parser 0.18 (the parser rcgen itself
//!   uses, part of the Rusticata project) to read validity and names from PEM files.
//! - TLS-ALPN-01 is not done: it needs the edge to answer a special ALPN with a per-challenge
//!   certificate; HTTP-01 on the plain listener covers every name but wildcards.

pub mod acme;
pub mod error;
pub mod files;
pub mod local;
pub mod manager;
pub mod policy;
#[cfg(feature = "testing")]
pub mod testing;

pub use acme::{AcmeAccount, AcmeSettings, ChallengeMap, ChallengeSink, LETS_ENCRYPT};
pub use error::TlsError;
pub use local::{trust_instructions, LocalCa};
pub use manager::{CertEvent, Desired, EventKind, Manager, Planned, Settings, Source};
pub use policy::Renew;
