//! `/admin/features`: the runtime feature flags, switched for every
//! instance sharing the store.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use smtpy_core::features::FLAG_NAMES;

use crate::problem::ApiJson;
use crate::routes::admin::{self, FeaturesView};
use crate::state::ApiState;

use super::super::csrf::FormPairs;
use super::super::render::{Chrome, Flash, WebError, page, problem_text, redirect_with};
use super::super::session::WebAdmin;

/// One flag as shown.
struct FlagRow {
    name: &'static str,
    label: &'static str,
    meaning: &'static str,
    on: bool,
}

#[derive(Template)]
#[template(path = "web/admin/features.html")]
struct FeaturesPage {
    chrome: Chrome,
    flags: Vec<FlagRow>,
}

/// A flag's label and meaning for people.
fn describe(name: &str) -> (&'static str, &'static str) {
    match name {
        "registration" => (
            "Open registration",
            "Anyone may create an account without an invitation.",
        ),
        "replies" => (
            "Replies",
            "Owners may reply to forwarded mail through reverse aliases. When off, such replies are refused (550 5.7.1).",
        ),
        "send_from_alias" => (
            "Send from an alias",
            "Owners may create contacts to start new mail from an alias. Contacts created by incoming mail are not affected.",
        ),
        "auto_create" => (
            "Automatic aliases on catch-all domains",
            "The first mail to an unknown address of a catch-all domain creates the alias. When off, such mail is refused as an unknown recipient.",
        ),
        _ => ("", ""),
    }
}

/// Whether `name` is on in `view`.
fn is_on(view: &FeaturesView, name: &str) -> bool {
    match name {
        "registration" => view.registration,
        "replies" => view.replies,
        "send_from_alias" => view.send_from_alias,
        "auto_create" => view.auto_create,
        _ => false,
    }
}

async fn show(State(state): State<ApiState>, admin: WebAdmin) -> Result<Response, WebError> {
    let user = admin.0;
    let chrome = user.chrome("admin", "Feature flags");
    let view = admin::get_features(State(state), user.principal)
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?
        .0;
    let flags = FLAG_NAMES
        .iter()
        .map(|name| {
            let (label, meaning) = describe(name);
            FlagRow {
                name,
                label,
                meaning,
                on: is_on(&view, name),
            }
        })
        .collect();
    Ok(page(&FeaturesPage { chrome, flags }))
}

/// Saves the form: every flag is sent explicitly, `true` when its box is
/// checked (an unchecked box is absent from the form).
async fn save(
    State(state): State<ApiState>,
    admin: WebAdmin,
    form: FormPairs,
) -> Result<Response, WebError> {
    let patch: serde_json::Map<String, serde_json::Value> = FLAG_NAMES
        .iter()
        .map(|name| {
            let on = form.all(name).contains(&"true");
            ((*name).to_owned(), serde_json::Value::Bool(on))
        })
        .collect();
    let result = admin::patch_features(
        State(state),
        admin.0.principal,
        ApiJson(serde_json::Value::Object(patch)),
    )
    .await;
    Ok(match result {
        Ok(view) => {
            let summary: Vec<String> = FLAG_NAMES
                .iter()
                .map(|name| {
                    let state = if is_on(&view.0, name) { "on" } else { "off" };
                    format!("{} {state}", describe(name).0)
                })
                .collect();
            redirect_with(
                "/admin/features",
                Flash::ok(format!(
                    "Feature flags saved for every instance: {}.",
                    summary.join(", ")
                )),
            )
        }
        Err(p) => redirect_with("/admin/features", Flash::error(problem_text(&p))),
    })
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new().route("/admin/features", get(show).post(save))
}
