//! The DNS seam between mail-auth and smtpy: the system resolver with
//! bounded timeouts, or answers read from a [`StaticDns`] without any
//! network, plus the time limit on a whole check.
//!
//! mail-auth consults a set of caches (`ResolverCache`) before its own
//! resolver. In static mode those caches answer every lookup from the
//! [`StaticDns`], so the resolver behind them (which has no name servers at
//! all) is never asked; in system mode they answer nothing and hickory's
//! resolver (with its own cache) does the work.

use std::borrow::Borrow;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::{Atps, DomainKeyReport};
use mail_auth::dmarc::Dmarc;
use mail_auth::hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::net::runtime::{Time, TokioTime};
use mail_auth::hickory_resolver::proto::op::ResponseCode;
use mail_auth::spf::Spf;
use mail_auth::{
    DnssecStatus, MX, MessageAuthenticator, Parameters, RecordSet, ResolverCache, Txt,
};

use super::AuthError;
use crate::dns::{Dns, DnsError, StaticDns};

/// Per-query timeout of the system resolver: two attempts of 2.5 s keep one
/// query under 5 s.
pub(crate) const QUERY_TIMEOUT: Duration = Duration::from_millis(2_500);
/// Attempts per query (see [`QUERY_TIMEOUT`]).
pub(crate) const QUERY_ATTEMPTS: usize = 2;

/// mail-auth with hickory's resolver configured from `/etc/resolv.conf`,
/// with our timeouts.
pub(crate) fn system_resolver() -> Result<MessageAuthenticator, AuthError> {
    let (config, mut options) = mail_auth::hickory_resolver::system_conf::read_system_conf()
        .map_err(|e| AuthError::Resolver(e.to_string()))?;
    options.timeout = QUERY_TIMEOUT;
    options.attempts = QUERY_ATTEMPTS;
    MessageAuthenticator::new(config, options).map_err(|e| AuthError::Resolver(e.to_string()))
}

/// mail-auth with a resolver that has no name servers: any lookup that
/// reaches it fails at once as a temporary error, without a packet sent.
/// Built once per process (it holds no per-test state).
pub(crate) fn offline_resolver() -> Result<MessageAuthenticator, AuthError> {
    static OFFLINE: OnceLock<Result<MessageAuthenticator, String>> = OnceLock::new();
    OFFLINE
        .get_or_init(|| {
            let mut options = ResolverOpts::default();
            options.use_hosts_file = ResolveHosts::Never;
            options.attempts = 1;
            MessageAuthenticator::new(ResolverConfig::from_name_servers(Vec::new()), options)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(AuthError::Resolver)
}

/// The caches handed to every mail-auth call. With `records`, every lookup
/// is answered from them; without, nothing is and the resolver asks DNS.
#[derive(Clone, Copy)]
pub(crate) struct Seam<'a> {
    records: Option<&'a StaticDns>,
}

/// mail-auth's parameter bundle with our caches for every record type.
pub(crate) type SeamParameters<'a, P> =
    Parameters<'a, P, Seam<'a>, Seam<'a>, Seam<'a>, Seam<'a>, Seam<'a>>;

impl<'a> Seam<'a> {
    pub(crate) fn new(records: Option<&'a StaticDns>) -> Self {
        Self { records }
    }

    /// `params` with this seam as every cache.
    pub(crate) fn parameters<P>(&'a self, params: P) -> SeamParameters<'a, P> {
        Parameters::new(params)
            .with_txt_cache(self)
            .with_mx_cache(self)
            .with_ipv4_cache(self)
            .with_ipv6_cache(self)
            .with_ptr_cache(self)
    }
}

/// The result of an async call that completes without waiting (the
/// [`StaticDns`] methods do), or `None` if it would wait.
fn ready<F: Future>(future: F) -> Option<F::Output> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => Some(output),
        Poll::Pending => None,
    }
}

/// A hasher that keeps the bytes it is fed.
#[derive(Default)]
struct Recorder(Vec<u8>);

