//! The DNS records a customer domain publishes, and checking them.
//!
//! Records (names without the final dot):
//!
//! | purpose | name | type | value |
//! | --- | --- | --- | --- |
//! | verification | `_smtpy-verification.<domain>` | TXT | `smtpy-verification=<token>` |
//! | mx | `<domain>` | MX | `10 <mail_hostname>` |
//! | spf | `<domain>` | TXT | `v=spf1 include:<spf_include or mail_hostname> ~all` |
//! | dkim | `<selector>._domainkey.<domain>` | TXT (direct) or CNAME (delegated) | the key record / the target |
//! | dmarc | `_dmarc.<domain>` | TXT | `v=DMARC1; p=quarantine; adkim=r; aspf=r` |

use serde::{Deserialize, Serialize};
use smtpy_core::dkim::{self, DnsRecord, PublishMode, RecordKind};
use smtpy_core::dns::{Dns, DnsError, MxRecord};
use smtpy_core::model::{CheckStatus, DnsCheck, DnsChecks, Domain};
use smtpy_core::time::Timestamp;
use utoipa::ToSchema;

use crate::config::HttpConfig;

/// The label of the ownership-verification TXT record.
pub(crate) const VERIFICATION_LABEL: &str = "_smtpy-verification";
/// What the verification TXT value starts with.
pub(crate) const VERIFICATION_PREFIX: &str = "smtpy-verification=";
/// The DMARC policy suggested to customer domains.
pub(crate) const DMARC_VALUE: &str = "v=DMARC1; p=quarantine; adkim=r; aspf=r";
/// The preference of the suggested MX record.
pub(crate) const MX_PREFERENCE: u16 = 10;
/// The TTL written in zone lines.
const TTL: u32 = 3600;

/// What a record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Purpose {
    /// Proves control of the domain.
    Verification,
    /// Routes the domain's mail to this service.
    Mx,
    /// Authorises this service to send for the domain.
    Spf,
    /// Publishes a DKIM key (or delegates its selector).
    Dkim,
    /// Publishes the DMARC policy.
    Dmarc,
}

/// One DNS record to publish.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordView {
    /// What it is for.
    pub purpose: Purpose,
    /// The owner name (fully qualified, without the final dot).
    pub name: String,
    /// `TXT`, `MX` or `CNAME`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The exact value: the whole TXT text (a long one is split into
    /// strings of at most 255 bytes in `zone_line`), the MX host or the
    /// CNAME target.
    pub value: String,
    /// The MX preference (MX records only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u16>,
    /// The record as a zone-file line (TTL one hour).
    pub zone_line: String,
}

/// The verdict on one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RecordStatus {
    /// Present and right.
    Ok,
    /// Absent.
    Missing,
    /// Present but wrong.
    Wrong,
    /// The lookup failed (timeout, server failure): try again later.
    Error,
}

/// The result of checking one record.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RecordCheck {
    /// What the record is for.
    pub purpose: Purpose,
    /// The name looked up.
    pub name: String,
    /// The record type looked up (`TXT` or `MX`).
    #[serde(rename = "type")]
    pub type_: String,
    /// The value expected.
    pub expected: String,
    /// The verdict.
    pub status: RecordStatus,
    /// What DNS returned (the relevant records).
    pub found: Vec<String>,
    /// What is wrong and how to fix it, in plain words.
    pub explanation: String,
}

/// A record to look up.
struct Probe {
    purpose: Purpose,
    /// The name looked up.
    name: String,
    /// The value expected.
    expected: String,
    /// For DKIM in delegated mode: the CNAME the owner publishes.
    via_cname: Option<String>,
}

fn txt(name: String, value: String) -> DnsRecord {
    DnsRecord {
        name,
        kind: RecordKind::Txt,
        value,
    }
}

