//! The HTTP layer's per-request cost, on the embedded redb store, without
//! the network (the router is called directly):
//!
//! * the API: authentication by API key (hash, store lookup, per-key rate
//!   limit), the handler and JSON encoding;
//! * the web interface: the session cookie, the same API handlers, and the
//!   page rendered from its template (the alias list of 50 rows, and one
//!   alias's page with its contacts, chart and events).
//!
//! ```sh
//! cargo bench --bench http_api
//! ```

use std::hint::black_box;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use criterion::Criterion;
use smtpy_core::Store;
use smtpy_core::address::{DomainName, EmailAddress};
use smtpy_core::model::{Alias, ApiScope, Domain, Mailbox, Role, User};
use smtpy_core::password::PasswordParams;
use smtpy_core::store::{AliasStore, CredentialStore, DomainStore, MailboxStore, UserStore};
use smtpy_core::time::{Clock, SystemClock};
use smtpy_http::{ApiState, Budget, HttpConfig};
use smtpy_store_redb::RedbStore;
use tower::ServiceExt as _;

const ALIASES: usize = 200;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (router, token, cookie, alias_id) = rt.block_on(async {
        let store = Arc::new(RedbStore::open(dir.path().join("bench.redb")).expect("redb"));
        let now = SystemClock.now();
        let user = User::new(
            EmailAddress::parse("bench@users.example").expect("email"),
            Role::User,
            now,
        );
        store.create_user(&user).await.expect("user");
        let mut domain = Domain::new(
            DomainName::parse("bench.example").expect("domain"),
            user.id,
            "token".into(),
            now,
        );
        domain.verified_at = Some(now);
        store.create_domain(&domain).await.expect("domain");
        let mut mailbox = Mailbox::new(
            user.id,
            EmailAddress::parse("me@inbox.example").expect("mailbox"),
            now,
        );
        mailbox.verified_at = Some(now);
        store.create_mailbox(&mailbox).await.expect("mailbox");
        let aliases: Vec<Alias> = (0..ALIASES)
            .map(|i| {
                Alias::new(
                    EmailAddress::parse(&format!("a{i:04}@bench.example")).expect("alias"),
                    user.id,
                    domain.id,
                    vec![mailbox.id],
                    now,
                )
            })
            .collect();
        store.create_aliases(&aliases).await.expect("aliases");
        let key = smtpy_http::auth::mint_api_key(
            user.id,
            "bench",
            vec![ApiScope::AliasesRead, ApiScope::AccountRead],
            None,
            now,
        )
        .expect("key");
        store.create_api_key(&key.key).await.expect("key row");
        let mut config = HttpConfig::default();
        config.password_params = PasswordParams::insecure_fast_for_tests();
        config.limits.per_api_key = Budget::new(u32::MAX / 2, std::time::Duration::from_secs(1));
        let session =
            smtpy_http::auth::mint_session(user.id, &config, now, None, None).expect("session");
        store
            .create_session(&session.session)
            .await
            .expect("session row");
        let cookie = format!("smtpy_session={}", session.cookie_value);
        let alias_id = aliases[0].id.to_string();
        let state = ApiState::new(store as Arc<dyn Store>, config);
        (smtpy_http::router(state), key.token, cookie, alias_id)
    });

    let get = |path: &'static str| {
        let router = router.clone();
        let auth = format!("Bearer {token}");
        move || {
            let router = router.clone();
            let req = Request::get(path)
                .header("authorization", auth.as_str())
                .body(Body::empty())
                .expect("request");
            async move {
                let resp = router.oneshot(req).await.expect("infallible");
                assert_eq!(resp.status(), StatusCode::OK);
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .expect("body");
                black_box(body.len())
            }
        }
    };

    let page = |path: String| {
        let router = router.clone();
        let cookie = cookie.clone();
        move || {
            let router = router.clone();
            let req = Request::get(path.as_str())
                .header("cookie", cookie.as_str())
                .body(Body::empty())
                .expect("request");
            async move {
                let resp = router.oneshot(req).await.expect("infallible");
                assert_eq!(resp.status(), StatusCode::OK);
                let body = axum::body::to_bytes(resp.into_body(), 1 << 22)
                    .await
                    .expect("body");
                black_box(body.len())
            }
        }
    };

    let mut c = Criterion::default().configure_from_args();
    let mut g = c.benchmark_group("http_api");
    let me = get("/api/v1/me");
    g.bench_function("get_me", |b| b.to_async(&rt).iter(&me));
    let list = get("/api/v1/aliases?limit=50");
    g.bench_function("list_50_aliases", |b| b.to_async(&rt).iter(&list));
    g.finish();
    let mut g = c.benchmark_group("web");
    let list_json = page("/api/v1/aliases?limit=50".to_owned());
    g.bench_function("session_list_50_aliases_json", |b| {
        b.to_async(&rt).iter(&list_json)
    });
    let list_page = page("/app/aliases".to_owned());
    g.bench_function("alias_list_page_50", |b| b.to_async(&rt).iter(&list_page));
    let alias_page = page(format!("/app/aliases/{alias_id}"));
    g.bench_function("alias_page", |b| b.to_async(&rt).iter(&alias_page));
    g.finish();
    c.final_summary();
}
