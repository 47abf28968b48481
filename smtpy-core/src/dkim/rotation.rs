//! Key life cycle: new keys, rotations, and the timed state changes.

use std::time::Duration;

use crate::model::{DkimAlgorithm, DkimKey, DkimKeyState, Domain};
use crate::secret::{Keyring, Secret};
use crate::time::Timestamp;

use super::{DkimError, SelectorNaming, SigningKey, sealing_context};

/// How long a rotation takes (see the timeline in the [module docs](super)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationPolicy {
    /// A new key is published this long before it signs, so every resolver
    /// sees its record first (default 48 hours).
    pub publish_delay: Duration,
    /// A retired key stays published this long after it stopped signing, so
    /// mail still queued or being re-checked verifies (default 7 days).
    pub grace: Duration,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            publish_delay: Duration::from_secs(48 * 3600),
            grace: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// One state change made by [`advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyChange {
    /// Pending → Active: the key now signs.
    Activated {
        /// The key's selector.
        selector: String,
        /// Its algorithm.
        algorithm: DkimAlgorithm,
    },
    /// Active → Retiring: the key no longer signs but stays published.
    Retiring {
        /// The key's selector.
        selector: String,
        /// Its algorithm.
        algorithm: DkimAlgorithm,
    },
    /// Retiring → removed from the domain: its DNS record can go.
    Removed {
        /// The key's selector.
        selector: String,
        /// Its algorithm.
        algorithm: DkimAlgorithm,
    },
}

/// A new key for `domain`, sealed under `keyring` with
/// [`sealing_context`] and named by `naming`.
///
/// Its state is [`DkimKeyState::Active`] when the domain has no active key
/// of that algorithm (a new domain signs at once), otherwise
/// [`DkimKeyState::Pending`]. The key is returned, not added: the caller
/// pushes it to `domain.dkim_keys` and persists the domain (see
/// [`start_rotation`], which does both checks and the push).
///
/// RSA-2048 generation takes a noticeable fraction of a second.
///
/// # Errors
/// [`DkimError::NoFreeSlot`] from slot naming, [`DkimError::Generate`], or
/// [`DkimError::Seal`].
pub fn new_key(
    domain: &Domain,
    algorithm: DkimAlgorithm,
    now: Timestamp,
    keyring: &Keyring,
    naming: &SelectorNaming,
) -> Result<DkimKey, DkimError> {
    let selector = naming.next_selector(domain, algorithm, now)?;
    let (key, der) = SigningKey::generate(domain.name.clone(), &selector, algorithm)?;
    let der = Secret::new(der); // wiped when dropped
    let private_key = keyring
        .seal(der.expose(), &sealing_context(&domain.name, &selector))
        .map_err(DkimError::Seal)?;
    let has_active = domain
        .dkim_keys
        .iter()
        .any(|k| k.algorithm == algorithm && k.state == DkimKeyState::Active);
    Ok(DkimKey {
        selector,
        algorithm,
        private_key,
        dns_record: key.dns_record(),
        state: if has_active {
            DkimKeyState::Pending
        } else {
            DkimKeyState::Active
        },
        created_at: now,
        state_since: now,
    })
}

/// Starts a rotation: adds one new key per algorithm in `algorithms`
/// (duplicates ignored) and returns their selectors, in that order.
///
/// Each new key is pending (published, not signing) until [`advance`]
/// activates it after the policy's publish delay — or active at once when
/// the domain had no active key of that algorithm. Nothing changes when an
/// error is returned. Sets `domain.updated_at` when keys were added.
///
/// # Errors
/// [`DkimError::RotationInProgress`] when a key of one of the algorithms is
/// still pending; otherwise as [`new_key`].
pub fn start_rotation(
    domain: &mut Domain,
    algorithms: &[DkimAlgorithm],
    now: Timestamp,
    keyring: &Keyring,
    naming: &SelectorNaming,
) -> Result<Vec<String>, DkimError> {
    let mut wanted: Vec<DkimAlgorithm> = Vec::with_capacity(algorithms.len());
    for &a in algorithms {
        if !wanted.contains(&a) {
            wanted.push(a);
        }
    }
    if let Some(&busy) = wanted.iter().find(|&&a| {
        domain
            .dkim_keys
            .iter()
            .any(|k| k.algorithm == a && k.state == DkimKeyState::Pending)
    }) {
        return Err(DkimError::RotationInProgress(busy));
    }
    let mut added = Vec::with_capacity(wanted.len());
    for a in wanted {
        added.push(new_key(domain, a, now, keyring, naming)?);
    }
    let selectors = added.iter().map(|k| k.selector.clone()).collect();
    if !added.is_empty() {
        domain.dkim_keys.extend(added);
        domain.updated_at = now;
    }
    Ok(selectors)
}

