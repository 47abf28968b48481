//! The alias page: its settings (edit form), contacts (write to a new
//! address, block, delete), the rules that apply to it, a 30-day usage
//! chart and the recent delivery events ("why didn't I get this mail?").

use std::collections::BTreeMap;

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use smtpy_core::ids::AliasId;

use crate::auth::Principal;
use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::routes::aliases::{self as api, AliasView, ModeWire, UpdateAlias};
use crate::routes::contacts::{self, ContactView, CreateContact, UpdateContact};
use crate::routes::events::{self, EventQuery, EventView};
use crate::routes::rules::{ActionDto, RuleView};
use crate::routes::stats::{self, StatsQuery, parse_day};
use crate::state::ApiState;

use super::super::csrf::{FormPairs, WebForm, form_pairs};
use super::super::render::{
    Chrome, Flash, FormErrors, WebError, page_with_status, problem_text, redirect_with, status_of,
};
use super::super::session::{WebUser, urlencode};
use super::chart::{Chart, DayCount};
use super::{action_failed, mailbox_names, mode_name, owner_mailboxes};
use crate::web::text::{date_of, path_id, when};

/// Events shown per page of the alias page.
const EVENT_ROWS: u32 = 20;
/// Contacts shown per page of the alias page.
const CONTACT_ROWS: u32 = 100;
/// Pages of blocked events read for the chart (200 each).
const BLOCKED_PAGES: usize = 5;

/// The values of the edit form (the alias's, or what was sent).
#[derive(Debug, Clone, Default)]
struct EditValues {
    enabled: bool,
    mailboxes: Vec<String>,
    mode: String,
    messages_per_hour: String,
    expires: String,
    note: String,
    category: String,
    revision: String,
}

/// The last day an expiry leaves the alias working (`YYYY-MM-DD`).
fn expiry_day(ms: i64) -> String {
    date_of(ms - 1)
}

impl EditValues {
    fn of(a: &AliasView) -> EditValues {
        EditValues {
            enabled: a.enabled,
            mailboxes: a.mailboxes.clone(),
            mode: mode_name(a.mode).to_owned(),
            messages_per_hour: a
                .messages_per_hour
                .map(|n| n.to_string())
                .unwrap_or_default(),
            expires: a.expires_at.map(expiry_day).unwrap_or_default(),
            note: a.note.clone().unwrap_or_default(),
            category: a.category.clone().unwrap_or_default(),
            revision: a.revision.to_string(),
        }
    }

    fn from_form(form: &FormPairs) -> EditValues {
        let text = |k: &str| form.get(k).unwrap_or("").trim().to_owned();
        EditValues {
            enabled: form.get("enabled").is_some(),
            mailboxes: form
                .all("mailboxes")
                .into_iter()
                .map(str::to_owned)
                .collect(),
            mode: text("mode"),
            messages_per_hour: text("messages_per_hour"),
            expires: text("expires"),
            note: form.get("note").unwrap_or("").trim().to_owned(),
            category: text("category"),
            revision: text("revision"),
        }
    }

