//! Pages: the rules editor and the explain tester.
//!
//! * `GET /app/rules` (`?alias={id}`: only the rules that apply to that
//!   alias): the rules in evaluation order with their conditions and
//!   actions in words, enable/disable (in place with `data-inline`),
//!   move up/down, delete; the form for a new rule; the explain tester.
//! * `GET/POST /app/rules/{id}`: the edit form.
//! * `POST /app/rules/explain`: what would happen to a test message,
//!   rule by rule, and the final verdict (read-only: the answer is a page,
//!   not a redirect).
//!
//! The form is structured (rows of conditions and actions) and covers the
//! API's whole rule format: condition rows `c_field`, `c_header`,
//! `c_operator`, `c_value`; action rows `a_type`, `a_mailbox`, `a_text`,
//! `a_value`. A row with an empty value (condition) or no type (action) is
//! left out.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use smtpy_core::ids::RuleId;
use smtpy_core::store::{AliasFilter, MAX_PAGE_SIZE, PageRequest};

use crate::page::PageQuery;
use crate::problem::{ApiJson, ApiPath, ApiQuery, Problem};
use crate::routes::domains as domain_api;
use crate::routes::mailboxes::MailboxView;
use crate::routes::rules::{
    self as api, ActionDto, BlockReplyDto, ConditionDto, CreateRule, ExplainHeaders,
    ExplainRequest, ExplanationView, FieldDto, MatchModeDto, OperatorDto, ReorderRules, RuleView,
    UpdateRule,
};
use crate::state::ApiState;

use super::csrf::FormPairs;
use super::domains::my_mailboxes;
use super::render::{
    Chrome, Flash, FormErrors, WebError, page, page_with_status, problem_text, redirect_with,
    status_of, wants_json,
};
use super::session::WebUser;

/// Empty condition rows offered after the rule's own.
const SPARE_CONDITIONS: usize = 2;
/// Empty action rows offered after the rule's own.
const SPARE_ACTIONS: usize = 2;

const FIELDS: &[(&str, &str)] = &[
    ("from", "From (sender)"),
    ("to", "To (the alias)"),
    ("subject", "Subject"),
    ("header", "Header (name it)"),
    ("size", "Size in bytes"),
    ("has_attachment", "Has an attachment (true/false)"),
    ("spf", "SPF result"),
    ("dkim", "DKIM result"),
    ("dmarc", "DMARC result"),
];

const OPERATORS: &[(&str, &str)] = &[
    ("is", "is"),
    ("is_not", "is not"),
    ("contains", "contains"),
    ("not_contains", "does not contain"),
    ("starts_with", "starts with"),
    ("ends_with", "ends with"),
    ("matches_regex", "matches the regular expression"),
    ("greater_than", "is greater than"),
    ("less_than", "is less than"),
];

const ACTIONS: &[(&str, &str)] = &[
    ("", "(none)"),
    ("forward_to", "Forward to mailbox"),
    ("block_reject", "Block: refuse (550)"),
    ("block_silent", "Block: accept and discard"),
    ("quarantine", "Quarantine (hold for review)"),
    ("prefix_subject", "Prefix the subject with text"),
    ("add_header", "Add a header (name, value)"),
    ("stop", "Stop: evaluate no further rules"),
];

fn label(table: &[(&'static str, &'static str)], key: &str) -> &'static str {
    table
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("?", |(_, v)| v)
}