fn view(purpose: Purpose, r: &DnsRecord) -> RecordView {
    RecordView {
        purpose,
        name: r.name.clone(),
        type_: match r.kind {
            RecordKind::Cname => "CNAME".to_owned(),
            _ => "TXT".to_owned(),
        },
        value: r.value.clone(),
        priority: None,
        zone_line: r.zone_line(TTL),
    }
}

/// The host customer domains include in SPF.
pub(crate) fn spf_include(config: &HttpConfig) -> String {
    config
        .spf_include
        .clone()
        .unwrap_or_else(|| config.mail_hostname.clone())
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

fn mail_host(config: &HttpConfig) -> String {
    config
        .mail_hostname
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The verification TXT value of `domain`.
pub(crate) fn verification_value(domain: &Domain) -> String {
    format!("{VERIFICATION_PREFIX}{}", domain.verification_token)
}

/// The SPF value customer domains publish.
pub(crate) fn spf_value(config: &HttpConfig) -> String {
    format!("v=spf1 include:{} ~all", spf_include(config))
}

/// Every record the owner of `domain` publishes, in the order: verification
/// (when the domain has a token), MX, SPF, DKIM, DMARC.
pub(crate) fn records(domain: &Domain, config: &HttpConfig) -> Vec<RecordView> {
    let d = domain.name.as_ascii();
    let mut out = Vec::new();
    if !domain.verification_token.is_empty() {
        out.push(view(
            Purpose::Verification,
            &txt(
                format!("{VERIFICATION_LABEL}.{d}"),
                verification_value(domain),
            ),
        ));
    }
    let host = mail_host(config);
    out.push(RecordView {
        purpose: Purpose::Mx,
        name: d.to_owned(),
        type_: "MX".to_owned(),
        value: host.clone(),
        priority: Some(MX_PREFERENCE),
        zone_line: format!("{d}. {TTL} IN MX {MX_PREFERENCE} {host}."),
    });
    out.push(view(Purpose::Spf, &txt(d.to_owned(), spf_value(config))));
    let dkim_records = match &config.dkim_mode {
        PublishMode::Direct => dkim::records_to_publish(domain, &config.dkim_mode),
        PublishMode::Delegated { service_domain } => {
            dkim::delegated_cnames(&domain.name, service_domain)
        }
    };
    out.extend(dkim_records.iter().map(|r| view(Purpose::Dkim, r)));
    out.push(view(
        Purpose::Dmarc,
        &txt(format!("_dmarc.{d}"), DMARC_VALUE.to_owned()),
    ));
    out
}

fn probes(domain: &Domain, config: &HttpConfig) -> Vec<Probe> {
    let d = domain.name.as_ascii();
    let mut out = Vec::new();
    if !domain.verification_token.is_empty() {
        out.push(Probe {
            purpose: Purpose::Verification,
            name: format!("{VERIFICATION_LABEL}.{d}"),
            expected: verification_value(domain),
            via_cname: None,
        });
    }
    out.push(Probe {
        purpose: Purpose::Mx,
        name: d.to_owned(),
        expected: format!("{MX_PREFERENCE} {}", mail_host(config)),
        via_cname: None,
    });
    out.push(Probe {
        purpose: Purpose::Spf,
        name: d.to_owned(),
        expected: spf_value(config),
        via_cname: None,
    });
    // Each published key is looked up as TXT at its selector in the
    // customer's zone: directly, or through the owner's CNAME in delegated
    // mode (resolvers follow it to the service's zone).
    for r in dkim::records_to_publish(domain, &PublishMode::Direct) {
        let via_cname = match &config.dkim_mode {
            PublishMode::Direct => None,
            PublishMode::Delegated { service_domain } => {
                let selector = r.name.split('.').next().unwrap_or_default();
                Some(dkim::delegation_target(
                    selector,
                    &domain.name,
                    service_domain,
                ))
            }
        };
        out.push(Probe {
            purpose: Purpose::Dkim,
            name: r.name,
            expected: r.value,
            via_cname,
        });
    }
    out.push(Probe {
        purpose: Purpose::Dmarc,
        name: format!("_dmarc.{d}"),
        expected: DMARC_VALUE.to_owned(),
        via_cname: None,
    });
    out
}

/// Checks every record of `domain` through `dns`.
pub(crate) async fn run(dns: &dyn Dns, domain: &Domain, config: &HttpConfig) -> Vec<RecordCheck> {
    let mut out = Vec::new();
    for p in probes(domain, config) {
        let (type_, verdict) = match p.purpose {
            Purpose::Mx => ("MX", check_mx(dns.mx(&p.name).await, &mail_host(config))),
            Purpose::Verification => (
                "TXT",
                check_verification(dns.txt(&p.name).await, &p.name, &p.expected),
            ),
            Purpose::Spf => (
                "TXT",
                check_spf(dns.txt(&p.name).await, &p.name, &spf_include(config)),
            ),
            Purpose::Dkim => (
                "TXT",
                check_dkim(
                    dns.txt(&p.name).await,
                    &p.name,
                    &p.expected,
                    p.via_cname.as_deref(),
                ),
            ),
            Purpose::Dmarc => ("TXT", check_dmarc(dns.txt(&p.name).await, &p.name)),
        };
        out.push(RecordCheck {
            purpose: p.purpose,
            name: p.name,
            type_: type_.to_owned(),
            expected: p.expected,
            status: verdict.0,
            found: verdict.1,
            explanation: verdict.2,
        });
    }
    out
}

type Verdict = (RecordStatus, Vec<String>, String);

fn dns_error(name: &str, e: &str) -> Verdict {
    (
        RecordStatus::Error,
        Vec::new(),
        format!("the DNS lookup of {name} failed ({e}); try again later"),
    )
}

fn check_verification(found: Result<Vec<String>, DnsError>, name: &str, expected: &str) -> Verdict {
    let all = match found {
        Ok(v) => v,
        Err(DnsError::Temporary(e)) => return dns_error(name, &e),
        Err(_) => Vec::new(),
    };
    let ours: Vec<String> = all
        .into_iter()
        .filter(|t| t.trim().starts_with(VERIFICATION_PREFIX))
        .collect();
    if ours.iter().any(|t| t.trim() == expected) {
        return (
            RecordStatus::Ok,
            ours,
            "verification record found: the domain is yours".to_owned(),
        );
    }
    if ours.is_empty() {
        return (
            RecordStatus::Missing,
            ours,
            format!("no verification TXT record at {name}; publish a TXT record \"{expected}\""),
        );
    }
    (
        RecordStatus::Wrong,
        ours,
        format!(
            "the verification TXT record at {name} holds another token; replace it with \"{expected}\""
        ),
    )
}

fn check_mx(found: Result<Vec<MxRecord>, DnsError>, host: &str) -> Verdict {
    let mut records = match found {
        Ok(v) => v,
        Err(DnsError::Temporary(e)) => return dns_error("the MX records", &e),
        Err(_) => Vec::new(),
    };
    records.sort_by(|a, b| {
        a.preference
            .cmp(&b.preference)
            .then(a.exchange.cmp(&b.exchange))
    });
    let norm = |s: &str| s.trim_end_matches('.').to_ascii_lowercase();
    let shown: Vec<String> = records
        .iter()
        .map(|r| format!("{} {}", r.preference, norm(&r.exchange)))
        .collect();
    if records.is_empty() {
        return (
            RecordStatus::Missing,
            shown,
            format!("no MX record; publish MX {MX_PREFERENCE} {host}"),
        );
    }
    let Some(ours) = records.iter().find(|r| norm(&r.exchange) == host) else {
        let others: Vec<String> = records.iter().map(|r| norm(&r.exchange)).collect();
        return (
            RecordStatus::Wrong,
            shown,
            format!(
                "MX points to {}, not {host}; replace it with MX {MX_PREFERENCE} {host}",
                others.join(", ")
            ),
        );
    };
    if let Some(before) = records
        .iter()
        .find(|r| r.preference < ours.preference && norm(&r.exchange) != host)
    {
        return (
            RecordStatus::Wrong,
            shown,
            format!(
                "MX {} (preference {}) is tried before {host} (preference {}); remove it or give {host} the lowest preference",
                norm(&before.exchange),
                before.preference,
                ours.preference
            ),
        );
    }
    (RecordStatus::Ok, shown, format!("MX points to {host}"))
}

/// True if `text` is an SPF record (`v=spf1` followed by a space or nothing).
fn is_spf(text: &str) -> bool {
    let t = text.trim();
    t.len() >= 6
        && t[..6].eq_ignore_ascii_case("v=spf1")
        && t[6..].chars().next().is_none_or(char::is_whitespace)
}

fn check_spf(found: Result<Vec<String>, DnsError>, name: &str, include: &str) -> Verdict {
    let all = match found {
        Ok(v) => v,
        Err(DnsError::Temporary(e)) => return dns_error(name, &e),
        Err(_) => Vec::new(),
    };
    let spf: Vec<String> = all.into_iter().filter(|t| is_spf(t)).collect();
    match spf.len() {
        0 => {
            return (
                RecordStatus::Missing,
                spf,
                format!(
                    "no SPF record (TXT starting with v=spf1) at {name}; publish \"v=spf1 include:{include} ~all\""
                ),
            );
        }
        1 => {}
        n => {
            return (
                RecordStatus::Wrong,
                spf,
                format!(
                    "{n} SPF records: a domain may have only one (receivers treat several as an error); merge them into one that contains include:{include}"
                ),
            );
        }
    }
    let record = spf[0].to_ascii_lowercase();
    let terms: Vec<&str> = record.split_whitespace().skip(1).collect();
    let includes_us = terms.iter().any(|t| {
        let t = t.strip_prefix('+').unwrap_or(t);
        t.strip_prefix("include:")
            .or_else(|| t.strip_prefix("redirect="))
            .is_some_and(|h| h.trim_end_matches('.') == include)
    });
    if !includes_us {
        return (
            RecordStatus::Wrong,
            spf,
            format!("SPF record found but it does not include {include}; add include:{include}"),
        );
    }
    if terms.iter().any(|t| *t == "+all" || *t == "all") {
        return (
            RecordStatus::Wrong,
            spf,
            "the SPF record ends in +all, which lets every server on the Internet send for the domain; use ~all or -all".to_owned(),
        );
    }
    (
        RecordStatus::Ok,
        spf,
        format!("SPF record includes {include}"),
    )
}

/// The tags of a `k=v; k=v` record, keys lower-cased, whitespace removed
/// from values.
fn tags(text: &str) -> Vec<(String, String)> {
    text.split(';')
        .filter_map(|t| t.split_once('='))
        .map(|(k, v)| {
            (
                k.trim().to_ascii_lowercase(),
                v.chars().filter(|c| !c.is_whitespace()).collect(),
            )
        })
        .collect()
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn check_dkim(
    found: Result<Vec<String>, DnsError>,
    name: &str,
    expected: &str,
    via_cname: Option<&str>,
) -> Verdict {
    let all = match found {
        Ok(v) => v,
        Err(DnsError::Temporary(e)) => return dns_error(name, &e),
        Err(_) => Vec::new(),
    };
    let want = tags(expected);
    let want_p = tag(&want, "p").unwrap_or_default();
    let keys: Vec<String> = all
        .into_iter()
        .filter(|t| {
            let tg = tags(t);
            tag(&tg, "v").is_some_and(|v| v.eq_ignore_ascii_case("DKIM1"))
                || tag(&tg, "p").is_some()
        })
        .collect();
    let publish = match via_cname {
        Some(target) => format!("publish the CNAME {name} → {target}"),
        None => format!("publish the TXT record \"{expected}\" at {name}"),
    };
    if keys.is_empty() {
        return (
            RecordStatus::Missing,
            keys,
            format!("no DKIM TXT record at {name}; {publish}"),
        );
    }
    if keys
        .iter()
        .any(|k| tag(&tags(k), "p").is_some_and(|p| p == want_p))
    {
        return (
            RecordStatus::Ok,
            keys,
            format!("DKIM key published at {name}"),
        );
    }
    let detail = if keys.iter().all(|k| tag(&tags(k), "p") == Some("")) {
        format!("DKIM TXT at {name} has an empty public key (a revoked key); {publish}")
    } else {
        format!("DKIM TXT at {name} has a different public key; {publish}")
    };
    (RecordStatus::Wrong, keys, detail)
}

fn check_dmarc(found: Result<Vec<String>, DnsError>, name: &str) -> Verdict {
    let all = match found {
        Ok(v) => v,
        Err(DnsError::Temporary(e)) => return dns_error(name, &e),
        Err(_) => Vec::new(),
    };
    let dmarc: Vec<String> = all
        .into_iter()
        .filter(|t| tag(&tags(t), "v").is_some_and(|v| v.eq_ignore_ascii_case("DMARC1")))
        .collect();
    match dmarc.len() {
        0 => (
            RecordStatus::Missing,
            dmarc,
            format!("no DMARC record at {name}; publish \"{DMARC_VALUE}\""),
        ),
        1 => {
            let tg = tags(&dmarc[0]);
            match tag(&tg, "p").map(str::to_ascii_lowercase).as_deref() {
                Some("quarantine" | "reject") => (
                    RecordStatus::Ok,
                    dmarc,
                    "DMARC policy published".to_owned(),
                ),
                Some("none") => (
                    RecordStatus::Ok,
                    dmarc,
                    "DMARC policy p=none published: valid, but it asks receivers to do nothing with failing mail; p=quarantine is recommended".to_owned(),
                ),
                _ => (
                    RecordStatus::Wrong,
                    dmarc,
                    format!(
                        "the DMARC record at {name} has no valid policy (p=none, quarantine or reject); publish \"{DMARC_VALUE}\""
                    ),
                ),
            }
        }
        n => (
            RecordStatus::Wrong,
            dmarc,
            format!(
                "{n} DMARC records at {name}: receivers ignore them all when there is more than one; keep one"
            ),
        ),
    }
}

fn to_check(status: RecordStatus, explanation: String) -> DnsCheck {
    DnsCheck {
        status: match status {
            RecordStatus::Ok => CheckStatus::Ok,
            RecordStatus::Missing => CheckStatus::Missing,
            RecordStatus::Wrong => CheckStatus::Wrong,
            RecordStatus::Error => CheckStatus::Unknown,
        },
        detail: explanation,
    }
}

fn merge(results: &[&RecordCheck]) -> DnsCheck {
    if results.is_empty() {
        return DnsCheck {
            status: CheckStatus::Unknown,
            detail: "no record to check".to_owned(),
        };
    }
    // The worst verdict wins: error, missing, wrong, ok.
    let rank = |s: RecordStatus| match s {
        RecordStatus::Error => 0,
        RecordStatus::Missing => 1,
        RecordStatus::Wrong => 2,
        RecordStatus::Ok => 3,
    };
    let worst = results
        .iter()
        .map(|r| r.status)
        .min_by_key(|s| rank(*s))
        .unwrap_or(RecordStatus::Ok);
    let detail = results
        .iter()
        .map(|r| r.explanation.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    to_check(worst, detail)
}

/// Stores `results` in `domain.checks` (at `now`) and sets `verified_at`
/// when the verification record is right, unless an administrator disabled
/// the domain (its checks are still stored). Returns true if the domain
/// became verified.
pub(crate) fn apply(domain: &mut Domain, results: &[RecordCheck], now: Timestamp) -> bool {
    let of = |p: Purpose| {
        results
            .iter()
            .filter(|r| r.purpose == p)
            .collect::<Vec<_>>()
    };
    domain.checks = DnsChecks {
        mx: merge(&of(Purpose::Mx)),
        spf: merge(&of(Purpose::Spf)),
        dkim: merge(&of(Purpose::Dkim)),
        dmarc: merge(&of(Purpose::Dmarc)),
        last_checked_at: Some(now),
    };
    let proven = of(Purpose::Verification)
        .iter()
        .any(|r| r.status == RecordStatus::Ok);
    if proven && domain.verified_at.is_none() && !domain.disabled {
        domain.verified_at = Some(now);
        return true;
    }
    false
}

/// The checks that were `ok` in `before` and are not in `after`.
pub(crate) fn broken(before: &DnsChecks, after: &DnsChecks) -> Vec<&'static str> {
    [
        ("mx", &before.mx, &after.mx),
        ("spf", &before.spf, &after.spf),
        ("dkim", &before.dkim, &after.dkim),
        ("dmarc", &before.dmarc, &after.dmarc),
    ]
    .into_iter()
    .filter(|(_, b, a)| b.status == CheckStatus::Ok && a.status != CheckStatus::Ok)
    .map(|(n, _, _)| n)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spf_detection_and_includes() {
        assert!(is_spf("v=spf1 -all"));
        assert!(is_spf("V=SPF1"));
        assert!(!is_spf("v=spf10 -all"));
        let ok = check_spf(
            Ok(vec!["v=spf1 include:mx.example.net ~all".into()]),
            "d",
            "mx.example.net",
        );
        assert_eq!(ok.0, RecordStatus::Ok);
        let plus = check_spf(
            Ok(vec!["v=spf1 +include:mx.example.net +all".into()]),
            "d",
            "mx.example.net",
        );
        assert_eq!(plus.0, RecordStatus::Wrong);
        assert!(plus.2.contains("+all"));
    }

    #[test]
    fn mx_with_a_preferred_foreign_host_is_wrong() {
        let v = check_mx(
            Ok(vec![
                MxRecord {
                    preference: 5,
                    exchange: "other.host".into(),
                },
                MxRecord {
                    preference: 10,
                    exchange: "mx.example.net".into(),
                },
            ]),
            "mx.example.net",
        );
        assert_eq!(v.0, RecordStatus::Wrong);
        assert!(v.2.contains("other.host"), "{}", v.2);
    }

    #[test]
    fn dkim_compares_keys_ignoring_whitespace_and_tag_order() {
        let v = check_dkim(
            Ok(vec!["p=AB CD; k=ed25519; v=DKIM1".into()]),
            "s._domainkey.d",
            "v=DKIM1; k=ed25519; p=ABCD",
            None,
        );
        assert_eq!(v.0, RecordStatus::Ok);
        let t = check_dkim(
            Err(DnsError::Temporary("timeout".into())),
            "s._domainkey.d",
            "v=DKIM1; k=ed25519; p=ABCD",
            None,
        );
        assert_eq!(t.0, RecordStatus::Error);
    }

    #[test]
    fn dmarc_needs_one_record_with_a_policy() {
        assert_eq!(
            check_dmarc(Ok(vec![DMARC_VALUE.into()]), "_dmarc.d").0,
            RecordStatus::Ok
        );
        assert_eq!(
            check_dmarc(Ok(vec!["v=DMARC1; rua=mailto:x@y".into()]), "_dmarc.d").0,
            RecordStatus::Wrong
        );
        assert_eq!(
            check_dmarc(Ok(vec![DMARC_VALUE.into(), DMARC_VALUE.into()]), "_dmarc.d").0,
            RecordStatus::Wrong
        );
        assert_eq!(
            check_dmarc(Err(DnsError::NotFound("x".into())), "_dmarc.d").0,
            RecordStatus::Missing
        );
    }
}