    /// The API change from `current` to these values: only what differs,
    /// so that an unchanged value the owner may not set (an administrator's
    /// limit, a past expiry) does not block other edits.
    fn change(&self, current: &AliasView) -> Result<UpdateAlias, Problem> {
        let was = EditValues::of(current);
        let mut up = UpdateAlias {
            revision: match self.revision.as_str() {
                "" => None,
                r => Some(
                    r.parse()
                        .map_err(|_| Problem::bad_request("the form's revision is malformed"))?,
                ),
            },
            ..UpdateAlias::default()
        };
        if self.enabled != was.enabled {
            up.enabled = Some(self.enabled);
        }
        let mut a = self.mailboxes.clone();
        let mut b = was.mailboxes.clone();
        a.sort();
        a.dedup();
        b.sort();
        if a != b {
            up.mailboxes = Some(self.mailboxes.clone());
        }
        if self.mode != was.mode {
            up.mode = Some(match self.mode.as_str() {
                "alias" => ModeWire::Alias,
                "forward" => ModeWire::Forward,
                _ => return Err(Problem::invalid("mode", "choose alias or forward")),
            });
        }
        if self.note != was.note {
            up.note = Some((!self.note.is_empty()).then(|| self.note.clone()));
        }
        if self.category != was.category {
            up.category = Some((!self.category.is_empty()).then(|| self.category.clone()));
        }
        if self.messages_per_hour != was.messages_per_hour {
            up.messages_per_hour = Some(match self.messages_per_hour.as_str() {
                "" => None,
                n => Some(n.parse().map_err(|_| {
                    Problem::invalid("messages_per_hour", "must be a whole number")
                })?),
            });
        }
        if self.expires != was.expires {
            up.expires_at = Some(match self.expires.as_str() {
                "" => None,
                d => {
                    let day = parse_day(d)
                        .ok_or_else(|| Problem::invalid("expires_at", "not a date (YYYY-MM-DD)"))?;
                    Some(day.next().start().as_unix_millis())
                }
            });
        }
        Ok(up)
    }
}

/// A mailbox checkbox.
struct MailboxChoice {
    id: String,
    label: String,
    checked: bool,
}

/// A contact row.
struct ContactRow {
    id: String,
    address: String,
    display_name: String,
    reverse: String,
    blocked: bool,
    last_seen: String,
}

impl ContactRow {
    fn of(c: &ContactView) -> ContactRow {
        ContactRow {
            id: c.id.clone(),
            address: c.address.clone(),
            display_name: c.display_name.clone().unwrap_or_default(),
            reverse: c.reverse_alias.clone(),
            blocked: c.blocked,
            last_seen: c.last_seen_at.map(when).unwrap_or_default(),
        }
    }
}

/// A rule that applies to the alias.
struct RuleRow {
    name: String,
    applies: &'static str,
    enabled: bool,
    does: String,
}

/// A delivery event in the owner's words.
struct EventRow {
    time: String,
    what: String,
    /// `ok`, `error` or empty (the badge's class).
    tone: &'static str,
    sender: String,
    reason: String,
    correlation: String,
}

/// The lifetime counters.
struct Counters {
    forwarded: u64,
    blocked: u64,
    replied: u64,
    bounced: u64,
    last_used: String,
}

#[derive(Template)]
#[template(path = "web/aliases/alias.html")]
struct AliasPage {
    chrome: Chrome,
    alias: AliasView,
    deleted: bool,
    expired: bool,
    mailboxes_text: String,
    created: String,
    updated: String,
    edit: EditValues,
    /// The errors of the edit form.
    errors: FormErrors,
    mailbox_choices: Vec<MailboxChoice>,
    send_from_alias: bool,
    contacts: Vec<ContactRow>,
    contacts_next: Option<String>,
    new_contact: Option<ContactRow>,
    contact_address: String,
    contact_error: Option<String>,
    contact_field_error: String,
    rules: Vec<RuleRow>,
    chart: Chart,
    blocked_partial: bool,
    counters: Option<Counters>,
    events: Vec<EventRow>,
    events_next: Option<String>,
    events_first: Option<String>,
    today: String,
}

impl AliasPage {
    fn mode_is(&self, m: &str) -> bool {
        self.edit.mode == m
    }
    fn current_mode(&self) -> &'static str {
        mode_name(self.alias.mode)
    }
}

/// The page's query: which new contact to show, and the cursors of the
/// contact and event lists.
#[derive(Debug, Default)]
struct DetailQuery {
    contact: Option<String>,
    contacts: Option<String>,
    events: Option<String>,
}

impl DetailQuery {
    fn parse(raw: Option<&str>) -> DetailQuery {
        let mut q = DetailQuery::default();
        for (k, v) in form_pairs(raw.unwrap_or("").as_bytes()) {
            let v = (!v.is_empty()).then_some(v);
            match k.as_str() {
                "contact" => q.contact = v,
                "contacts" => q.contacts = v,
                "events" => q.events = v,
                _ => {}
            }
        }
        q
    }
}