/// A wire enum's name (`matches_regex`).
fn wire<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A wire enum from its name.
fn from_wire<T: DeserializeOwned>(s: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// One condition row of the form.
#[derive(Debug, Clone, Default)]
struct CondRow {
    field: String,
    header: String,
    operator: String,
    value: String,
}

impl CondRow {
    fn is_field(&self, k: &str) -> bool {
        self.field == k
    }
    fn is_operator(&self, k: &str) -> bool {
        self.operator == k
    }
}

/// One action row of the form.
#[derive(Debug, Clone, Default)]
struct ActionRow {
    kind: String,
    mailbox: String,
    text: String,
    value: String,
}

impl ActionRow {
    fn is_kind(&self, k: &str) -> bool {
        self.kind == k
    }
    fn is_mailbox(&self, id: &str) -> bool {
        self.mailbox == id
    }
}

/// The rule form's values.
#[derive(Debug, Clone, Default)]
struct RuleForm {
    name: String,
    /// `user`, `alias:<id>` or `domain:<id>` (create only).
    scope: String,
    priority: String,
    enabled: bool,
    match_mode: String,
    conditions: Vec<CondRow>,
    actions: Vec<ActionRow>,
    revision: String,
}

impl RuleForm {
    fn blank(scope: String) -> RuleForm {
        RuleForm {
            scope,
            enabled: true,
            match_mode: "all".to_owned(),
            ..RuleForm::default()
        }
        .padded()
    }

    /// With the spare empty rows.
    fn padded(mut self) -> RuleForm {
        for _ in 0..SPARE_CONDITIONS {
            self.conditions.push(CondRow {
                field: "from".to_owned(),
                operator: "contains".to_owned(),
                ..CondRow::default()
            });
        }
        for _ in 0..SPARE_ACTIONS {
            self.actions.push(ActionRow::default());
        }
        self
    }

    fn of(r: &RuleView) -> RuleForm {
        RuleForm {
            name: r.name.clone(),
            scope: String::new(),
            priority: r.priority.to_string(),
            enabled: r.enabled,
            match_mode: wire(&r.match_mode),
            conditions: r
                .conditions
                .iter()
                .map(|c| CondRow {
                    field: wire(&c.field),
                    header: c.header.clone().unwrap_or_default(),
                    operator: wire(&c.operator),
                    value: c.value.clone(),
                })
                .collect(),
            actions: r
                .actions
                .iter()
                .flat_map(|a| match a {
                    // One row per mailbox; adjacent forward rows are one
                    // action again when read back (see `wire_actions`).
                    ActionDto::ForwardTo { mailboxes } if mailboxes.is_empty() => {
                        vec![ActionRow {
                            kind: "forward_to".to_owned(),
                            ..ActionRow::default()
                        }]
                    }
                    ActionDto::ForwardTo { mailboxes } => mailboxes
                        .iter()
                        .map(|m| ActionRow {
                            kind: "forward_to".to_owned(),
                            mailbox: m.clone(),
                            ..ActionRow::default()
                        })
                        .collect::<Vec<_>>(),
                    ActionDto::Block { reply } => vec![ActionRow {
                        kind: match reply {
                            BlockReplyDto::Reject => "block_reject",
                            BlockReplyDto::Silent => "block_silent",
                        }
                        .to_owned(),
                        ..ActionRow::default()
                    }],
                    ActionDto::Quarantine => vec![ActionRow {
                        kind: "quarantine".to_owned(),
                        ..ActionRow::default()
                    }],
                    ActionDto::PrefixSubject { prefix } => vec![ActionRow {
                        kind: "prefix_subject".to_owned(),
                        text: prefix.clone(),
                        ..ActionRow::default()
                    }],
                    ActionDto::AddHeader { name, value } => vec![ActionRow {
                        kind: "add_header".to_owned(),
                        text: name.clone(),
                        value: value.clone(),
                        ..ActionRow::default()
                    }],
                    ActionDto::Stop => vec![ActionRow {
                        kind: "stop".to_owned(),
                        ..ActionRow::default()
                    }],
                })
                .collect(),
            revision: r.revision.to_string(),
        }
        .padded()
    }

    /// Reads the posted form (rows as sent; not padded).
    fn read(f: &FormPairs) -> RuleForm {
        let col =
            |name: &str| -> Vec<String> { f.all(name).into_iter().map(str::to_owned).collect() };
        let (fields, headers, ops, values) = (
            col("c_field"),
            col("c_header"),
            col("c_operator"),
            col("c_value"),
        );
        let at = |v: &Vec<String>, i: usize| v.get(i).cloned().unwrap_or_default();
        let conditions = (0..fields.len().max(values.len()))
            .map(|i| CondRow {
                field: at(&fields, i),
                header: at(&headers, i),
                operator: at(&ops, i),
                value: at(&values, i),
            })
            .collect();
        let (kinds, boxes, texts, avalues) = (
            col("a_type"),
            col("a_mailbox"),
            col("a_text"),
            col("a_value"),
        );
        let actions = (0..kinds.len())
            .map(|i| ActionRow {
                kind: at(&kinds, i),
                mailbox: at(&boxes, i),
                text: at(&texts, i),
                value: at(&avalues, i),
            })
            .collect();
        RuleForm {
            name: f.get("name").unwrap_or_default().to_owned(),
            scope: f.get("scope").unwrap_or("user").to_owned(),
            priority: f.get("priority").unwrap_or_default().trim().to_owned(),
            enabled: f.get("enabled").is_some_and(|v| !v.is_empty()),
            match_mode: f.get("match_mode").unwrap_or("all").to_owned(),
            conditions,
            actions,
            revision: f.get("revision").unwrap_or_default().to_owned(),
        }
    }

    /// The rows that say something (a condition with a value or a header
    /// name, an action with a type), numbered as the API will number them.
    fn wire_conditions(&self) -> Result<Vec<ConditionDto>, Problem> {
        self.conditions
            .iter()
            .filter(|c| !c.value.is_empty() || !c.header.trim().is_empty())
            .enumerate()
            .map(|(i, c)| {
                let field: FieldDto = from_wire(&c.field).ok_or_else(|| {
                    Problem::invalid(format!("conditions/{i}/field"), "unknown field")
                })?;
                let operator: OperatorDto = from_wire(&c.operator).ok_or_else(|| {
                    Problem::invalid(format!("conditions/{i}/operator"), "unknown operator")
                })?;
                let header = c.header.trim();
                Ok(ConditionDto {
                    field,
                    // A header name only counts for a header condition (the
                    // row keeps its input for the other fields too).
                    header: (field == FieldDto::Header && !header.is_empty())
                        .then(|| header.to_owned()),
                    operator,
                    value: c.value.clone(),
                })
            })
            .collect()
    }

    /// The action rows as the API's actions; adjacent "forward to" rows
    /// are one action forwarding to all their mailboxes.
    fn wire_actions(&self) -> Result<Vec<ActionDto>, Problem> {
        let mut out: Vec<ActionDto> = Vec::new();
        for a in self.actions.iter().filter(|a| !a.kind.is_empty()) {
            let i = out.len();
            let action = match a.kind.as_str() {
                "forward_to" => {
                    if let Some(ActionDto::ForwardTo { mailboxes }) = out.last_mut() {
                        if !a.mailbox.is_empty() {
                            mailboxes.push(a.mailbox.clone());
                        }
                        continue;
                    }
                    ActionDto::ForwardTo {
                        mailboxes: if a.mailbox.is_empty() {
                            Vec::new()
                        } else {
                            vec![a.mailbox.clone()]
                        },
                    }
                }
                "block_reject" => ActionDto::Block {
                    reply: BlockReplyDto::Reject,
                },
                "block_silent" => ActionDto::Block {
                    reply: BlockReplyDto::Silent,
                },
                "quarantine" => ActionDto::Quarantine,
                "prefix_subject" => ActionDto::PrefixSubject {
                    prefix: a.text.clone(),
                },
                "add_header" => ActionDto::AddHeader {
                    name: a.text.trim().to_owned(),
                    value: a.value.clone(),
                },
                "stop" => ActionDto::Stop,
                _ => {
                    return Err(Problem::invalid(
                        format!("actions/{i}/type"),
                        "unknown action",
                    ));
                }
            };
            out.push(action);
        }
        Ok(out)
    }

    fn wire_mode(&self) -> Result<MatchModeDto, Problem> {
        from_wire(&self.match_mode).ok_or_else(|| Problem::invalid("match_mode", "all or any"))
    }

    fn wire_priority(&self) -> Result<Option<i32>, Problem> {
        if self.priority.is_empty() {
            return Ok(None);
        }
        self.priority
            .parse()
            .map(Some)
            .map_err(|_| Problem::invalid("priority", "must be a whole number"))
    }

    fn is_scope(&self, v: &str) -> bool {
        self.scope == v
    }
}

/// Names for ids: the caller's aliases, domains and mailboxes.
#[derive(Debug, Default)]
struct Names {
    /// The caller's live aliases: (id, address, domain id).
    aliases: Vec<(String, String, String)>,
    /// The caller's own domains: (id, name).
    domains: Vec<(String, String)>,
    mailboxes: Vec<MailboxView>,
}

impl Names {
    async fn load(state: &ApiState, user: &WebUser) -> Result<Names, Problem> {
        // Read-only, for the scope picker and the names of ids: the
        // caller's own live aliases (the store scopes them to the owner).
        let aliases = state
            .store()
            .list_aliases(
                user.principal.access(),
                &AliasFilter::default(),
                PageRequest {
                    after: None,
                    limit: MAX_PAGE_SIZE,
                },
            )
            .await?
            .items
            .into_iter()
            .map(|a| {
                (
                    a.id.to_string(),
                    a.address.to_string(),
                    a.domain.to_string(),
                )
            })
            .collect();
        let domains = domain_api::list_domains(
            State(state.clone()),
            user.principal.clone(),
            ApiQuery(PageQuery {
                limit: Some(crate::page::MAX_LIMIT),
                cursor: None,
            }),
        )
        .await?
        .0
        .items
        .into_iter()
        .filter(|d| d.mine)
        .map(|d| (d.id, d.name))
        .collect();
        let mailboxes = my_mailboxes(state, user).await?;
        Ok(Names {
            aliases,
            domains,
            mailboxes,
        })
    }

    fn alias(&self, id: &str) -> String {
        self.aliases
            .iter()
            .find(|(i, _, _)| i == id)
            .map_or_else(|| format!("alias {id}"), |(_, a, _)| a.clone())
    }

    fn domain(&self, id: &str) -> String {
        self.domains
            .iter()
            .find(|(i, _)| i == id)
            .map_or_else(|| format!("domain {id}"), |(_, n)| n.clone())
    }

    fn mailbox(&self, id: &str) -> String {
        self.mailboxes
            .iter()
            .find(|m| m.id == id)
            .map_or_else(|| format!("mailbox {id}"), |m| m.address.clone())
    }

    fn scope(&self, r: &RuleView) -> String {
        match (r.alias_id.as_deref(), r.domain_id.as_deref()) {
            (Some(a), _) => format!("alias {}", self.alias(a)),
            (None, Some(d)) => format!("aliases on {}", self.domain(d)),
            _ => "all your aliases".to_owned(),
        }
    }

    fn condition(c: &ConditionDto) -> String {
        let field = wire(&c.field);
        let what = match (&c.field, &c.header) {
            (FieldDto::Header, Some(h)) => format!("header {h}"),
            _ => label(FIELDS, &field).to_owned(),
        };
        format!(
            "{what} {} \u{201c}{}\u{201d}",
            label(OPERATORS, &wire(&c.operator)),
            c.value
        )
    }

    fn action(&self, a: &ActionDto) -> String {
        match a {
            ActionDto::ForwardTo { mailboxes } => format!(
                "forward to {}",
                mailboxes
                    .iter()
                    .map(|m| self.mailbox(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ActionDto::Block {
                reply: BlockReplyDto::Reject,
            } => "block: refuse with 550".to_owned(),
            ActionDto::Block {
                reply: BlockReplyDto::Silent,
            } => "block: accept and discard silently".to_owned(),
            ActionDto::Quarantine => "quarantine (hold for review)".to_owned(),
            ActionDto::PrefixSubject { prefix } => {
                format!("prefix the subject with \u{201c}{prefix}\u{201d}")
            }
            ActionDto::AddHeader { name, value } => format!("add the header {name}: {value}"),
            ActionDto::Stop => "stop: evaluate no further rules".to_owned(),
        }
    }

    /// Whether rule `r` is evaluated for mail to the alias `alias_id`
    /// (or, without one, an address on the domain `domain_id`).
    fn applies(r: &RuleView, alias_id: Option<&str>, domain_id: Option<&str>) -> bool {
        match (r.alias_id.as_deref(), r.domain_id.as_deref()) {
            (Some(a), _) => Some(a) == alias_id,
            (None, Some(d)) => Some(d) == domain_id,
            _ => true,
        }
    }
}

/// A rule of the list, in words.
struct RuleRow {
    r: RuleView,
    scope: String,
    conditions: Vec<String>,
    actions: Vec<String>,
    first: bool,
    last: bool,
}

impl RuleRow {
    fn state(&self) -> &'static str {
        if self.r.enabled {
            "enabled"
        } else {
            "disabled"
        }
    }
    fn toggle_label(&self) -> &'static str {
        if self.r.enabled { "Disable" } else { "Enable" }
    }
    fn mode(&self) -> &'static str {
        match self.r.match_mode {
            MatchModeDto::All => "all of",
            MatchModeDto::Any => "any of",
        }
    }
}

fn rows(rules: Vec<RuleView>, names: &Names) -> Vec<RuleRow> {
    let n = rules.len();
    rules
        .into_iter()
        .enumerate()
        .map(|(i, r)| RuleRow {
            scope: names.scope(&r),
            conditions: r.conditions.iter().map(Names::condition).collect(),
            actions: r.actions.iter().map(|a| names.action(a)).collect(),
            first: i == 0,
            last: i + 1 == n,
            r,
        })
        .collect()
}

/// The explain tester's values.
#[derive(Debug, Clone, Default, Deserialize)]
struct ExplainForm {
    #[serde(default)]
    alias: String,
    #[serde(default)]
    mail_from: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    headers: String,
    #[serde(default)]
    size: String,
}

/// One rule's part in an explanation.
struct Verdict {
    name: String,
    id: String,
    /// `matched`, `decided`, `no-match`, `skipped`.
    outcome: &'static str,
    why: String,
}

impl Verdict {
    fn badge(&self) -> &'static str {
        match self.outcome {
            "matched" | "decided" => "ok",
            _ => "",
        }
    }
    fn label(&self) -> &'static str {
        match self.outcome {
            "decided" => "matched, decided",
            "matched" => "matched",
            "no-match" => "did not match",
            _ => "not evaluated",
        }
    }
}