impl Hasher for Recorder {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

/// The text of a cache key. mail-auth asks its caches for `str` keys
/// through `Borrow`, which leaves the key type generic; hashing it reveals
/// the text, as `str` hashes as its bytes followed by `0xff`.
fn key_text<Q: Hash + ?Sized>(key: &Q) -> Option<String> {
    let mut recorder = Recorder::default();
    key.hash(&mut recorder);
    let bytes = recorder.0.strip_suffix(&[0xff])?;
    String::from_utf8(bytes.to_vec()).ok()
}

fn not_found() -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::RecordNotFound(ResponseCode::NXDomain))
}

fn temporary(reason: &str) -> mail_auth::Error {
    mail_auth::Error::Dns(mail_auth::DnsError::Resolver(reason.to_owned()))
}

/// The first of `records` that parses as `T`, as mail-auth's own lookup
/// picks it; the last parse error when none does.
fn first_parsed<T: TxtRecordParser + Into<Txt>>(records: &[String]) -> Txt {
    let mut result = Err(mail_auth::Error::Dns(
        mail_auth::DnsError::InvalidRecordType,
    ));
    for record in records {
        result = T::parse(record.as_bytes());
        if result.is_ok() {
            break;
        }
    }
    result.into()
}

/// Parses the TXT records of `name` as the record type mail-auth looks up
/// under such a name: `_dmarc` names hold DMARC records, `_domainkey` names
/// DKIM keys (or DKIM report records under `_report._domainkey`), `_atps`
/// names ATPS records, anything else SPF records.
fn parse_txt(name: &str, records: &[String]) -> Txt {
    let labels: Vec<&str> = name.trim_end_matches('.').split('.').collect();
    let has = |label: &str| labels.iter().any(|l| l.eq_ignore_ascii_case(label));
    if has("_dmarc") {
        first_parsed::<Dmarc>(records)
    } else if has("_domainkey") {
        if labels
            .first()
            .is_some_and(|l| l.eq_ignore_ascii_case("_report"))
        {
            first_parsed::<DomainKeyReport>(records)
        } else {
            first_parsed::<DomainKey>(records)
        }
    } else if has("_atps") {
        first_parsed::<Atps>(records)
    } else {
        first_parsed::<Spf>(records)
    }
}

/// The addresses of `name` in `records` (empty when it has none: static
/// answers read as NODATA, never NXDOMAIN).
fn addresses(records: &StaticDns, name: &str) -> Option<Vec<IpAddr>> {
    match ready(records.ip(name))? {
        Ok(ips) => Some(ips),
        Err(DnsError::NotFound(_)) => Some(Vec::new()),
        Err(_) => None,
    }
}

fn record_set<T>(items: Vec<T>) -> RecordSet<T> {
    RecordSet {
        rrset: items.into(),
        dnssec_status: DnssecStatus::Indeterminate,
    }
}

impl ResolverCache<Box<str>, Txt> for Seam<'_> {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let records = self.records?;
        let Some(name) = key_text(name) else {
            return Some(Txt::Error(not_found()));
        };
        Some(match ready(records.txt(&name)) {
            Some(Ok(txt)) => parse_txt(&name, &txt),
            Some(Err(DnsError::NotFound(_))) => Txt::Error(not_found()),
            Some(Err(e)) => Txt::Error(temporary(&e.to_string())),
            None => Txt::Error(temporary("lookup would block")),
        })
    }
    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: Txt, _: Instant) {}
}

