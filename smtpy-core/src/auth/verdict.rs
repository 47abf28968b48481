//! The outcome of authenticating one message, and what follows from it:
//! the `Authentication-Results` field, alignment tests and the DMARC action.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::address::DomainName;
use crate::model::{DmarcQuarantineAction, DmarcRejectAction, UserSettings};

/// Most DKIM results written into one `Authentication-Results` field (the
/// verifier checks at most as many signatures anyway).
const MAX_REPORTED_DKIM: usize = 10;

/// Longest property value copied into a results field, in octets (a DNS
/// name is at most 253).
const MAX_PVALUE_LEN: usize = 253;

/// Folding column for the results fields we write.
const FOLD_AT: usize = 78;

/// The result of one authentication method, as named by RFC 8601 (and
/// RFC 7208 for the SPF-only `softfail`).
///
/// [`Display`](fmt::Display) and serde use the lower-case RFC 8601 names
/// (`pass`, `fail`, `softfail`, `neutral`, `none`, `temperror`,
/// `permerror`); [`FromStr`] accepts them in any case.
///
/// ```
/// use smtpy_core::auth::Verdict;
///
/// assert_eq!(Verdict::SoftFail.to_string(), "softfail");
/// assert_eq!("TempError".parse::<Verdict>(), Ok(Verdict::TempError));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The identity is authorised / the signature verified.
    Pass,
    /// Explicitly not authorised / the signature did not verify.
    Fail,
    /// SPF: probably not authorised (`~all`).
    SoftFail,
    /// No assertion either way (SPF `?all`; a DKIM signature that could not
    /// be processed).
    Neutral,
    /// Nothing to check: no record, no signature, no chain.
    #[default]
    None,
    /// A transient (DNS) failure; a later retry may succeed.
    TempError,
    /// A permanent error in the published records or the signature.
    PermError,
}

impl Verdict {
    /// The RFC 8601 name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::SoftFail => "softfail",
            Verdict::Neutral => "neutral",
            Verdict::None => "none",
            Verdict::TempError => "temperror",
            Verdict::PermError => "permerror",
        }
    }

    /// How bad the verdict is, for [`AuthVerdict::dkim_summary`]: `fail` is
    /// the worst, then `permerror`, `temperror`, `softfail`, `neutral`,
    /// `none`; `pass` is the best.
    fn badness(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::None => 1,
            Verdict::Neutral => 2,
            Verdict::SoftFail => 3,
            Verdict::TempError => 4,
            Verdict::PermError => 5,
            Verdict::Fail => 6,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not one of the RFC 8601 result names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown authentication result {0:?}")]
pub struct UnknownVerdict(pub String);

impl FromStr for Verdict {
    type Err = UnknownVerdict;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let all = [
            Verdict::Pass,
            Verdict::Fail,
            Verdict::SoftFail,
            Verdict::Neutral,
            Verdict::None,
            Verdict::TempError,
            Verdict::PermError,
        ];
        all.into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownVerdict(s.to_owned()))
    }
}

/// The result of one DKIM signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DkimCheck {
    /// The signing domain (`d=`), lower-case; empty when the signature was
    /// too malformed to name one.
    pub domain: String,
    /// The selector (`s=`); empty when the signature did not name one.
    pub selector: String,
    /// What verifying it gave.
    pub result: Verdict,
}

/// The policy a sender's domain publishes in its DMARC record (`p=`, or
/// `sp=` for a subdomain, lowered one step by `t=y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    /// `p=none`, or no record.
    #[default]
    None,
    /// `p=quarantine`.
    Quarantine,
    /// `p=reject`.
    Reject,
}

impl DmarcPolicy {
    /// `none`, `quarantine` or `reject`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
        }
    }
}

impl fmt::Display for DmarcPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do with a message after DMARC, under the owner's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmarcAction {
    /// Deliver as usual.
    Accept,
    /// Refuse at the end of DATA with [`DMARC_REJECTED`](super::DMARC_REJECTED).
    Reject,
    /// Accept and hold in quarantine.
    Quarantine,
    /// Deliver with the owner's subject tag prefixed.
    TagSubject,
}

