//! A browser-like client for the web pages: a cookie jar, no automatic
//! redirects (tests look at the 303s), the `_csrf` token of the last page
//! put into every form it posts.

use std::sync::Mutex;

use reqwest::StatusCode;

use super::{PASSWORD, TestApp};

/// A page or redirect as the browser got it.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    /// The header's value as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    /// The redirect target.
    pub fn location(&self) -> &str {
        self.header("location")
    }
    /// The first `_csrf` value in the page.
    pub fn csrf(&self) -> Option<String> {
        let at = self.html.find("name=\"_csrf\" value=\"")?;
        let rest = &self.html[at + "name=\"_csrf\" value=\"".len()..];
        rest.split('"').next().map(str::to_owned)
    }
    /// Asserts the page contains `text`.
    #[track_caller]
    pub fn assert_contains(&self, text: &str) {
        assert!(
            self.html.contains(text),
            "page ({}) lacks {text:?}:\n{}",
            self.status,
            self.html
        );
    }
}

/// The browser.
pub struct WebClient {
    http: reqwest::Client,
    base: String,
    /// The `_csrf` of the last page fetched.
    pub csrf: Mutex<Option<String>>,
}

impl WebClient {
    pub fn new(app: &TestApp) -> WebClient {
        WebClient {
            http: reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: app.base.clone(),
            csrf: Mutex::new(None),
        }
    }

    async fn read(resp: reqwest::Response) -> Page {
        let status = resp.status();
        let headers = resp.headers().clone();
        let html = resp.text().await.unwrap_or_default();
        Page {
            status,
            headers,
            html,
        }
    }

    /// GETs `path`; remembers the page's `_csrf`.
    pub async fn get(&self, path: &str) -> Page {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let page = Self::read(resp).await;
        if let Some(t) = page.csrf() {
            *self.csrf.lock().expect("csrf") = Some(t);
        }
        page
    }

    /// GETs `path` and follows redirects within the site (up to 5).
    pub async fn get_follow(&self, path: &str) -> Page {
        let mut page = self.get(path).await;
        for _ in 0..5 {
            if !page.status.is_redirection() {
                break;
            }
            let to = page.location().to_owned();
            page = self.get(&to).await;
        }
        page
    }

    /// POSTs `fields` as a form, with the `_csrf` of the last page first.
    pub async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let token = self.csrf.lock().expect("csrf").clone().unwrap_or_default();
        let mut all: Vec<(&str, &str)> = vec![("_csrf", token.as_str())];
        all.extend_from_slice(fields);
        self.post_raw(path, &all, &[]).await
    }

    /// POSTs exactly `fields` (no token added) with extra headers.
    pub async fn post_raw(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let body = serde_urlencoded::to_string(fields).expect("form");
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let page = Self::read(req.send().await.expect("POST")).await;
        if let Some(t) = page.csrf() {
            *self.csrf.lock().expect("csrf") = Some(t);
        }
        page
    }

    /// POSTs a form and follows the redirect (what a browser shows next).
    pub async fn submit(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.post(path, fields).await;
        if page.status.is_redirection() {
            let to = page.location().to_owned();
            return self.get_follow(&to).await;
        }
        page
    }

    /// Signs in through the login form with the test password.
    pub async fn sign_in(&self, email: &str) -> Page {
        self.get("/login").await;
        let page = self
            .submit("/login", &[("email", email), ("password", PASSWORD)])
            .await;
        assert_eq!(page.status, StatusCode::OK, "sign-in failed: {page:?}");
        page
    }
}