/// The explain tester's answer, for people.
struct Explained {
    v: ExplanationView,
    verdicts: Vec<Verdict>,
    /// Where it would be forwarded (addresses).
    mailboxes: Vec<String>,
    any_matched: bool,
    summary: String,
}

fn explained(v: ExplanationView, rules: &[RuleView], names: &Names) -> Explained {
    let alias_id = v.alias_id.clone();
    let domain_id = match &alias_id {
        Some(a) => names
            .aliases
            .iter()
            .find(|(i, _, _)| i == a)
            .map(|(_, _, d)| d.clone()),
        None => v.alias_address.as_deref().and_then(|addr| {
            let dom = addr.rsplit_once('@').map(|(_, d)| d.to_lowercase())?;
            names
                .domains
                .iter()
                .find(|(_, n)| n.to_lowercase() == dom)
                .map(|(i, _)| i.clone())
        }),
    };
    let mut settled = false; // an earlier rule decided or said stop
    let mut verdicts = Vec::new();
    for r in rules {
        let matched = v.matched_rules.contains(&r.id);
        let decided = v.deciding_rule.as_deref() == Some(r.id.as_str());
        let conds = if r.conditions.is_empty() {
            "it has no conditions, so it matches every message".to_owned()
        } else {
            let mode = match r.match_mode {
                MatchModeDto::All => "all of",
                MatchModeDto::Any => "at least one of",
            };
            format!(
                "{mode}: {}",
                r.conditions
                    .iter()
                    .map(Names::condition)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        let (outcome, why) = if decided {
            (
                "decided",
                format!(
                    "the message meets {conds}. Its action decided the outcome; later rules do not run."
                ),
            )
        } else if matched {
            ("matched", format!("the message meets {conds}."))
        } else if !r.enabled {
            ("skipped", "the rule is disabled.".to_owned())
        } else if !Names::applies(r, alias_id.as_deref(), domain_id.as_deref()) {
            (
                "skipped",
                format!("it applies to {}, not to this address.", names.scope(r)),
            )
        } else if settled {
            (
                "skipped",
                "an earlier rule decided or stopped the evaluation.".to_owned(),
            )
        } else if v.stage == "rcpt" && v.deciding_rule.is_none() && v.matched_rules.is_empty() {
            (
                "skipped",
                "the address was settled before any rule ran (see the verdict).".to_owned(),
            )
        } else {
            (
                "no-match",
                format!("the rule needs {conds}, and the message does not meet that."),
            )
        };
        if decided || (matched && r.actions.iter().any(|a| matches!(a, ActionDto::Stop))) {
            settled = true;
        }
        verdicts.push(Verdict {
            name: r.name.clone(),
            id: r.id.clone(),
            outcome,
            why,
        });
    }
    let summary = if v.quarantine {
        "Quarantined: held for your review.".to_owned()
    } else if v.reply.code >= 400 {
        format!(
            "Refused at {} with {} {} {}.",
            if v.stage == "rcpt" {
                "RCPT TO (before the message is sent)"
            } else {
                "the end of DATA"
            },
            v.reply.code,
            v.reply.enhanced,
            v.reply.text
        )
    } else if v.mailboxes.is_empty() {
        "Accepted and discarded: nothing is forwarded.".to_owned()
    } else {
        "Accepted and forwarded.".to_owned()
    };
    Explained {
        mailboxes: v.mailboxes.iter().map(|m| names.mailbox(m)).collect(),
        any_matched: !v.matched_rules.is_empty(),
        summary,
        verdicts,
        v,
    }
}

#[derive(Template)]
#[template(path = "web/rules/list.html")]
struct ListPage {
    chrome: Chrome,
    rules: Vec<RuleRow>,
    /// `?alias=` filter: the alias's id and address.
    filter: Option<(String, String)>,
    names: Names,
    form: RuleForm,
    errors: FormErrors,
    explain: ExplainForm,
    explain_errors: FormErrors,
    result: Option<Explained>,
}

impl ListPage {
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        FIELDS
    }
    fn operators(&self) -> &'static [(&'static str, &'static str)] {
        OPERATORS
    }
    fn action_kinds(&self) -> &'static [(&'static str, &'static str)] {
        ACTIONS
    }
}