/// What the contact form was sent with, and its problem.
#[derive(Debug, Default)]
struct ContactAttempt {
    address: String,
    problem: Option<Problem>,
}

/// What the owner sees for an event.
fn describe(e: &EventView, rules: &[RuleView]) -> EventRow {
    let detail = |k: &str| e.details.get(k).cloned().unwrap_or_default();
    let reason = detail("reason");
    let (what, tone): (String, &'static str) = match e.kind.as_str() {
        "accepted" => ("Accepted, on its way to your mailbox".into(), "ok"),
        "delivered" => ("Delivered to your mailbox".into(), "ok"),
        "replied" => ("Sent from the alias (reply or new mail)".into(), "ok"),
        "refused" => ("Refused (the sender was told)".into(), "error"),
        "blocked" => match reason.strip_prefix("rule ") {
            Some(id) => {
                let name = rules
                    .iter()
                    .find(|r| r.id == id.trim())
                    .map_or_else(|| "a rule since deleted".to_owned(), |r| format!("“{}”", r.name));
                (format!("Blocked by your rule {name}"), "error")
            }
            None if reason == "contact blocked" => {
                ("Blocked: you blocked this sender".into(), "error")
            }
            None => ("Blocked".into(), "error"),
        },
        "quarantined" => ("Held for your review (quarantine)".into(), ""),
        "rate_limited" => (
            "Delayed: too many messages for this alias right now (rate limit); the sender will retry".into(),
            "error",
        ),
        "deferred" => ("Delivery delayed; it will be retried".into(), ""),
        "failed" => ("Could not be delivered to your mailbox".into(), "error"),
        "bounced" => ("Bounced: your mailbox's server returned it".into(), "error"),
        "notified" => ("A notice was sent to you".into(), ""),
        "auto_disabled" => (
            "Disabled automatically after too many bounces".into(),
            "error",
        ),
        other => (other.replace('_', " "), ""),
    };
    let mut parts: Vec<String> = Vec::new();
    if !reason.is_empty() && !reason.starts_with("rule ") && reason != "contact blocked" {
        parts.push(reason);
    }
    for (key, label) in [
        ("reply", "server said"),
        ("bounce_class", "bounce"),
        ("recipient", "to"),
        ("attempt", "attempt"),
        ("spf", "SPF"),
        ("dkim", "DKIM"),
        ("dmarc", "DMARC"),
    ] {
        let v = detail(key);
        if !v.is_empty() {
            parts.push(format!("{label}: {v}"));
        }
    }
    EventRow {
        time: when(e.at),
        what,
        tone,
        sender: e.sender.clone().unwrap_or_default(),
        reason: parts.join("; "),
        correlation: detail("correlation"),
    }
}

fn describe_actions(actions: &[ActionDto]) -> String {
    let words: Vec<String> = actions
        .iter()
        .map(|a| match a {
            ActionDto::ForwardTo { mailboxes } => {
                format!("send to {} other mailbox(es)", mailboxes.len())
            }
            ActionDto::Block { .. } => "block".to_owned(),
            ActionDto::Quarantine => "hold for review".to_owned(),
            ActionDto::PrefixSubject { prefix } => format!("prefix the subject with “{prefix}”"),
            ActionDto::AddHeader { name, .. } => format!("add the header {name}"),
            ActionDto::Stop => "stop".to_owned(),
        })
        .collect();
    words.join(", ")
}

/// The caller's rules that apply to `alias` (from the rules API, in
/// evaluation order).
async fn rules_for(
    state: &ApiState,
    principal: &Principal,
    alias: &AliasView,
) -> Result<Vec<RuleView>, Problem> {
    let axum::Json(all) =
        crate::routes::rules::list_rules(State(state.clone()), principal.clone()).await?;
    Ok(all
        .into_iter()
        .filter(|r| match r.scope.as_str() {
            "user" => true,
            "domain" => r.domain_id.as_deref() == Some(alias.domain_id.as_str()),
            _ => r.alias_id.as_deref() == Some(alias.id.as_str()),
        })
        .collect())
}