/// Applies the state changes due at `now`, and returns them:
///
/// * a pending key whose `state_since` is at least `publish_delay` ago
///   becomes active, and every other active key of its algorithm becomes
///   retiring (each with `state_since = now`); several due pending keys of
///   one algorithm are taken oldest first, so the newest ends up active;
/// * a retiring key whose `state_since` is at least `grace` ago is removed.
///
/// Idempotent: a second call with the same `now` changes nothing. Sets
/// `domain.updated_at` when something changed; the caller persists the
/// domain, reloads its signer ([`DkimSigner::load_domain`](super::DkimSigner::load_domain))
/// and updates DNS ([`records_to_publish`](super::records_to_publish)).
///
/// In direct publishing the service cannot publish the record itself: a
/// caller that checks DNS can hold back `advance` until the pending record
/// is visible.
pub fn advance(domain: &mut Domain, now: Timestamp, policy: &RotationPolicy) -> Vec<KeyChange> {
    let mut changes = Vec::new();
    let mut due: Vec<usize> = domain
        .dkim_keys
        .iter()
        .enumerate()
        .filter(|(_, k)| {
            k.state == DkimKeyState::Pending
                && now >= k.state_since.saturating_add(policy.publish_delay)
        })
        .map(|(i, _)| i)
        .collect();
    due.sort_by_key(|&i| (domain.dkim_keys.get(i).map(|k| k.created_at), i));
    for i in due {
        let Some(algorithm) = domain.dkim_keys.get(i).map(|k| k.algorithm) else {
            continue;
        };
        if let Some(k) = domain.dkim_keys.get_mut(i) {
            k.state = DkimKeyState::Active;
            k.state_since = now;
            changes.push(KeyChange::Activated {
                selector: k.selector.clone(),
                algorithm,
            });
        }
        for (j, k) in domain.dkim_keys.iter_mut().enumerate() {
            if j != i && k.algorithm == algorithm && k.state == DkimKeyState::Active {
                k.state = DkimKeyState::Retiring;
                k.state_since = now;
                changes.push(KeyChange::Retiring {
                    selector: k.selector.clone(),
                    algorithm,
                });
            }
        }
    }
    domain.dkim_keys.retain(|k| {
        let expired =
            k.state == DkimKeyState::Retiring && now >= k.state_since.saturating_add(policy.grace);
        if expired {
            changes.push(KeyChange::Removed {
                selector: k.selector.clone(),
                algorithm: k.algorithm,
            });
        }
        !expired
    });
    if !changes.is_empty() {
        domain.updated_at = now;
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::address::DomainName;
    use crate::dkim::{PublishMode, RecordKind, delegated_cnames, records_to_publish};
    use crate::ids::UserId;
    use crate::secret::SecretKey;

    const HOUR: Duration = Duration::from_secs(3600);
    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// 2026-11-25T00:00:00Z.
    fn t0() -> Timestamp {
        Timestamp::from_unix_secs(1_795_564_800)
    }

    fn keyring() -> Keyring {
        Keyring::new(SecretKey::from_bytes("k1", &[7; 32]).expect("key"))
    }

    fn domain() -> Domain {
        Domain::new(
            DomainName::parse("alias.example").expect("domain"),
            UserId::new(),
            "token".into(),
            t0(),
        )
    }

    fn states(domain: &Domain) -> Vec<(String, DkimKeyState)> {
        domain
            .dkim_keys
            .iter()
            .map(|k| (k.selector.clone(), k.state))
            .collect()
    }

    fn ed() -> [DkimAlgorithm; 1] {
        [DkimAlgorithm::Ed25519]
    }

    #[test]
    fn pending_active_retiring_removed_with_the_policy_delays() {
        let keyring = keyring();
        let naming = SelectorNaming::default();
        let policy = RotationPolicy::default();
        let mut d = domain();

        // First key: active at once.
        let first = start_rotation(&mut d, &ed(), t0(), &keyring, &naming).expect("first");
        assert_eq!(first, ["smtpy20261125e"]);
        assert_eq!(
            states(&d),
            [("smtpy20261125e".into(), DkimKeyState::Active)]
        );
        assert_eq!(d.dkim_keys[0].created_at, t0());

        // Rotation three days later: the new key waits.
        let t1 = t0().saturating_add(3 * DAY);
        let second = start_rotation(&mut d, &ed(), t1, &keyring, &naming).expect("rotate");
        assert_eq!(second, ["smtpy20261128e"]);
        assert_eq!(d.updated_at, t1);
        assert_eq!(
            states(&d),
            [
                ("smtpy20261125e".into(), DkimKeyState::Active),
                ("smtpy20261128e".into(), DkimKeyState::Pending)
            ]
        );
        // A second rotation while one is pending is refused, and changes nothing.
        let before = d.clone();
        assert_eq!(
            start_rotation(&mut d, &ed(), t1, &keyring, &naming),
            Err(DkimError::RotationInProgress(DkimAlgorithm::Ed25519))
        );
        assert_eq!(d, before);

        // One millisecond before the publish delay: nothing.
        let almost = t1
            .saturating_add(48 * HOUR)
            .saturating_sub(Duration::from_millis(1));
        assert!(advance(&mut d, almost, &policy).is_empty());
        assert_eq!(d, before);

        // At the publish delay: swap.
        let t2 = t1.saturating_add(48 * HOUR);
        assert_eq!(
            advance(&mut d, t2, &policy),
            [
                KeyChange::Activated {
                    selector: "smtpy20261128e".into(),
                    algorithm: DkimAlgorithm::Ed25519
                },
                KeyChange::Retiring {
                    selector: "smtpy20261125e".into(),
                    algorithm: DkimAlgorithm::Ed25519
                },
            ]
        );
        assert_eq!(
            states(&d),
            [
                ("smtpy20261125e".into(), DkimKeyState::Retiring),
                ("smtpy20261128e".into(), DkimKeyState::Active)
            ]
        );
        assert!(d.dkim_keys.iter().all(|k| k.state_since == t2));
        assert_eq!(d.updated_at, t2);
        // Idempotent.
        let after = d.clone();
        assert!(advance(&mut d, t2, &policy).is_empty());
        assert_eq!(d, after);
        // Still published during the grace period.
        let late = t2
            .saturating_add(7 * DAY)
            .saturating_sub(Duration::from_millis(1));
        assert!(advance(&mut d, late, &policy).is_empty());
        assert_eq!(records_to_publish(&d, &PublishMode::Direct).len(), 2);

        // Removed at the end of the grace period.
        let t3 = t2.saturating_add(7 * DAY);
        assert_eq!(
            advance(&mut d, t3, &policy),
            [KeyChange::Removed {
                selector: "smtpy20261125e".into(),
                algorithm: DkimAlgorithm::Ed25519
            }]
        );
        assert_eq!(
            states(&d),
            [("smtpy20261128e".into(), DkimKeyState::Active)]
        );
        assert!(advance(&mut d, t3.saturating_add(365 * DAY), &policy).is_empty());
    }

    #[test]
    fn a_late_advance_starts_the_grace_period_late() {
        let keyring = keyring();
        let naming = SelectorNaming::default();
        let policy = RotationPolicy::default();
        let mut d = domain();
        start_rotation(&mut d, &ed(), t0(), &keyring, &naming).expect("first");
        start_rotation(&mut d, &ed(), t0(), &keyring, &naming).expect("second");
        // The second key of the day gets a counter.
        assert_eq!(d.dkim_keys[1].selector, "smtpy20261125e2");
        // Nobody called advance for 30 days: swap now, remove 7 days later.
        let late = t0().saturating_add(30 * DAY);
        assert_eq!(advance(&mut d, late, &policy).len(), 2);
        assert_eq!(d.dkim_keys.len(), 2);
        assert_eq!(
            advance(&mut d, late.saturating_add(7 * DAY), &policy).len(),
            1
        );
        assert_eq!(d.dkim_keys.len(), 1);
    }

    #[test]
    fn dual_algorithms_rotate_together_and_independently() {
        let keyring = keyring();
        let naming = SelectorNaming::default();
        let policy = RotationPolicy::default();
        let mut d = domain();
        let both = [
            DkimAlgorithm::Rsa2048,
            DkimAlgorithm::Ed25519,
            DkimAlgorithm::Rsa2048,
        ];
        let first = start_rotation(&mut d, &both, t0(), &keyring, &naming).expect("first");
        assert_eq!(first, ["smtpy20261125r", "smtpy20261125e"]);
        assert!(d.dkim_keys.iter().all(|k| k.state == DkimKeyState::Active));
        let rsa = &d.dkim_keys[0];
        assert_eq!(rsa.algorithm, DkimAlgorithm::Rsa2048);
        assert!(rsa.dns_record.starts_with("v=DKIM1; k=rsa; p=MIIBIjANBgkq"));

        // Rotate Ed25519 only: RSA is untouched.
        let t1 = t0().saturating_add(DAY);
        start_rotation(&mut d, &ed(), t1, &keyring, &naming).expect("ed");
        let t2 = t1.saturating_add(2 * DAY);
        let changes = advance(&mut d, t2, &policy);
        assert_eq!(changes.len(), 2);
        assert_eq!(
            states(&d),
            [
                ("smtpy20261125r".into(), DkimKeyState::Active),
                ("smtpy20261125e".into(), DkimKeyState::Retiring),
                ("smtpy20261126e".into(), DkimKeyState::Active),
            ]
        );
        // Both algorithms pending at once, swapped in the same call.
        let t3 = t2.saturating_add(DAY);
        let added = start_rotation(
            &mut d,
            &[DkimAlgorithm::Rsa2048, DkimAlgorithm::Ed25519],
            t3,
            &keyring,
            &naming,
        )
        .expect("both");
        assert_eq!(added, ["smtpy20261129r", "smtpy20261129e"]);
        let changes = advance(&mut d, t3.saturating_add(2 * DAY), &policy);
        assert_eq!(changes.len(), 4);
        let active: Vec<_> = d
            .dkim_keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
            .map(|k| k.selector.as_str())
            .collect();
        assert_eq!(active, ["smtpy20261129r", "smtpy20261129e"]);
        // The Ed25519 key retired at t2 is removed 7 days after t2, the RSA
        // key retired at t3 + 2 days 7 days after that.
        let removed = advance(&mut d, t2.saturating_add(7 * DAY), &policy);
        assert_eq!(
            removed,
            [KeyChange::Removed {
                selector: "smtpy20261125e".into(),
                algorithm: DkimAlgorithm::Ed25519
            }]
        );
        let removed = advance(&mut d, t3.saturating_add(9 * DAY), &policy);
        assert_eq!(removed.len(), 2);
        assert_eq!(d.dkim_keys.len(), 2);
    }

    #[test]
    fn delegated_slots_alternate() {
        let keyring = keyring();
        let service = DomainName::parse("smtpy.example").expect("domain");
        let mode = PublishMode::Delegated {
            service_domain: service.clone(),
        };
        let naming = SelectorNaming::for_mode(&mode);
        let policy = RotationPolicy::default();
        let mut d = domain();
        let mut now = t0();
        let mut seen = Vec::new();
        assert_eq!(
            start_rotation(&mut d, &ed(), now, &keyring, &naming).expect("first"),
            ["smtpy1e"]
        );
        for _ in 0..4 {
            now = now.saturating_add(30 * DAY);
            let new = start_rotation(&mut d, &ed(), now, &keyring, &naming).expect("rotate");
            seen.extend(new);
            // While the previous key is retiring, both slots are taken.
            now = now.saturating_add(2 * DAY);
            advance(&mut d, now, &policy);
            assert_eq!(
                start_rotation(&mut d, &ed(), now, &keyring, &naming),
                Err(DkimError::NoFreeSlot(DkimAlgorithm::Ed25519))
            );
            now = now.saturating_add(7 * DAY);
            advance(&mut d, now, &policy);
            assert_eq!(d.dkim_keys.len(), 1);
        }
        assert_eq!(seen, ["smtpy2e", "smtpy1e", "smtpy2e", "smtpy1e"]);

        // Every record lives under the fixed CNAME targets.
        let cnames = delegated_cnames(&d.name, &service);
        let targets: Vec<&str> = cnames.iter().map(|r| r.value.as_str()).collect();
        assert_eq!(
            targets,
            [
                "smtpy1e.alias.example._dkim.smtpy.example",
                "smtpy2e.alias.example._dkim.smtpy.example",
                "smtpy1r.alias.example._dkim.smtpy.example",
                "smtpy2r.alias.example._dkim.smtpy.example",
            ]
        );
        assert!(cnames.iter().all(|r| r.kind == RecordKind::Cname));
        assert_eq!(cnames[0].name, "smtpy1e._domainkey.alias.example");
        let records = records_to_publish(&d, &mode);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].name, "smtpy1e.alias.example._dkim.smtpy.example");
        assert!(targets.contains(&records[0].name.as_str()));
    }

    #[test]
    fn records_to_publish_gives_the_exact_text() {
        use crate::dkim::DnsRecord;
        let keyring = keyring();
        let mut d = domain();
        start_rotation(
            &mut d,
            &[DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa2048],
            t0(),
            &keyring,
            &SelectorNaming::default(),
        )
        .expect("keys");
        let records = records_to_publish(&d, &PublishMode::Direct);
        let [ed, rsa] = records.as_slice() else {
            panic!("two records expected: {records:?}");
        };
        // Ed25519: the 32-byte raw key, 44 base64 characters.
        assert_eq!(ed.name, "smtpy20261125e._domainkey.alias.example");
        assert_eq!(ed.kind, RecordKind::Txt);
        let p = ed
            .value
            .strip_prefix("v=DKIM1; k=ed25519; p=")
            .expect("ed25519 record");
        assert_eq!(p.len(), 44);
        assert!(p.ends_with('='));
        assert_eq!(ed.txt_strings(), [ed.value.as_str()]);
        assert_eq!(
            ed.to_string(),
            format!(
                "smtpy20261125e._domainkey.alias.example. 3600 IN TXT \"{}\"",
                ed.value
            )
        );
        // RSA-2048: 294-byte SubjectPublicKeyInfo, 392 base64 characters;
        // 410 bytes in all, published as two character-strings.
        assert_eq!(rsa.name, "smtpy20261125r._domainkey.alias.example");
        let p = rsa
            .value
            .strip_prefix("v=DKIM1; k=rsa; p=")
            .expect("rsa record");
        assert_eq!(p.len(), 392);
        assert!(p.starts_with("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"));
        assert!(p.ends_with("IDAQAB"));
        assert_eq!(rsa.value.len(), 410);
        let strings = rsa.txt_strings();
        assert_eq!(strings.len(), 2);
        assert_eq!(strings[0], &rsa.value[..255]);
        assert_eq!(strings[1], &rsa.value[255..]);
        assert_eq!(
            rsa.zone_line(600),
            format!(
                "smtpy20261125r._domainkey.alias.example. 600 IN TXT \"{}\" \"{}\"",
                &rsa.value[..255],
                &rsa.value[255..]
            )
        );
        // The same values, delegated, under the service's zone.
        let service = DomainName::parse("smtpy.example").expect("domain");
        let delegated = records_to_publish(
            &d,
            &PublishMode::Delegated {
                service_domain: service,
            },
        );
        assert_eq!(
            delegated,
            [
                DnsRecord {
                    name: "smtpy20261125e.alias.example._dkim.smtpy.example".into(),
                    kind: RecordKind::Txt,
                    value: ed.value.clone(),
                },
                DnsRecord {
                    name: "smtpy20261125r.alias.example._dkim.smtpy.example".into(),
                    kind: RecordKind::Txt,
                    value: rsa.value.clone(),
                },
            ]
        );
    }

    #[test]
    fn new_keys_are_sealed_for_their_domain_and_selector() {
        let keyring = keyring();
        let d = domain();
        let key = new_key(
            &d,
            DkimAlgorithm::Ed25519,
            t0(),
            &keyring,
            &SelectorNaming::default(),
        )
        .expect("key");
        assert_eq!(key.state, DkimKeyState::Active);
        let loaded = SigningKey::open(&d.name, &key, &keyring).expect("open");
        assert_eq!(loaded.dns_record(), key.dns_record);
        assert_eq!(loaded.selector(), "smtpy20261125e");
        // Another keyring cannot open it.
        let other = Keyring::new(SecretKey::from_bytes("k1", &[8; 32]).expect("key"));
        assert!(matches!(
            SigningKey::open(&d.name, &key, &other),
            Err(DkimError::Unseal { .. })
        ));
    }
}