/// Everything inbound authentication found out about one message.
///
/// Built by [`Authenticator::authenticate`](super::Authenticator::authenticate);
/// the fields are public so that rules, event logs and tests can read and
/// build verdicts directly (`AuthVerdict { dmarc: Verdict::Fail,
/// ..AuthVerdict::default() }`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuthVerdict {
    /// SPF for the HELO identity (`none` when HELO was not a domain name).
    pub spf_helo: Verdict,
    /// SPF for the MAIL FROM identity; for the null sender this is the HELO
    /// check again (RFC 7208 §2.4).
    pub spf_mail_from: Verdict,
    /// The domain checked for `spf_mail_from`: the MAIL FROM domain, or the
    /// HELO name for the null sender (A-label, lower-case).
    pub spf_domain: Option<String>,
    /// The HELO name checked for `spf_helo`, when it was a domain name.
    pub helo: Option<String>,
    /// One entry per DKIM signature (at most ten are checked).
    pub dkim: Vec<DkimCheck>,
    /// The ARC chain (RFC 8617): `none` without one, `pass` or `fail`.
    pub arc: Verdict,
    /// DMARC for the RFC 5322 From domain.
    pub dmarc: Verdict,
    /// The policy that domain publishes (meaningful when `dmarc` is `fail`).
    pub dmarc_policy: DmarcPolicy,
    /// The RFC 5322 From domain (A-label, lower-case), when there was one.
    pub from_domain: Option<String>,
}

impl AuthVerdict {
    /// The `Authentication-Results:` field (RFC 8601) reporting this
    /// verdict under `authserv_id`, ending in CRLF, folded so that lines stay
    /// under 78 columns (a single over-long value, such as a 253-octet
    /// domain, is never split).
    ///
    /// It holds, in order: `spf` for MAIL FROM (`smtp.mailfrom`, the domain)
    /// and for HELO (`smtp.helo`), one `dkim` per signature (`header.d`,
    /// `header.s`) or `dkim=none`, `dmarc` (`header.from`, with the
    /// published policy as a comment) and `arc`. Values that are not plain
    /// tokens are written as quoted strings, so nothing from the message can
    /// break the field.
    ///
    /// ```
    /// use smtpy_core::auth::{AuthVerdict, DmarcPolicy, Verdict};
    ///
    /// let verdict = AuthVerdict {
    ///     spf_mail_from: Verdict::Pass,
    ///     spf_domain: Some("sender.example".into()),
    ///     dmarc: Verdict::Pass,
    ///     dmarc_policy: DmarcPolicy::Reject,
    ///     from_domain: Some("sender.example".into()),
    ///     ..AuthVerdict::default()
    /// };
    /// let field = verdict.authentication_results("mx.alias.example");
    /// assert!(field.starts_with("Authentication-Results: mx.alias.example;\r\n"));
    /// assert!(field.contains("spf=pass smtp.mailfrom=sender.example;"));
    /// assert!(field.contains("dmarc=pass (p=reject) header.from=sender.example;"));
    /// assert!(field.ends_with("arc=none\r\n"));
    /// ```
    #[must_use]
    pub fn authentication_results(&self, authserv_id: &str) -> String {
        let mut out = String::from("Authentication-Results: ");
        self.write_results(&mut out, authserv_id);
        out
    }

    /// Appends `authserv-id; resinfo; …` (folded, CRLF-terminated) to `out`,
    /// which already holds the field name and anything before the
    /// authserv-id. Shared by `Authentication-Results` and
    /// `ARC-Authentication-Results`.
    pub(crate) fn write_results(&self, out: &mut String, authserv_id: &str) {
        let mut items: Vec<Vec<String>> = Vec::new();
        if let Some(domain) = &self.spf_domain {
            items.push(vec![
                format!("spf={}", self.spf_mail_from),
                format!("smtp.mailfrom={}", pvalue(domain)),
            ]);
        } else {
            items.push(vec![format!("spf={}", self.spf_mail_from)]);
        }
        if let Some(helo) = &self.helo {
            items.push(vec![
                format!("spf={}", self.spf_helo),
                format!("smtp.helo={}", pvalue(helo)),
            ]);
        }
        if self.dkim.is_empty() {
            items.push(vec!["dkim=none".to_owned()]);
        }
        for check in self.dkim.iter().take(MAX_REPORTED_DKIM) {
            let mut item = vec![format!("dkim={}", check.result)];
            if !check.domain.is_empty() {
                item.push(format!("header.d={}", pvalue(&check.domain)));
            }
            if !check.selector.is_empty() {
                item.push(format!("header.s={}", pvalue(&check.selector)));
            }
            items.push(item);
        }
        let mut dmarc = vec![format!("dmarc={}", self.dmarc)];
        if matches!(
            self.dmarc,
            Verdict::Pass | Verdict::Fail | Verdict::TempError
        ) {
            dmarc.push(format!("(p={})", self.dmarc_policy));
        }
        if let Some(from) = &self.from_domain {
            dmarc.push(format!("header.from={}", pvalue(from)));
        }
        items.push(dmarc);
        items.push(vec![format!("arc={}", self.arc)]);
        fold_results(out, &pvalue(authserv_id), &items);
    }