/// Blocked events per day since `from_ms` (at most [`BLOCKED_PAGES`]
/// pages; `true` when there were more).
async fn blocked_per_day(
    state: &ApiState,
    principal: &Principal,
    id: AliasId,
    from_ms: i64,
) -> Result<(BTreeMap<String, u64>, bool), Problem> {
    let mut out = BTreeMap::new();
    let mut cursor = None;
    for _ in 0..BLOCKED_PAGES {
        let page = events::alias_events(
            State(state.clone()),
            principal.clone(),
            ApiPath(id),
            ApiQuery(PageQuery {
                limit: Some(200),
                cursor: cursor.take(),
            }),
            ApiQuery(EventQuery {
                kind: Some("blocked".to_owned()),
                since: Some(from_ms),
                ..EventQuery::default()
            }),
        )
        .await?
        .0;
        for e in &page.items {
            *out.entry(date_of(e.at)).or_insert(0) += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok((out, false)),
        }
    }
    Ok((out, true))
}

/// Renders the alias page.
#[allow(clippy::too_many_arguments)]
async fn render(
    state: &ApiState,
    user: &WebUser,
    id: uuid::Uuid,
    query: &DetailQuery,
    edit: Option<EditValues>,
    errors: FormErrors,
    contact: ContactAttempt,
    status: StatusCode,
) -> Result<Response, WebError> {
    let principal = &user.principal;
    let fail = |p: Problem| WebError::within(p, user.chrome("aliases", "Alias"));
    let alias = api::get_alias(State(state.clone()), principal.clone(), ApiPath(id))
        .await
        .map_err(fail)?
        .0;
    let alias_id = AliasId::from_uuid(id);
    let mailboxes = owner_mailboxes(state, principal).await.map_err(fail)?;
    let edit = edit.unwrap_or_else(|| EditValues::of(&alias));
    let mailbox_choices = mailboxes
        .iter()
        .map(|m| MailboxChoice {
            id: m.id.to_string(),
            label: if m.can_receive() {
                m.address.to_string()
            } else {
                format!("{} (not verified or disabled)", m.address)
            },
            checked: edit.mailboxes.contains(&m.id.to_string()),
        })
        .collect();

    let contact_page = contacts::list_contacts(
        State(state.clone()),
        principal.clone(),
        ApiPath(id),
        ApiQuery(PageQuery {
            limit: Some(CONTACT_ROWS),
            cursor: query.contacts.clone(),
        }),
    )
    .await
    .map_err(fail)?
    .0;
    let new_contact = match &query.contact {
        Some(c) => match c.parse::<uuid::Uuid>() {
            Ok(cid) => contacts::get_contact(State(state.clone()), principal.clone(), ApiPath(cid))
                .await
                .ok()
                .map(|j| j.0)
                .filter(|c| c.alias_id == alias.id)
                .map(|c| ContactRow::of(&c)),
            Err(_) => None,
        },
        None => None,
    };

    let rules = rules_for(state, principal, &alias).await.map_err(fail)?;

    let series = stats::alias_stats(
        State(state.clone()),
        principal.clone(),
        ApiPath(alias_id),
        ApiQuery(StatsQuery::default()),
    )
    .await
    .map_err(fail)?
    .0;
    let from_ms = parse_day(&series.from).map_or(0, |d| d.start().as_unix_millis());
    let (blocked, blocked_partial) = blocked_per_day(state, principal, alias_id, from_ms)
        .await
        .map_err(fail)?;
    let chart = Chart::of(
        series
            .days
            .iter()
            .map(|d| DayCount {
                day: d.day.clone(),
                messages: d.messages,
                blocked: blocked.get(&d.day).copied().unwrap_or(0),
            })
            .collect(),
    );
    let counters = series.counters.as_ref().map(|c| Counters {
        forwarded: c.forwarded,
        blocked: c.blocked,
        replied: c.replied,
        bounced: c.bounced,
        last_used: c.last_used_at.map_or_else(|| "never".to_owned(), when),
    });

    let event_page = events::alias_events(
        State(state.clone()),
        principal.clone(),
        ApiPath(alias_id),
        ApiQuery(PageQuery {
            limit: Some(EVENT_ROWS),
            cursor: query.events.clone(),
        }),
        ApiQuery(EventQuery::default()),
    )
    .await
    .map_err(fail)?
    .0;
    let events = event_page
        .items
        .iter()
        .map(|e| describe(e, &rules))
        .collect();
    let here = format!("/app/aliases/{}", alias.id);

    let (contact_error, contact_field_error) = match &contact.problem {
        Some(p) => (
            Some(problem_text(p)),
            FormErrors::of(p).field("address").to_owned(),
        ),
        None => (None, String::new()),
    };
    let page = AliasPage {
        chrome: user.chrome("aliases", alias.address.clone()),
        deleted: alias.deleted_at.is_some(),
        expired: alias.enabled && !alias.active && alias.deleted_at.is_none(),
        mailboxes_text: mailbox_names(&alias.mailboxes, &mailboxes).join(", "),
        created: when(alias.created_at),
        updated: when(alias.updated_at),
        edit,
        errors,
        mailbox_choices,
        send_from_alias: state.features().get().send_from_alias,
        contacts: contact_page.items.iter().map(ContactRow::of).collect(),
        contacts_next: contact_page
            .next_cursor
            .map(|c| format!("{here}?contacts={}#contacts", urlencode(&c))),
        new_contact,
        contact_address: contact.address,
        contact_error,
        contact_field_error,
        rules: rules
            .iter()
            .map(|r| RuleRow {
                name: r.name.clone(),
                applies: match r.scope.as_str() {
                    "user" => "all your aliases",
                    "domain" => "this domain",
                    _ => "this alias",
                },
                enabled: r.enabled,
                does: describe_actions(&r.actions),
            })
            .collect(),
        chart,
        blocked_partial,
        counters,
        events,
        events_next: event_page
            .next_cursor
            .map(|c| format!("{here}?events={}#events", urlencode(&c))),
        events_first: query.events.as_ref().map(|_| format!("{here}#events")),
        today: date_of(state.clock().now().as_unix_millis()),
        alias,
    };
    Ok(page_with_status(status, &page))
}

