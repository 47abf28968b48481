//! The HTTP test harness: the API router served on a loopback port over
//! real HTTP, a memory store, a manual clock and a recording outbox.
#![allow(dead_code)]

#[cfg(feature = "web")]
pub mod web;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use smtpy_core::address::EmailAddress;
use smtpy_core::dns::StaticDns;
use smtpy_core::ids::UserId;
use smtpy_core::memory::MemoryStore;
use smtpy_core::model::{ApiScope, Role, User};
use smtpy_core::notify::Notification;
use smtpy_core::password::{PasswordHash, PasswordParams};
use smtpy_core::reverse::ReverseAliases;
use smtpy_core::secret::{Keyring, SecretKey};
use smtpy_core::srs::SrsKey;
use smtpy_core::store::{CredentialStore, Store, UserStore};
use smtpy_core::time::{Clock, ManualClock, SystemClock};
use smtpy_http::auth::mint_api_key;
use smtpy_http::{ApiState, HttpConfig, Outbox};

/// Every scope a user can have.
pub const ALL_USER_SCOPES: &[ApiScope] = &[
    ApiScope::AliasesRead,
    ApiScope::AliasesWrite,
    ApiScope::DomainsRead,
    ApiScope::DomainsWrite,
    ApiScope::AccountRead,
    ApiScope::AccountWrite,
];

/// Notifications the API asked to send.
#[derive(Debug, Default)]
pub struct RecordingOutbox {
    pub sent: Mutex<Vec<(UserId, Notification)>>,
}

#[async_trait]
impl Outbox for RecordingOutbox {
    async fn send(&self, owner: UserId, notification: Notification) -> Result<(), String> {
        self.sent
            .lock()
            .expect("outbox lock")
            .push((owner, notification));
        Ok(())
    }
}

impl RecordingOutbox {
    /// The value of `var` in the last notification sent to `to`.
    pub fn last_var(&self, to: &str, var: &str) -> Option<String> {
        self.sent
            .lock()
            .expect("outbox lock")
            .iter()
            .rev()
            .find(|(_, n)| n.to.to_string() == to)
            .and_then(|(_, n)| n.vars.get(var).cloned())
    }
    pub fn count(&self) -> usize {
        self.sent.lock().expect("outbox lock").len()
    }
}

/// A running API.
pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub store: Arc<MemoryStore>,
    pub clock: ManualClock,
    pub outbox: Arc<RecordingOutbox>,
    /// The DNS the API sees (`add_txt`, `add_mx`, …).
    pub dns: Arc<StaticDns>,
    pub state: ApiState,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The test defaults: fast password hashing, the mail host name
/// `mx.smtpy.test`.
pub fn test_config() -> HttpConfig {
    let mut c = HttpConfig::default();
    c.password_params = PasswordParams::insecure_fast_for_tests();
    c.mail_hostname = "mx.smtpy.test".to_owned();
    c
}

impl TestApp {
    pub async fn start() -> TestApp {
        TestApp::start_with(test_config(), |s| s).await
    }

    /// Starts with `config`; `customize` may add to the state (keyring, DNS…).
    pub async fn start_with(
        config: HttpConfig,
        customize: impl FnOnce(ApiState) -> ApiState,
    ) -> TestApp {
        let store = Arc::new(MemoryStore::new());
        let clock = ManualClock::new(SystemClock.now());
        let outbox = Arc::new(RecordingOutbox::default());
        let dns = Arc::new(StaticDns::new());
        let keyring = Keyring::new(SecretKey::generate("k1").expect("key"));
        let reverse = ReverseAliases::new(SrsKey::generate('r').expect("reverse key"));
        let state = ApiState::new(store.clone() as Arc<dyn Store>, config)
            .with_clock(Arc::new(clock.clone()))
            .with_outbox(outbox.clone())
            .with_keyring(Arc::new(keyring))
            .with_reverse(Arc::new(reverse))
            .with_dns(dns.clone());
        let state = customize(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = smtpy_http::router(state.clone());
        let task = tokio::spawn(async move {
            let _ = smtpy_http::serve(listener, router, std::future::pending()).await;
        });
        TestApp {
            base: format!("http://{addr}"),
            addr,
            store,
            clock,
            outbox,
            dns,
            state,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A client with a cookie jar, connecting from 127.0.0.1.
    pub fn browser(&self) -> Client {
        Client::new(&self.base, None, None)
    }

    /// A client with a cookie jar, connecting from `ip` (any 127.0.0.0/8).
    pub fn browser_from(&self, ip: IpAddr) -> Client {
        Client::new(&self.base, None, Some(ip))
    }

    /// Creates an account directly in the store (password `password`),
    /// and an API key with `scopes`; returns a client using that key.
    pub async fn account(&self, email: &str, role: Role, scopes: &[ApiScope]) -> Actor {
        let now = self.clock.now();
        let mut user = User::new(EmailAddress::parse(email).expect("email"), role, now);
        user.password = Some(
            PasswordHash::hash(
                "correct horse battery",
                &PasswordParams::insecure_fast_for_tests(),
            )
            .expect("hash"),
        );
        self.store.create_user(&user).await.expect("create user");
        let key = mint_api_key(user.id, "test", scopes.to_vec(), None, now).expect("key");
        self.store
            .create_api_key(&key.key)
            .await
            .expect("store key");
        Actor {
            client: Client::new(&self.base, Some(key.token.clone()), None),
            key: key.token,
            user,
        }
    }

    /// A regular user with every user scope.
    pub async fn user(&self, email: &str) -> Actor {
        self.account(email, Role::User, ALL_USER_SCOPES).await
    }

    /// An admin with every scope, including `admin`.
    pub async fn admin(&self, email: &str) -> Actor {
        let mut scopes = ALL_USER_SCOPES.to_vec();
        scopes.push(ApiScope::Admin);
        self.account(email, Role::Admin, &scopes).await
    }
}

/// The password every account made by [`TestApp::account`] has.
pub const PASSWORD: &str = "correct horse battery";

/// A user with a bearer key.
pub struct Actor {
    pub client: Client,
    pub key: String,
    pub user: User,
}

impl std::ops::Deref for Actor {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

/// A response: status, headers and body (JSON when it parses, else `Null`;
/// the raw text in `text`).
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Resp {
    /// The header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// Asserts a problem response with `status` and type slug `slug`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, slug: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            "application/problem+json",
            "{self:?}"
        );
        assert_eq!(
            self.body["type"],
            format!("urn:smtpy:problem:{slug}"),
            "{self:?}"
        );
        assert_eq!(self.body["status"], status, "{self:?}");
    }
    /// Asserts `status` and returns the body.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        &self.body
    }
}

/// An HTTP client with a cookie jar, optionally a bearer key, and the CSRF
/// token of its session once it has logged in (sent on unsafe methods).
pub struct Client {
    http: reqwest::Client,
    base: String,
    pub bearer: Option<String>,
    pub csrf: Mutex<Option<String>>,
}

impl Client {
    pub fn new(base: &str, bearer: Option<String>, local: Option<IpAddr>) -> Client {
        let mut b = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ip) = local {
            b = b.local_address(ip);
        }
        Client {
            http: b.build().expect("client"),
            base: base.to_owned(),
            bearer,
            csrf: Mutex::new(None),
        }
    }