    /// Whether a signature from `domain`, or one aligned with it, passed.
    ///
    /// Alignment here is a simple relaxed rule without the public suffix
    /// list: the signing domain and `domain` are equal, or one is a
    /// subdomain of the other and the shorter of the two has at least two
    /// labels (so `example.org` aligns with `mail.example.org`, but `org`
    /// aligns with nothing). Sibling subdomains (`a.example.org` and
    /// `b.example.org`) do not align under this rule although DMARC would
    /// align them; the [`dmarc`](Self::dmarc) verdict itself uses DMARC's
    /// organisational-domain rules.
    ///
    /// ```
    /// use smtpy_core::address::DomainName;
    /// use smtpy_core::auth::{AuthVerdict, DkimCheck, Verdict};
    ///
    /// let verdict = AuthVerdict {
    ///     dkim: vec![DkimCheck { domain: "mail.shop.example".into(), selector: "s1".into(), result: Verdict::Pass }],
    ///     ..AuthVerdict::default()
    /// };
    /// assert!(verdict.dkim_aligned_pass(&DomainName::parse("shop.example")?));
    /// assert!(!verdict.dkim_aligned_pass(&DomainName::parse("other.example")?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn dkim_aligned_pass(&self, domain: &DomainName) -> bool {
        self.dkim
            .iter()
            .any(|c| c.result == Verdict::Pass && aligned(&c.domain, domain))
    }

    /// Whether SPF passed for the MAIL FROM identity and its domain is
    /// aligned with `domain` (the rule of
    /// [`dkim_aligned_pass`](Self::dkim_aligned_pass)).
    #[must_use]
    pub fn spf_aligned_pass(&self, domain: &DomainName) -> bool {
        self.spf_mail_from == Verdict::Pass
            && self
                .spf_domain
                .as_deref()
                .is_some_and(|d| aligned(d, domain))
    }

    /// What the owner's settings make of the DMARC verdict.
    ///
    /// Only a DMARC `fail` acts: under `p=reject` the owner's
    /// [`dmarc_reject`](UserSettings::dmarc_reject) choice applies, under
    /// `p=quarantine` their [`dmarc_quarantine`](UserSettings::dmarc_quarantine)
    /// choice; `p=none`, `pass`, `none`, `temperror` and `permerror` accept.
    /// A DNS failure therefore never rejects mail.
    ///
    /// A passing ARC chain does not override a DMARC failure: we do not know
    /// the sealers and so do not trust the results they recorded.
    ///
    /// ```
    /// use smtpy_core::auth::{AuthVerdict, DmarcAction, DmarcPolicy, Verdict};
    /// use smtpy_core::model::{DmarcRejectAction, UserSettings};
    ///
    /// let verdict = AuthVerdict { dmarc: Verdict::Fail, dmarc_policy: DmarcPolicy::Reject, ..AuthVerdict::default() };
    /// let mut settings = UserSettings::default();
    /// assert_eq!(verdict.dmarc_action(&settings), DmarcAction::Reject);
    /// settings.dmarc_reject = DmarcRejectAction::Quarantine;
    /// assert_eq!(verdict.dmarc_action(&settings), DmarcAction::Quarantine);
    /// ```
    #[must_use]
    pub fn dmarc_action(&self, settings: &UserSettings) -> DmarcAction {
        if self.dmarc != Verdict::Fail {
            return DmarcAction::Accept;
        }
        match self.dmarc_policy {
            DmarcPolicy::None => DmarcAction::Accept,
            DmarcPolicy::Reject => match settings.dmarc_reject {
                DmarcRejectAction::Reject => DmarcAction::Reject,
                DmarcRejectAction::Quarantine => DmarcAction::Quarantine,
            },
            DmarcPolicy::Quarantine => match settings.dmarc_quarantine {
                DmarcQuarantineAction::Quarantine => DmarcAction::Quarantine,
                DmarcQuarantineAction::TagSubject => DmarcAction::TagSubject,
            },
        }
    }

    /// One DKIM verdict for rules and event logs: `pass` if any signature
    /// passed, otherwise the worst result (`fail`, then `permerror`,
    /// `temperror`, `neutral`), and `none` without signatures.
    #[must_use]
    pub fn dkim_summary(&self) -> Verdict {
        if self.dkim.iter().any(|c| c.result == Verdict::Pass) {
            return Verdict::Pass;
        }
        self.dkim
            .iter()
            .map(|c| c.result)
            .max_by_key(|v| v.badness())
            .unwrap_or(Verdict::None)
    }
}