impl ResolverCache<Box<str>, RecordSet<MX>> for Seam<'_> {
    fn get<Q>(&self, name: &Q) -> Option<RecordSet<MX>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let records = self.records?;
        let Some(name) = key_text(name) else {
            return Some(record_set(Vec::new()));
        };
        let mut mx = match ready(records.mx(&name))? {
            Ok(mx) => mx,
            Err(DnsError::NotFound(_)) => Vec::new(),
            Err(_) => return None,
        };
        mx.sort_by_key(|m| m.preference);
        // mail-auth groups exchanges of equal preference.
        let mut sets: Vec<MX> = Vec::new();
        for record in mx {
            let exchange: Box<str> = record.exchange.into_boxed_str();
            match sets.last_mut() {
                Some(last) if last.preference == record.preference => {
                    let mut exchanges = std::mem::take(&mut last.exchanges).into_vec();
                    exchanges.push(exchange);
                    last.exchanges = exchanges.into_boxed_slice();
                }
                _ => sets.push(MX {
                    exchanges: vec![exchange].into_boxed_slice(),
                    preference: record.preference,
                }),
            }
        }
        Some(record_set(sets))
    }
    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<MX>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: RecordSet<MX>, _: Instant) {}
}

impl ResolverCache<Box<str>, RecordSet<Ipv4Addr>> for Seam<'_> {
    fn get<Q>(&self, name: &Q) -> Option<RecordSet<Ipv4Addr>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let records = self.records?;
        let Some(name) = key_text(name) else {
            return Some(record_set(Vec::new()));
        };
        let ips = addresses(records, &name)?;
        Some(record_set(
            ips.into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(v4),
                    IpAddr::V6(_) => None,
                })
                .collect(),
        ))
    }
    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<Ipv4Addr>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: RecordSet<Ipv4Addr>, _: Instant) {}
}

impl ResolverCache<Box<str>, RecordSet<Ipv6Addr>> for Seam<'_> {
    fn get<Q>(&self, name: &Q) -> Option<RecordSet<Ipv6Addr>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let records = self.records?;
        let Some(name) = key_text(name) else {
            return Some(record_set(Vec::new()));
        };
        let ips = addresses(records, &name)?;
        Some(record_set(
            ips.into_iter()
                .filter_map(|ip| match ip {
                    IpAddr::V6(v6) => Some(v6),
                    IpAddr::V4(_) => None,
                })
                .collect(),
        ))
    }
    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<Ipv6Addr>>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: Box<str>, _: RecordSet<Ipv6Addr>, _: Instant) {}
}

/// [`StaticDns`] holds no PTR records: every reverse lookup is empty.
impl ResolverCache<IpAddr, RecordSet<Box<str>>> for Seam<'_> {
    fn get<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.records.map(|_| record_set(Vec::new()))
    }
    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<Box<str>>>
    where
        IpAddr: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }
    fn insert(&self, _: IpAddr, _: RecordSet<Box<str>>, _: Instant) {}
}

/// Why [`within`] gave no output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// The deadline passed first.
    TimedOut,
    /// The work panicked (a bug in a dependency on hostile input); the
    /// panic is contained to this check.
    Panicked,
}

/// Runs `future` until it completes or `deadline` passes, containing any
/// panic. Without a deadline the future runs to completion (static DNS
/// never waits); with one, a Tokio timer bounds it.
pub(crate) async fn within<F: Future>(
    deadline: Option<Instant>,
    future: F,
) -> Result<F::Output, Cut> {
    let mut future = pin!(future);
    let mut timer = match deadline {
        Some(deadline) => {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Cut::TimedOut);
            }
            Some(<TokioTime as Time>::delay_for(remaining))
        }
        None => None,
    };
    std::future::poll_fn(move |cx| {
        match std::panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => return Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => {}
            Err(_) => return Poll::Ready(Err(Cut::Panicked)),
        }
        if let Some(timer) = timer.as_mut()
            && timer.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(Cut::TimedOut));
        }
        Poll::Pending
    })
    .await
}

