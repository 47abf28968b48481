//! Authenticating one incoming message: SPF for HELO and MAIL FROM, DKIM,
//! ARC and DMARC, each bounded by the check's deadline.

use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, MessageAuthenticator,
    SpfOutput, SpfResult,
};

use super::AuthInput;
use super::resolver::{Backend, Seam, join4, within};
use super::verdict::{AuthVerdict, DkimCheck, DmarcPolicy, Verdict};
use crate::address::DomainName;

/// Most DKIM signatures verified per message; further ones are ignored (a
/// message may carry thousands, each costing a DNS lookup).
pub(crate) const MAX_DKIM_SIGNATURES: usize = 10;

/// Most header names a DKIM or ARC signature may list in `h=`. Matching a
/// long list against a long header block costs their product in time, so
/// signatures listing more are not verified (DKIM: `permerror`; ARC:
/// `fail`). Real signers list a few dozen at most.
pub(crate) const MAX_SIGNED_HEADERS: usize = 128;

/// Most distinct RFC 5322 From domains evaluated for DMARC.
const MAX_FROM_DOMAINS: usize = 4;

/// The error recorded for a check cut short by the deadline.
fn cut_short() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
        "authentication time limit reached".to_owned(),
    ))
}

/// Parses `message` for mail-auth, containing any panic; `None` when it has
/// no header at all.
pub(crate) fn parse_message(message: &[u8]) -> Option<AuthenticatedMessage<'_>> {
    std::panic::catch_unwind(AssertUnwindSafe(|| AuthenticatedMessage::parse(message)))
        .ok()
        .flatten()
}

/// The HELO name as a domain to check, A-label and lower-case; `None` for
/// an address literal or anything else that is not a domain name.
fn helo_domain(helo: &str) -> Option<String> {
    let helo = helo.trim();
    if helo.starts_with('[') {
        return None;
    }
    DomainName::parse(helo)
        .ok()
        .map(|d| d.as_ascii().to_owned())
}

fn spf_verdict(result: SpfResult) -> Verdict {
    match result {
        SpfResult::Pass => Verdict::Pass,
        SpfResult::Fail => Verdict::Fail,
        SpfResult::SoftFail => Verdict::SoftFail,
        SpfResult::Neutral => Verdict::Neutral,
        SpfResult::TempError => Verdict::TempError,
        SpfResult::PermError => Verdict::PermError,
        SpfResult::None => Verdict::None,
    }
}

/// A DKIM result as RFC 8601 names it. mail-auth reports a body hash
/// mismatch as `neutral`; RFC 6376 makes it a verification failure.
fn dkim_verdict(result: &DkimResult) -> Verdict {
    match result {
        DkimResult::Pass => Verdict::Pass,
        DkimResult::Fail(_)
        | DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            Verdict::Fail
        }
        DkimResult::Neutral(_) => Verdict::Neutral,
        DkimResult::PermError(_) => Verdict::PermError,
        DkimResult::TempError(_) => Verdict::TempError,
        DkimResult::None => Verdict::None,
    }
}

/// ARC knows only `none`, `pass` and `fail` (RFC 8617), plus `temperror`
/// when a key could not be fetched.
fn arc_verdict(result: &DkimResult) -> Verdict {
    match result {
        DkimResult::None => Verdict::None,
        DkimResult::Pass => Verdict::Pass,
        DkimResult::TempError(_) => Verdict::TempError,
        _ => Verdict::Fail,
    }
}

fn dmarc_verdict(output: &DmarcOutput) -> Verdict {
    match output.result() {
        DmarcResult::Pass => Verdict::Pass,
        DmarcResult::Fail(_) => Verdict::Fail,
        DmarcResult::TempError(_) => Verdict::TempError,
        DmarcResult::PermError(_) => Verdict::PermError,
        DmarcResult::None => Verdict::None,
    }
}

fn dmarc_policy(output: &DmarcOutput) -> DmarcPolicy {
    match output.policy() {
        Policy::Reject => DmarcPolicy::Reject,
        Policy::Quarantine => DmarcPolicy::Quarantine,
        Policy::None | Policy::Unspecified => DmarcPolicy::None,
    }
}

/// Best-effort `d=` and `s=` of a DKIM-Signature value that did not parse.
fn tags_of_malformed(value: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(value);
    let mut domain = String::new();
    let mut selector = String::new();
    for tag in text.split(';') {
        let Some((name, value)) = tag.split_once('=') else {
            continue;
        };
        let value: String = value.split_whitespace().collect();
        match name.trim() {
            "d" => domain = value.to_ascii_lowercase(),
            "s" => selector = value,
            _ => {}
        }
    }
    (domain, selector)
}

/// Runs one SPF check, a timeout or panic counting as `temperror`.
async fn spf(
    resolver: &MessageAuthenticator,
    seam: &Seam<'_>,
    deadline: Option<Instant>,
    params: SpfParameters<'_>,
    domain: &str,
) -> SpfOutput {
    match within(deadline, resolver.verify_spf(seam.parameters(params))).await {
        Ok(output) => output,
        Err(_) => SpfOutput::new(domain.to_owned()).with_result(SpfResult::TempError),
    }
}

