//! DKIM signing of everything smtpy sends: keys, signatures, rotation and
//! the DNS records to publish.
//!
//! smtpy signs forwards (alias mode), replies sent from aliases, DSNs and
//! notifications with the keys of the sending domain:
//!
//! * [`SigningKey`] is one loaded private key with its domain and selector;
//!   it is what signing (and ARC sealing in [`auth`](crate::auth)) takes.
//! * [`DkimSigner`] holds the active keys of every domain and signs with all
//!   of them ([`DkimSigner::sign`]): a domain with an RSA and an Ed25519
//!   key gets two signatures (RFC 8463 dual signing), since not every
//!   verifier knows Ed25519 yet. [`sign_with`] signs with one key.
//! * [`new_key`], [`start_rotation`] and [`advance`] run the key life cycle
//!   as pure functions over [`Domain`](crate::model::Domain); the caller
//!   persists the domain and reloads the signer.
//! * [`records_to_publish`] and [`delegated_cnames`] give the exact DNS
//!   records.
//!
//! Signatures are `c=relaxed/relaxed` with SHA-256 over the
//! [`SIGNED_HEADERS`] present, `From` over-signed. Private keys are stored
//! sealed under the operator's [`Keyring`](crate::secret::Keyring) with the
//! associated data of [`sealing_context`]: `dkim:<domain>:<selector>`.
//!
//! # Rotation timeline
//!
//! With the default [`RotationPolicy`] (publish delay 48 h, grace 7 days),
//! for one algorithm, old key A and new key B:
//!
//! | time | call | key A | key B | signs with | DNS holds |
//! |------|------|-------|-------|------------|-----------|
//! | T | [`start_rotation`] | active | pending (new) | A | A, B |
//! | T + 48 h | [`advance`] | retiring | active | B | A, B |
//! | T + 48 h + 7 d | [`advance`] | removed | active | B | B |
//!
//! Delays count from when [`advance`] applied the previous change, so a
//! late call never shortens them. A domain's first key of an algorithm is
//! active at once. RSA and Ed25519 keys rotate independently (or together:
//! `start_rotation(&mut domain, &[Rsa2048, Ed25519], …)`); at most one key
//! per algorithm is pending.
//!
//! # DNS records
//!
//! **Direct** ([`PublishMode::Direct`], dated selectors): the domain owner
//! publishes one TXT record per key at `<selector>._domainkey.<domain>`,
//! and a new one at each rotation. A 2048-bit RSA record is about 410
//! bytes, longer than the 255 bytes a TXT character-string holds, so it is
//! published as two strings that verifiers join
//! ([`DnsRecord::txt_strings`], [`DnsRecord::zone_line`]):
//!
//! ```text
//! smtpy20261125e._domainkey.alias.example. 3600 IN TXT "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
//! smtpy20261125r._domainkey.alias.example. 3600 IN TXT "v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA…(first 255 bytes)" "…(the rest)…IDAQAB"
//! ```
//!
//! **Delegated** ([`PublishMode::Delegated`], slot selectors): the owner
//! publishes four CNAMEs once ([`delegated_cnames`]); the service publishes
//! the TXT records at the targets in its own zone ([`records_to_publish`])
//! and rotates by alternating between the two slots of each algorithm, so
//! the owner never touches DNS again:
//!
//! ```text
//! ; the owner's zone, once
//! smtpy1e._domainkey.alias.example. 3600 IN CNAME smtpy1e.alias.example._dkim.smtpy.example.
//! smtpy2e._domainkey.alias.example. 3600 IN CNAME smtpy2e.alias.example._dkim.smtpy.example.
//! smtpy1r._domainkey.alias.example. 3600 IN CNAME smtpy1r.alias.example._dkim.smtpy.example.
//! smtpy2r._domainkey.alias.example. 3600 IN CNAME smtpy2r.alias.example._dkim.smtpy.example.
//! ; the service's zone, kept in step with records_to_publish
//! smtpy1e.alias.example._dkim.smtpy.example. 3600 IN TXT "v=DKIM1; k=ed25519; p=…"
//! smtpy1r.alias.example._dkim.smtpy.example. 3600 IN TXT "v=DKIM1; k=rsa; p=…" "…"
//! ```
//!
//! A slot is reused only after its previous key was removed (grace period
//! over); until then a rotation is refused with [`DkimError::NoFreeSlot`].
//!
//! ```
//! use smtpy_core::address::DomainName;
//! use smtpy_core::dkim::{self, DkimSigner, PublishMode, RotationPolicy, SelectorNaming};
//! use smtpy_core::ids::UserId;
//! use smtpy_core::model::{DkimAlgorithm, Domain};
//! use smtpy_core::secret::{Keyring, SecretKey};
//! use smtpy_core::time::Timestamp;
//! use std::time::Duration;
//!
//! let keyring = Keyring::new(SecretKey::generate("k1")?);
//! let now = Timestamp::from_unix_secs(1_795_564_800); // 2026-11-25
//! let mut domain = Domain::new(DomainName::parse("alias.example")?, UserId::new(), "t".into(), now);
//! let mode = PublishMode::Delegated { service_domain: DomainName::parse("smtpy.example")? };
//! let naming = SelectorNaming::for_mode(&mode);
//!
//! // The first key signs at once.
//! dkim::start_rotation(&mut domain, &[DkimAlgorithm::Ed25519], now, &keyring, &naming)?;
//! let signer = DkimSigner::new();
//! assert_eq!(signer.load_domain(&domain, &keyring)?, 1);
//!
//! // Rotate: the new key is published, then signs 48 hours later.
//! let new = dkim::start_rotation(&mut domain, &[DkimAlgorithm::Ed25519], now, &keyring, &naming)?;
//! assert_eq!(new, ["smtpy2e"]);
//! assert_eq!(dkim::records_to_publish(&domain, &mode).len(), 2);
//! let later = now.saturating_add(Duration::from_secs(48 * 3600));
//! let changes = dkim::advance(&mut domain, later, &RotationPolicy::default());
//! assert_eq!(changes.len(), 2); // smtpy2e active, smtpy1e retiring
//! signer.load_domain(&domain, &keyring)?;
//! let message = b"From: shop@alias.example\r\nSubject: Hi\r\n\r\nHello\r\n";
//! let header = signer.sign(&domain.name, message, later)?.expect("signed");
//! assert!(header.contains("s=smtpy2e;"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod delegation;
mod key;
mod rotation;
mod sign;

pub use delegation::{
    DEFAULT_PREFIX, DELEGATION_LABEL, DnsRecord, MAX_PREFIX_LEN, PublishMode, RecordKind,
    SelectorNaming, TXT_STRING_MAX, delegated_cnames, delegation_target, records_to_publish,
};
pub use key::{DkimError, SigningKey, sealing_context};
pub use rotation::{KeyChange, RotationPolicy, advance, new_key, start_rotation};
pub use sign::{DkimSigner, MAX_INSTANCES, SIGNED_HEADERS, sign_with};