/// Runs four futures concurrently and returns their outputs.
pub(crate) async fn join4<A, B, C, D>(
    a: A,
    b: B,
    c: C,
    d: D,
) -> (A::Output, B::Output, C::Output, D::Output)
where
    A: Future,
    B: Future,
    C: Future,
    D: Future,
{
    fn step<F: Future>(future: Pin<&mut F>, slot: &mut Option<F::Output>, cx: &mut Context<'_>) {
        if slot.is_none()
            && let Poll::Ready(output) = future.poll(cx)
        {
            *slot = Some(output);
        }
    }
    let (mut a, mut b, mut c, mut d) = (pin!(a), pin!(b), pin!(c), pin!(d));
    let (mut ra, mut rb, mut rc, mut rd) = (None, None, None, None);
    std::future::poll_fn(move |cx| {
        step(a.as_mut(), &mut ra, cx);
        step(b.as_mut(), &mut rb, cx);
        step(c.as_mut(), &mut rc, cx);
        step(d.as_mut(), &mut rd, cx);
        if ra.is_some()
            && rb.is_some()
            && rc.is_some()
            && rd.is_some()
            && let (Some(a), Some(b), Some(c), Some(d)) =
                (ra.take(), rb.take(), rc.take(), rd.take())
        {
            return Poll::Ready((a, b, c, d));
        }
        Poll::Pending
    })
    .await
}

/// Shared, immutable state of an [`Authenticator`](super::Authenticator).
pub(crate) struct Backend {
    /// `None` only if even a resolver without servers could not be built.
    pub(crate) resolver: Option<MessageAuthenticator>,
    pub(crate) records: Option<Arc<StaticDns>>,
    pub(crate) time_limit: Option<Duration>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_text_reads_str_keys() {
        assert_eq!(key_text("example.org.").as_deref(), Some("example.org."));
        let boxed: Box<str> = "Ex.Org.".into();
        assert_eq!(key_text(&boxed).as_deref(), Some("Ex.Org."));
        assert_eq!(key_text(&7u32), None);
    }

    #[test]
    fn txt_records_parse_by_name() {
        let spf = vec!["v=spf1 -all".to_owned()];
        assert!(matches!(parse_txt("example.org.", &spf), Txt::Spf(_)));
        let dmarc = vec!["v=DMARC1; p=reject".to_owned()];
        assert!(matches!(
            parse_txt("_dmarc.example.org.", &dmarc),
            Txt::Dmarc(_)
        ));
        let junk = vec!["google-site-verification=abc".to_owned()];
        assert!(matches!(
            parse_txt("example.org.", &junk),
            Txt::Error(mail_auth::Error::Dns(
                mail_auth::DnsError::InvalidRecordType
            ))
        ));
        // The first record that parses wins.
        let mixed = vec!["hello".to_owned(), "v=spf1 +all".to_owned()];
        assert!(matches!(parse_txt("example.org.", &mixed), Txt::Spf(_)));
    }

    #[tokio::test]
    async fn within_times_out_and_contains_panics() {
        let deadline = Some(Instant::now() + Duration::from_millis(30));
        let started = Instant::now();
        let r = within(deadline, std::future::pending::<()>()).await;
        assert_eq!(r, Err(Cut::TimedOut));
        assert!(started.elapsed() >= Duration::from_millis(25));
        assert!(started.elapsed() < Duration::from_secs(5));

        let later = Some(Instant::now() + Duration::from_secs(60));
        assert_eq!(within(later, async { 7 }).await, Ok(7));
        assert_eq!(within(None, async { 8 }).await, Ok(8));
        let past = Some(Instant::now());
        assert_eq!(within(past, async { 9 }).await, Err(Cut::TimedOut));

        let r = within(None, async {
            panic!("contained panic (expected in this test)")
        })
        .await;
        assert_eq!(r, Err::<(), _>(Cut::Panicked));
    }

    #[tokio::test]
    async fn join4_waits_for_all() {
        let slow = async {
            <TokioTime as Time>::delay_for(Duration::from_millis(20)).await;
            "slow"
        };
        let out = join4(async { 1 }, slow, async { 'c' }, std::future::ready(4u8)).await;
        assert_eq!(out, (1, "slow", 'c', 4));
    }

    #[test]
    fn offline_resolver_builds() {
        assert!(offline_resolver().is_ok());
    }
}