    /// Sends a request; `body` as JSON when given.
    pub async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(key) = &self.bearer {
            req = req.bearer_auth(key);
        }
        let unsafe_method = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
        if unsafe_method && let Some(token) = self.csrf.lock().expect("csrf").clone() {
            req = req.header("x-csrf-token", token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// Sends raw bytes with a content type.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = &self.bearer {
            req = req.bearer_auth(key);
        }
        if let Some(token) = self.csrf.lock().expect("csrf").clone() {
            req = req.header("x-csrf-token", token);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(Method::POST, path, Some(&body)).await
    }
    pub async fn post_empty(&self, path: &str) -> Resp {
        self.send(Method::POST, path, None).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PATCH, path, Some(&body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.send(Method::PUT, path, Some(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, None).await
    }
}

/// RFC 4648 base32 decoding, as an authenticator does.
pub fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = Vec::new();
    let (mut buf, mut bits) = (0u64, 0u32);
    for c in text.chars() {
        let v = ALPHABET.find(c).expect("base32 character") as u64;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
        }
    }
    out
}

/// The RFC 6238 code of `secret` at `at` (SHA-1, 6 digits, 30 s).
pub fn code_at(secret: &[u8], at: smtpy_core::time::Timestamp) -> String {
    let counter = (at.as_unix_secs() / 30) as u64;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let tag = ring::hmac::sign(&key, &counter.to_be_bytes());
    let h = tag.as_ref();
    let o = (h[19] & 0x0f) as usize;
    let bin = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]);
    format!("{:06}", bin % 1_000_000)
}

/// What [`fixture`] creates.
pub struct Fixture {
    pub domain: smtpy_core::model::Domain,
    pub mailbox: smtpy_core::model::Mailbox,
    pub alias: smtpy_core::model::Alias,
}

/// A verified domain `domain`, a verified mailbox `inbox@real-<domain>` and
/// the alias `shop@<domain>` for `actor`, written straight to the store.
pub async fn fixture(app: &TestApp, actor: &Actor, domain: &str) -> Fixture {
    use smtpy_core::address::DomainName;
    use smtpy_core::model::{Alias, Domain, Mailbox};
    use smtpy_core::store::{AliasStore, DomainStore, MailboxStore};
    let now = app.clock.now();
    let mut d = Domain::new(
        DomainName::parse(domain).expect("domain"),
        actor.user.id,
        "token".into(),
        now,
    );
    d.verified_at = Some(now);
    app.store.create_domain(&d).await.expect("domain");
    let mut m = Mailbox::new(
        actor.user.id,
        EmailAddress::parse(&format!("inbox@real-{domain}")).expect("mailbox"),
        now,
    );
    m.verified_at = Some(now);
    app.store.create_mailbox(&m).await.expect("mailbox");
    let a = Alias::new(
        EmailAddress::parse(&format!("shop@{domain}")).expect("alias"),
        actor.user.id,
        d.id,
        vec![m.id],
        now,
    );
    app.store.create_alias(&a).await.expect("alias");
    Fixture {
        domain: d,
        mailbox: m,
        alias: a,
    }
}