#[derive(Template)]
#[template(path = "web/rules/edit.html")]
struct EditPage {
    chrome: Chrome,
    id: String,
    scope: String,
    names: Names,
    form: RuleForm,
    errors: FormErrors,
}

impl EditPage {
    fn fields(&self) -> &'static [(&'static str, &'static str)] {
        FIELDS
    }
    fn operators(&self) -> &'static [(&'static str, &'static str)] {
        OPERATORS
    }
    fn action_kinds(&self) -> &'static [(&'static str, &'static str)] {
        ACTIONS
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    alias: Option<String>,
}

async fn list_page(
    state: &ApiState,
    user: &WebUser,
    alias: Option<&str>,
) -> Result<ListPage, WebError> {
    let chrome = user.chrome("rules", "Rules");
    let within = |p: Problem| WebError::within(p, chrome.clone());
    let names = Names::load(state, user).await.map_err(within)?;
    let mut rules = api::list_rules(State(state.clone()), user.principal.clone())
        .await
        .map_err(within)?
        .0;
    let filter = match alias.filter(|a| !a.is_empty()) {
        Some(a) => {
            let Some((id, address, domain)) =
                names.aliases.iter().find(|(i, _, _)| i == a).cloned()
            else {
                return Err(within(Problem::not_found("alias")));
            };
            rules.retain(|r| Names::applies(r, Some(&id), Some(&domain)));
            Some((id, address))
        }
        None => None,
    };
    let scope = filter
        .as_ref()
        .map_or_else(|| "user".to_owned(), |(id, _)| format!("alias:{id}"));
    let explain = ExplainForm {
        alias: filter.as_ref().map(|(_, a)| a.clone()).unwrap_or_default(),
        ..ExplainForm::default()
    };
    Ok(ListPage {
        chrome,
        rules: rows(rules, &names),
        filter,
        names,
        form: RuleForm::blank(scope),
        errors: FormErrors::none(),
        explain,
        explain_errors: FormErrors::none(),
        result: None,
    })
}