async fn show(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, WebError> {
    let id =
        path_id(&id, "alias").map_err(|p| WebError::within(p, user.chrome("aliases", "Alias")))?;
    let query = DetailQuery::parse(raw.as_deref());
    render(
        &state,
        &user,
        id,
        &query,
        None,
        FormErrors::none(),
        ContactAttempt::default(),
        StatusCode::OK,
    )
    .await
}

/// Saves the edit form.
async fn edit(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    form: FormPairs,
) -> Result<Response, WebError> {
    let id =
        path_id(&id, "alias").map_err(|p| WebError::within(p, user.chrome("aliases", "Alias")))?;
    let values = EditValues::from_form(&form);
    let principal = user.principal.clone();
    let current = api::get_alias(State(state.clone()), principal.clone(), ApiPath(id))
        .await
        .map_err(|p| WebError::within(p, user.chrome("aliases", "Alias")))?
        .0;
    let result = match values.change(&current) {
        Ok(change) => api::update_alias(
            State(state.clone()),
            principal,
            ApiPath(id),
            ApiJson(change),
        )
        .await
        .map(|j| j.0),
        Err(p) => Err(p),
    };
    match result {
        Ok(a) => Ok(redirect_with(
            &format!("/app/aliases/{id}"),
            Flash::ok(format!("Saved the settings of {}.", a.address)),
        )),
        Err(p) => {
            render(
                &state,
                &user,
                id,
                &DetailQuery::default(),
                Some(values),
                FormErrors::of(&p),
                ContactAttempt::default(),
                status_of(&p),
            )
            .await
        }
    }
}

#[derive(Debug, Deserialize)]
struct ContactForm {
    address: Option<String>,
}

/// Creates a contact: the reverse address to write to from the alias.
async fn add_contact(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    WebForm(form): WebForm<ContactForm>,
) -> Result<Response, WebError> {
    let id =
        path_id(&id, "alias").map_err(|p| WebError::within(p, user.chrome("aliases", "Alias")))?;
    let address = form.address.unwrap_or_default().trim().to_owned();
    let body = CreateContact {
        address: address.clone(),
        display_name: None,
    };
    match contacts::create_contact(
        State(state.clone()),
        user.principal.clone(),
        ApiPath(id),
        ApiJson(body),
    )
    .await
    {
        Ok((_, c)) => {
            let c = c.0;
            Ok(redirect_with(
                &format!("/app/aliases/{id}?contact={}#new-contact", c.id),
                Flash::ok(format!(
                    "To write to {}, send your mail to {} from your mailbox; it leaves as {}.",
                    c.address, c.reverse_alias, c.alias
                )),
            ))
        }
        Err(p) if p.kind == crate::problem::ProblemType::NotFound => {
            Err(WebError::within(p, user.chrome("aliases", "Alias")))
        }
        Err(p) => {
            let status = status_of(&p);
            render(
                &state,
                &user,
                id,
                &DetailQuery::default(),
                None,
                FormErrors::none(),
                ContactAttempt {
                    address,
                    problem: Some(p),
                },
                status,
            )
            .await
        }
    }
}

/// Blocks or unblocks a contact.
async fn set_blocked(
    state: ApiState,
    user: &WebUser,
    headers: &HeaderMap,
    id: &str,
    blocked: bool,
) -> Result<Response, WebError> {
    let chrome = || user.chrome("aliases", "Contact");
    let cid = id
        .parse::<uuid::Uuid>()
        .map_err(|_| WebError::within(Problem::not_found("contact"), chrome()))?;
    let current = contacts::get_contact(State(state.clone()), user.principal.clone(), ApiPath(cid))
        .await
        .map_err(|p| WebError::within(p, chrome()))?
        .0;
    let back = format!("/app/aliases/{}#contacts", current.alias_id);
    let change = UpdateContact {
        blocked: Some(blocked),
        ..UpdateContact::default()
    };
    match contacts::update_contact(
        State(state),
        user.principal.clone(),
        ApiPath(cid),
        ApiJson(change),
    )
    .await
    {
        Ok(c) => {
            let c = c.0;
            let text = if c.blocked {
                format!(
                    "Blocked {}: its mail to {} is no longer forwarded.",
                    c.address, c.alias
                )
            } else {
                format!(
                    "Unblocked {}: its mail to {} is forwarded again.",
                    c.address, c.alias
                )
            };
            Ok(redirect_with(&back, Flash::ok(text)))
        }
        Err(p) => Ok(action_failed(headers, &back, &p)),
    }
}

async fn block_contact(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    set_blocked(state, &user, &headers, &id, true).await
}

async fn unblock_contact(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    set_blocked(state, &user, &headers, &id, false).await
}

async fn delete_contact(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = || user.chrome("aliases", "Contact");
    let cid = id
        .parse::<uuid::Uuid>()
        .map_err(|_| WebError::within(Problem::not_found("contact"), chrome()))?;
    let current = contacts::get_contact(State(state.clone()), user.principal.clone(), ApiPath(cid))
        .await
        .map_err(|p| WebError::within(p, chrome()))?
        .0;
    let back = format!("/app/aliases/{}#contacts", current.alias_id);
    match contacts::delete_contact(State(state), user.principal.clone(), ApiPath(cid)).await {
        Ok(_) => Ok(redirect_with(
            &back,
            Flash::ok(format!(
                "Deleted the contact {}: its reverse address {} no longer works.",
                current.address, current.reverse_alias
            )),
        )),
        Err(p) => Ok(action_failed(&headers, &back, &p)),
    }
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/aliases/{id}", get(show).post(edit))
        .route("/app/aliases/{id}/contacts", post(add_contact))
        .route("/app/contacts/{id}/block", post(block_contact))
        .route("/app/contacts/{id}/unblock", post(unblock_contact))
        .route("/app/contacts/{id}/delete", post(delete_contact))
}