/// The whole check; see [`Authenticator::authenticate`](super::Authenticator::authenticate).
pub(crate) async fn authenticate(backend: &Backend, input: &AuthInput<'_>) -> AuthVerdict {
    let deadline = backend.time_limit.map(|limit| Instant::now() + limit);
    let seam = Seam::new(backend.records.as_deref());
    let Some(resolver) = &backend.resolver else {
        return unavailable(input);
    };
    let peer: IpAddr = input.peer.to_canonical();
    let host = input.authserv_id;

    let helo = helo_domain(input.helo);
    let helo_text = helo.as_deref().unwrap_or(input.helo);
    // The MAIL FROM identity (the HELO identity again for the null sender).
    let sender = input.mail_from.map(|sender| {
        let domain = sender.domain().as_ascii().to_owned();
        let address = format!("{}@{}", sender.local_part().as_str(), domain);
        (domain, address)
    });

    let mut message = parse_message(input.message);
    // DKIM signatures with absurd `h=` lists are not verified; at most
    // MAX_DKIM_SIGNATURES are.
    let mut oversized = Vec::new();
    if let Some(message) = message.as_mut() {
        message.dkim_headers.retain(|h| {
            let keep = h.header.h.len() <= MAX_SIGNED_HEADERS;
            if !keep {
                oversized.push(DkimCheck {
                    domain: h.header.d.to_ascii_lowercase(),
                    selector: h.header.s.clone(),
                    result: Verdict::PermError,
                });
            }
            keep
        });
        message.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
    }

    // SPF (both identities), DKIM and ARC need no result of each other:
    // their DNS lookups run concurrently.
    let helo_spf = async {
        match &helo {
            Some(name) => {
                let params = SpfParameters::verify_ehlo(peer, name, host);
                spf(resolver, &seam, deadline, params, name).await
            }
            None => SpfOutput::new(String::new()).with_result(SpfResult::None),
        }
    };
    let mail_from_spf = async {
        match &sender {
            Some((domain, address)) => {
                let params = SpfParameters::verify_mail_from(peer, helo_text, host, address);
                Some(spf(resolver, &seam, deadline, params, domain).await)
            }
            None => None,
        }
    };
    let dkim = async {
        let Some(message) = &message else {
            return Vec::new();
        };
        match within(deadline, resolver.verify_dkim(seam.parameters(message))).await {
            Ok(outputs) => outputs,
            Err(_) => message
                .dkim_headers
                .iter()
                .map(|h| DkimOutput::temp_err(cut_short()).with_signature(&h.header))
                .collect(),
        }
    };
    let arc = async {
        let Some(message) = &message else {
            return Verdict::None;
        };
        if message
            .ams_headers
            .iter()
            .any(|h| h.header.h.len() > MAX_SIGNED_HEADERS)
        {
            return Verdict::Fail;
        }
        match within(deadline, resolver.verify_arc(seam.parameters(message))).await {
            Ok(output) => arc_verdict(output.result()),
            Err(_) => Verdict::TempError,
        }
    };
    let (helo_output, mail_from_output, dkim_outputs, arc) =
        join4(helo_spf, mail_from_spf, dkim, arc).await;
    let mail_from_output = mail_from_output.unwrap_or_else(|| helo_output.clone());
    let spf_domain = match &sender {
        Some((domain, _)) => Some(domain.clone()),
        None => helo.clone(),
    };

    let mut verdict = AuthVerdict {
        spf_helo: spf_verdict(helo_output.result()),
        spf_mail_from: spf_verdict(mail_from_output.result()),
        spf_domain: spf_domain.clone(),
        helo: helo.clone(),
        arc,
        ..AuthVerdict::default()
    };
    let Some(message) = &message else {
        return verdict;
    };

    let mut checks: Vec<DkimCheck> = dkim_outputs
        .iter()
        .filter_map(|output| {
            let signature = output.signature()?;
            Some(DkimCheck {
                domain: signature.d.to_ascii_lowercase(),
                selector: signature.s.clone(),
                result: dkim_verdict(output.result()),
            })
        })
        .collect();
    checks.extend(oversized);
    checks.extend(
        message
            .errors
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(b"DKIM-Signature"))
            .map(|h| {
                let (domain, selector) = tags_of_malformed(h.value);
                DkimCheck {
                    domain,
                    selector,
                    result: Verdict::Neutral,
                }
            }),
    );
    checks.truncate(MAX_DKIM_SIGNATURES);
    verdict.dkim = checks;

    // DMARC, once per distinct From domain (a message naming several is
    // judged by the worst of them, so that adding a second author cannot
    // dodge the first one's policy).
    let mut from_domains: Vec<String> = Vec::new();
    for from in message.froms() {
        if let Some((_, domain)) = from.rsplit_once('@') {
            let domain = DomainName::parse(domain)
                .map(|d| d.as_ascii().to_owned())
                .unwrap_or_else(|_| domain.to_ascii_lowercase());
            if !from_domains.contains(&domain) {
                from_domains.push(domain);
            }
        }
    }
    from_domains.truncate(MAX_FROM_DOMAINS);
    let mail_from_domain = spf_domain.unwrap_or_default();
    let mut outcomes: Vec<(Verdict, DmarcPolicy, String)> = Vec::new();
    for domain in &from_domains {
        // mail-auth exempts a From naming several domains from DMARC, so
        // each is checked on its own.
        let single;
        let judged = if from_domains.len() > 1 {
            let mut copy = message.clone();
            copy.from = vec![format!("author@{domain}")];
            single = copy;
            &single
        } else {
            message
        };
        let params =
            DmarcParameters::new(judged, &dkim_outputs, &mail_from_domain, &mail_from_output);
        let (dmarc, policy) =
            match within(deadline, resolver.verify_dmarc(seam.parameters(params))).await {
                Ok(output) => (dmarc_verdict(&output), dmarc_policy(&output)),
                Err(_) => (Verdict::TempError, DmarcPolicy::None),
            };
        outcomes.push((dmarc, policy, domain.clone()));
    }
    if let Some((dmarc, policy, domain)) = worst_dmarc(outcomes) {
        verdict.dmarc = dmarc;
        verdict.dmarc_policy = policy;
        verdict.from_domain = Some(domain);
    }
    verdict
}