async fn list(
    State(state): State<ApiState>,
    user: WebUser,
    Query(q): Query<ListQuery>,
) -> Result<Response, WebError> {
    Ok(page(&list_page(&state, &user, q.alias.as_deref()).await?))
}

fn scope_ids(scope: &str) -> (Option<String>, Option<String>) {
    if let Some(a) = scope.strip_prefix("alias:") {
        (Some(a.to_owned()), None)
    } else if let Some(d) = scope.strip_prefix("domain:") {
        (None, Some(d.to_owned()))
    } else {
        (None, None)
    }
}

async fn create(
    State(state): State<ApiState>,
    user: WebUser,
    pairs: FormPairs,
) -> Result<Response, WebError> {
    let form = RuleForm::read(&pairs);
    let attempt = async {
        let (alias_id, domain_id) = scope_ids(&form.scope);
        let body = CreateRule {
            name: form.name.clone(),
            alias_id,
            domain_id,
            priority: form.wire_priority()?,
            enabled: Some(form.enabled),
            match_mode: Some(form.wire_mode()?),
            conditions: form.wire_conditions()?,
            actions: form.wire_actions()?,
        };
        api::create_rule(State(state.clone()), user.principal.clone(), ApiJson(body)).await
    };
    match attempt.await {
        Ok((_, rule)) => Ok(redirect_with(
            "/app/rules",
            Flash::ok(format!("Rule \u{201c}{}\u{201d} created.", rule.0.name)),
        )),
        Err(problem) => {
            let mut p = list_page(&state, &user, None).await?;
            p.form = form.padded();
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

/// The rule `id` of the caller (someone else's is the 404 page).
async fn get_rule(
    state: &ApiState,
    user: &WebUser,
    id: &str,
    chrome: &Chrome,
) -> Result<RuleView, WebError> {
    let within = |p: Problem| WebError::within(p, chrome.clone());
    let id: RuleId = id.parse().map_err(|_| within(Problem::not_found("rule")))?;
    Ok(
        api::get_rule(State(state.clone()), user.principal.clone(), ApiPath(id))
            .await
            .map_err(within)?
            .0,
    )
}

async fn edit_page(
    state: &ApiState,
    user: &WebUser,
    id: &str,
) -> Result<(EditPage, RuleView), WebError> {
    let chrome = user.chrome("rules", "Edit rule");
    let rule = get_rule(state, user, id, &chrome).await?;
    let names = Names::load(state, user)
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?;
    let mut chrome = chrome;
    chrome.title = format!("Rule \u{201c}{}\u{201d}", rule.name);
    Ok((
        EditPage {
            chrome,
            id: rule.id.clone(),
            scope: names.scope(&rule),
            form: RuleForm::of(&rule),
            names,
            errors: FormErrors::none(),
        },
        rule,
    ))
}

async fn edit(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    Ok(page(&edit_page(&state, &user, &id).await?.0))
}

async fn update(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    pairs: FormPairs,
) -> Result<Response, WebError> {
    let (mut p, rule) = edit_page(&state, &user, &id).await?;
    let form = RuleForm::read(&pairs);
    let attempt = async {
        let body = UpdateRule {
            name: Some(form.name.clone()),
            priority: form.wire_priority()?,
            enabled: Some(form.enabled),
            match_mode: Some(form.wire_mode()?),
            conditions: Some(form.wire_conditions()?),
            actions: Some(form.wire_actions()?),
            revision: form.revision.parse().ok(),
        };
        let rid = rule.id.parse().map_err(|_| Problem::not_found("rule"))?;
        api::update_rule(
            State(state.clone()),
            user.principal.clone(),
            ApiPath(rid),
            ApiJson(body),
        )
        .await
    };
    match attempt.await {
        Ok(rule) => Ok(redirect_with(
            "/app/rules",
            Flash::ok(format!("Rule \u{201c}{}\u{201d} saved.", rule.0.name)),
        )),
        Err(problem) => {
            p.form = form.padded();
            p.errors = FormErrors::of(&problem);
            Ok(page_with_status(status_of(&problem), &p))
        }
    }
}

async fn delete(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("rules", "Rules");
    let rule = get_rule(&state, &user, &id, &chrome).await?;
    let rid = rule
        .id
        .parse()
        .map_err(|_| WebError::within(Problem::not_found("rule"), chrome.clone()))?;
    match api::delete_rule(State(state), user.principal.clone(), ApiPath(rid)).await {
        Ok(_) => Ok(redirect_with(
            "/app/rules",
            Flash::ok(format!("Rule \u{201c}{}\u{201d} deleted.", rule.name)),
        )),
        Err(p) => Ok(redirect_with("/app/rules", Flash::error(problem_text(&p)))),
    }
}

async fn toggle(
    State(state): State<ApiState>,
    user: WebUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("rules", "Rules");
    let rule = get_rule(&state, &user, &id, &chrome).await?;
    let on = !rule.enabled;
    let outcome = async {
        let rid = rule.id.parse().map_err(|_| Problem::not_found("rule"))?;
        api::update_rule(
            State(state.clone()),
            user.principal.clone(),
            ApiPath(rid),
            ApiJson(UpdateRule {
                name: None,
                priority: None,
                enabled: Some(on),
                match_mode: None,
                conditions: None,
                actions: None,
                revision: None,
            }),
        )
        .await
    }
    .await;
    let json = wants_json(&headers);
    match outcome {
        Ok(r) => {
            let state_word = if r.0.enabled { "enabled" } else { "disabled" };
            let message = format!("Rule \u{201c}{}\u{201d} {state_word}.", r.0.name);
            if json {
                return Ok(axum::Json(serde_json::json!({
                    "ok": true,
                    "label": if r.0.enabled { "Disable" } else { "Enable" },
                    "pressed": r.0.enabled,
                    "state": state_word,
                    "message": message,
                }))
                .into_response());
            }
            Ok(redirect_with("/app/rules", Flash::ok(message)))
        }
        Err(p) => {
            if json {
                return Ok((
                    status_of(&p),
                    axum::Json(serde_json::json!({"ok": false, "message": problem_text(&p)})),
                )
                    .into_response());
            }
            Ok(redirect_with("/app/rules", Flash::error(problem_text(&p))))
        }
    }
}

#[derive(Debug, Deserialize)]
struct MoveForm {
    #[serde(default)]
    direction: String,
}

async fn move_rule(
    State(state): State<ApiState>,
    user: WebUser,
    Path(id): Path<String>,
    super::csrf::WebForm(form): super::csrf::WebForm<MoveForm>,
) -> Result<Response, WebError> {
    let chrome = user.chrome("rules", "Rules");
    let rule = get_rule(&state, &user, &id, &chrome).await?;
    let all = api::list_rules(State(state.clone()), user.principal.clone())
        .await
        .map_err(|p| WebError::within(p, chrome.clone()))?
        .0;
    let mut ids: Vec<String> = all.into_iter().map(|r| r.id).collect();
    let Some(at) = ids.iter().position(|i| *i == rule.id) else {
        return Err(WebError::within(Problem::not_found("rule"), chrome));
    };
    let to = match form.direction.as_str() {
        "up" if at > 0 => at - 1,
        "down" if at + 1 < ids.len() => at + 1,
        _ => return Ok(redirect_with("/app/rules", Flash::ok("Nothing to move."))),
    };
    ids.swap(at, to);
    match api::reorder_rules(
        State(state),
        user.principal.clone(),
        ApiJson(ReorderRules { ids }),
    )
    .await
    {
        Ok(_) => Ok(redirect_with(
            "/app/rules",
            Flash::ok(format!(
                "Rule \u{201c}{}\u{201d} moved {}.",
                rule.name,
                if to < at { "up" } else { "down" }
            )),
        )),
        Err(p) => Ok(redirect_with("/app/rules", Flash::error(problem_text(&p)))),
    }
}

/// The raw header block of the tester: `From`, `Subject`, then the extra
/// lines as typed.
fn header_block(f: &ExplainForm) -> String {
    let mut block = String::new();
    let extra = f.headers.replace("\r\n", "\n");
    let has = |name: &str| {
        extra.lines().any(|l| {
            l.split_once(':')
                .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        })
    };
    if !f.mail_from.trim().is_empty() && !has("from") {
        block.push_str(&format!("From: {}\r\n", f.mail_from.trim()));
    }
    if !f.subject.is_empty() && !has("subject") {
        block.push_str(&format!("Subject: {}\r\n", f.subject));
    }
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        block.push_str(line);
        block.push_str("\r\n");
    }
    block
}

async fn explain(
    State(state): State<ApiState>,
    user: WebUser,
    super::csrf::WebForm(form): super::csrf::WebForm<ExplainForm>,
) -> Result<Response, WebError> {
    let mut p = list_page(&state, &user, None).await?;
    let attempt = async {
        let size = match form.size.trim() {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| Problem::invalid("size", "must be a number of bytes"))?,
            ),
        };
        let block = header_block(&form);
        let body = ExplainRequest {
            alias: form.alias.trim().to_owned(),
            mail_from: Some(form.mail_from.trim().to_owned()),
            headers: (!block.is_empty()).then_some(ExplainHeaders::Raw(block)),
            size,
        };
        api::explain_message(State(state.clone()), user.principal.clone(), ApiJson(body)).await
    };
    let status = match attempt.await {
        Ok(v) => {
            let rules: Vec<RuleView> = p.rules.iter().map(|r| r.r.clone()).collect();
            p.result = Some(explained(v.0, &rules, &p.names));
            StatusCode::OK
        }
        Err(problem) => {
            p.explain_errors = FormErrors::of(&problem);
            status_of(&problem)
        }
    };
    p.explain = form;
    Ok(page_with_status(status, &p))
}

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/app/rules", get(list).post(create))
        .route("/app/rules/explain", post(explain))
        .route("/app/rules/{id}", get(edit).post(update))
        .route("/app/rules/{id}/delete", post(delete))
        .route("/app/rules/{id}/toggle", post(toggle))
        .route("/app/rules/{id}/move", post(move_rule))
}