/// The simple relaxed alignment of [`AuthVerdict::dkim_aligned_pass`].
fn aligned(identifier: &str, domain: &DomainName) -> bool {
    let Ok(identifier) = DomainName::parse(identifier) else {
        return false;
    };
    if identifier == *domain {
        return true;
    }
    let labels = |d: &DomainName| d.as_ascii().split('.').count();
    (identifier.is_subdomain_of(domain) && labels(domain) >= 2)
        || (domain.is_subdomain_of(&identifier) && labels(&identifier) >= 2)
}

/// A property value safe to write into a results field: a plain token when
/// it is made of letters, digits and `.-_+@`, otherwise a quoted string with
/// `"` and `\` escaped and anything outside printable ASCII replaced by `?`.
/// Truncated to [`MAX_PVALUE_LEN`] characters.
pub(crate) fn pvalue(value: &str) -> String {
    let plain = !value.is_empty()
        && value.len() <= MAX_PVALUE_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+@".contains(&b));
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len().min(MAX_PVALUE_LEN) + 2);
    out.push('"');
    for c in value.chars().take(MAX_PVALUE_LEN) {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

/// Writes `authserv_id;` then each resinfo (its tokens separated by spaces)
/// on a continuation line, `;`-separated, folding inside a resinfo when a
/// line would pass [`FOLD_AT`] columns; ends with CRLF.
fn fold_results(out: &mut String, authserv_id: &str, items: &[Vec<String>]) {
    out.push_str(authserv_id);
    if items.is_empty() {
        out.push_str("; none\r\n");
        return;
    }
    for item in items {
        out.push_str(";\r\n\t");
        // A tab counts as one column here; the items are short enough that
        // even an eight-column tab keeps ordinary lines under 78.
        let mut column = 1;
        for (i, token) in item.iter().enumerate() {
            if i > 0 {
                if column + 1 + token.len() > FOLD_AT {
                    out.push_str("\r\n\t");
                    column = 1;
                } else {
                    out.push(' ');
                    column += 1;
                }
            }
            out.push_str(token);
            column += token.len();
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(s: &str) -> DomainName {
        DomainName::parse(s).expect("domain")
    }

    fn dkim(domain: &str, result: Verdict) -> DkimCheck {
        DkimCheck {
            domain: domain.into(),
            selector: "s".into(),
            result,
        }
    }

    #[test]
    fn verdict_names_round_trip() {
        for v in [
            Verdict::Pass,
            Verdict::Fail,
            Verdict::SoftFail,
            Verdict::Neutral,
            Verdict::None,
            Verdict::TempError,
            Verdict::PermError,
        ] {
            assert_eq!(v.to_string().parse::<Verdict>(), Ok(v));
            let json = serde_json::to_string(&v).expect("json");
            assert_eq!(json, format!("\"{v}\""));
        }
        assert!("passed".parse::<Verdict>().is_err());
    }

    #[test]
    fn alignment_rule() {
        let v = |d: &str| AuthVerdict {
            dkim: vec![dkim(d, Verdict::Pass)],
            ..AuthVerdict::default()
        };
        assert!(v("example.org").dkim_aligned_pass(&domain("example.org")));
        assert!(v("EXAMPLE.org").dkim_aligned_pass(&domain("example.org")));
        assert!(v("mail.example.org").dkim_aligned_pass(&domain("example.org")));
        assert!(v("example.org").dkim_aligned_pass(&domain("news.example.org")));
        assert!(!v("a.example.org").dkim_aligned_pass(&domain("b.example.org")));
        assert!(!v("org").dkim_aligned_pass(&domain("example.org")));
        assert!(!v("badexample.org").dkim_aligned_pass(&domain("example.org")));
        assert!(!v("").dkim_aligned_pass(&domain("example.org")));
        let failed = AuthVerdict {
            dkim: vec![dkim("example.org", Verdict::Fail)],
            ..AuthVerdict::default()
        };
        assert!(!failed.dkim_aligned_pass(&domain("example.org")));

        let spf = AuthVerdict {
            spf_mail_from: Verdict::Pass,
            spf_domain: Some("bounces.example.org".into()),
            ..AuthVerdict::default()
        };
        assert!(spf.spf_aligned_pass(&domain("example.org")));
        assert!(!spf.spf_aligned_pass(&domain("example.net")));
        let soft = AuthVerdict {
            spf_mail_from: Verdict::SoftFail,
            ..spf
        };
        assert!(!soft.spf_aligned_pass(&domain("example.org")));
    }

    #[test]
    fn dkim_summary_prefers_pass_then_worst() {
        let v = |results: &[Verdict]| AuthVerdict {
            dkim: results.iter().map(|r| dkim("example.org", *r)).collect(),
            ..AuthVerdict::default()
        };
        assert_eq!(v(&[]).dkim_summary(), Verdict::None);
        assert_eq!(
            v(&[Verdict::Fail, Verdict::Pass]).dkim_summary(),
            Verdict::Pass
        );
        assert_eq!(
            v(&[Verdict::Neutral, Verdict::Fail, Verdict::TempError]).dkim_summary(),
            Verdict::Fail
        );
        assert_eq!(
            v(&[Verdict::Neutral, Verdict::TempError]).dkim_summary(),
            Verdict::TempError
        );
    }

    #[test]
    fn dmarc_action_table() {
        let mut settings = UserSettings::default();
        let v = |dmarc, policy| AuthVerdict {
            dmarc,
            dmarc_policy: policy,
            ..AuthVerdict::default()
        };
        use DmarcPolicy as P;
        use Verdict as V;
        assert_eq!(
            v(V::Fail, P::Reject).dmarc_action(&settings),
            DmarcAction::Reject
        );
        assert_eq!(
            v(V::Fail, P::Quarantine).dmarc_action(&settings),
            DmarcAction::Quarantine
        );
        assert_eq!(
            v(V::Fail, P::None).dmarc_action(&settings),
            DmarcAction::Accept
        );
        for other in [V::Pass, V::None, V::TempError, V::PermError] {
            assert_eq!(
                v(other, P::Reject).dmarc_action(&settings),
                DmarcAction::Accept
            );
        }
        settings.dmarc_reject = DmarcRejectAction::Quarantine;
        settings.dmarc_quarantine = DmarcQuarantineAction::TagSubject;
        assert_eq!(
            v(V::Fail, P::Reject).dmarc_action(&settings),
            DmarcAction::Quarantine
        );
        assert_eq!(
            v(V::Fail, P::Quarantine).dmarc_action(&settings),
            DmarcAction::TagSubject
        );
    }

    #[test]
    fn hostile_values_cannot_break_the_field() {
        let verdict = AuthVerdict {
            dkim: vec![DkimCheck {
                domain: "evil.example\r\nX-Injected: yes".into(),
                selector: "s;\"\\é".into(),
                result: Verdict::Fail,
            }],
            from_domain: Some("x".repeat(1000)),
            ..AuthVerdict::default()
        };
        let field = verdict.authentication_results("mx.alias.example");
        // Every line break is a fold (CRLF + tab) or the final CRLF.
        let body = field.strip_suffix("\r\n").expect("crlf");
        for (i, line) in body.split("\r\n").enumerate() {
            assert!(i == 0 || line.starts_with('\t'), "{line:?}");
            assert!(!line.contains('\r') && !line.contains('\n'));
            assert!(line.len() < 998);
        }
        assert!(field.contains("header.d=\"evil.example??X-Injected: yes\""));
        assert!(field.contains("header.s=\"s;\\\"\\\\?\""));
    }

    #[test]
    fn ordinary_field_is_folded_under_78_columns() {
        let verdict = AuthVerdict {
            spf_helo: Verdict::Pass,
            spf_mail_from: Verdict::SoftFail,
            spf_domain: Some("bounces.newsletter.example.org".into()),
            helo: Some("outbound-relay-17.mail.example.org".into()),
            dkim: vec![
                dkim("newsletter.example.org", Verdict::Pass),
                dkim("esp-signing-domain.example.net", Verdict::Fail),
            ],
            arc: Verdict::None,
            dmarc: Verdict::Pass,
            dmarc_policy: DmarcPolicy::Quarantine,
            from_domain: Some("newsletter.example.org".into()),
        };
        let field = verdict.authentication_results("mx1.alias.example");
        assert_eq!(
            field,
            "Authentication-Results: mx1.alias.example;\r\n\
             \tspf=softfail smtp.mailfrom=bounces.newsletter.example.org;\r\n\
             \tspf=pass smtp.helo=outbound-relay-17.mail.example.org;\r\n\
             \tdkim=pass header.d=newsletter.example.org header.s=s;\r\n\
             \tdkim=fail header.d=esp-signing-domain.example.net header.s=s;\r\n\
             \tdmarc=pass (p=quarantine) header.from=newsletter.example.org;\r\n\
             \tarc=none\r\n"
        );
        for line in field.split("\r\n") {
            assert!(line.len() < 78, "{line:?}");
        }
    }
}