/// The verdict when no resolver exists: every check that needs DNS is
/// `temperror`.
fn unavailable(input: &AuthInput<'_>) -> AuthVerdict {
    let helo = helo_domain(input.helo);
    let spf_domain = match input.mail_from {
        Some(sender) => Some(sender.domain().as_ascii().to_owned()),
        None => helo.clone(),
    };
    AuthVerdict {
        spf_helo: if helo.is_some() {
            Verdict::TempError
        } else {
            Verdict::None
        },
        spf_mail_from: Verdict::TempError,
        spf_domain,
        helo,
        arc: Verdict::TempError,
        dmarc: Verdict::TempError,
        ..AuthVerdict::default()
    }
}

/// The DMARC outcome that decides for a message with several From domains:
/// a `fail` (the strictest policy among them), else `temperror`, else
/// `permerror`, else `pass`, else `none`.
fn worst_dmarc(
    outcomes: Vec<(Verdict, DmarcPolicy, String)>,
) -> Option<(Verdict, DmarcPolicy, String)> {
    let rank = |(verdict, policy, _): &(Verdict, DmarcPolicy, String)| {
        let verdict_rank = match verdict {
            Verdict::Fail => 5,
            Verdict::TempError => 4,
            Verdict::PermError => 3,
            Verdict::Pass => 2,
            _ => 1,
        };
        let policy_rank = match policy {
            DmarcPolicy::Reject => 2,
            DmarcPolicy::Quarantine => 1,
            DmarcPolicy::None => 0,
        };
        (verdict_rank, policy_rank)
    };
    // `max_by_key` keeps the last of equals; prefer the first domain.
    outcomes.into_iter().rev().max_by_key(rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_names() {
        assert_eq!(
            helo_domain("Mail.Example.ORG").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(helo_domain(" [192.0.2.1] "), None);
        assert_eq!(helo_domain("192.0.2.1"), None);
        assert_eq!(helo_domain(""), None);
        assert_eq!(helo_domain("bad name"), None);
    }

    #[test]
    fn malformed_signature_tags() {
        let (d, s) = tags_of_malformed(b" v=1; a=rsa-sha256; d=Example.ORG;\r\n\ts=sel 1; b=");
        assert_eq!(d, "example.org");
        assert_eq!(s, "sel1");
        assert_eq!(
            tags_of_malformed(b"\xff\xfe"),
            (String::new(), String::new())
        );
    }

    #[test]
    fn several_from_domains_take_the_worst() {
        let o = |v, p, d: &str| (v, p, d.to_owned());
        let worst = worst_dmarc(vec![
            o(Verdict::Pass, DmarcPolicy::Reject, "a.example"),
            o(Verdict::Fail, DmarcPolicy::Quarantine, "b.example"),
            o(Verdict::Fail, DmarcPolicy::Reject, "c.example"),
        ]);
        assert_eq!(
            worst,
            Some(o(Verdict::Fail, DmarcPolicy::Reject, "c.example"))
        );
        let first = worst_dmarc(vec![
            o(Verdict::None, DmarcPolicy::None, "a.example"),
            o(Verdict::None, DmarcPolicy::None, "b.example"),
        ]);
        assert_eq!(
            first,
            Some(o(Verdict::None, DmarcPolicy::None, "a.example"))
        );
        assert_eq!(worst_dmarc(Vec::new()), None);
    }

    #[test]
    fn dkim_body_hash_mismatch_is_a_failure() {
        let neutral = DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch));
        assert_eq!(dkim_verdict(&neutral), Verdict::Fail);
        let expired = DkimResult::Neutral(mail_auth::Error::Dkim(DkimError::SignatureExpired));
        assert_eq!(dkim_verdict(&expired), Verdict::Neutral);
    }
}
