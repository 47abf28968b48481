//! `/api/v1/rules`: the caller's forwarding rules (CRUD, reorder) and
//! `explain` ("what would happen to this message?").
//!
//! Rules are validated exactly as the rules engine validates them
//! ([`ForwardingRule::validate`]) and then compiled ([`RuleSet::compile`]):
//! a rule the engine would skip is refused with `422` and the engine's
//! message.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use smtpy_core::address::EmailAddress;
use smtpy_core::ids::{AliasId, DomainId, MailboxId, RuleId};
use smtpy_core::model::{
    ApiScope, BlockReply, Condition, ConditionField, ForwardingRule, MatchMode, Operator,
    RuleAction, RuleScope,
};
use smtpy_core::rules::{ExplainInput, MAX_REGEXES, MAX_RULES, RuleSet, explain};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Audit};
use crate::auth::Principal;
use crate::problem::{ApiJson, ApiPath, ApiResult, Problem, check_count, check_len};
use crate::state::ApiState;

/// Most conditions of one rule (the engine's limit).
pub const MAX_RULE_CONDITIONS: usize = 32;
/// Most actions of one rule (the engine's limit).
pub const MAX_RULE_ACTIONS: usize = 16;
/// Longest rule name, in characters.
pub const MAX_RULE_NAME: usize = 200;
/// Longest condition value or action argument, in bytes (the engine's limit).
pub const MAX_RULE_VALUE: usize = 998;
/// Longest raw header block `explain` accepts, in bytes.
pub const MAX_EXPLAIN_HEADERS: usize = 64 * 1024;
/// Most header fields `explain` accepts as an object.
pub const MAX_EXPLAIN_FIELDS: usize = 100;

/// What a condition looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FieldDto {
    /// Envelope sender and header `From`.
    From,
    /// The alias address.
    To,
    /// The decoded Subject.
    Subject,
    /// A named header (set `header`).
    Header,
    /// Message size in bytes.
    Size,
    /// Whether the message has an attachment (`true` / `false`).
    HasAttachment,
    /// SPF verdict.
    Spf,
    /// DKIM verdict.
    Dkim,
    /// DMARC verdict.
    Dmarc,
}

/// How a condition compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OperatorDto {
    /// Equal (case-insensitive).
    Is,
    /// Not equal.
    IsNot,
    /// Contains.
    Contains,
    /// Does not contain.
    NotContains,
    /// Starts with.
    StartsWith,
    /// Ends with.
    EndsWith,
    /// Matches a regular expression (at most 512 bytes).
    MatchesRegex,
    /// Numeric greater-than (size).
    GreaterThan,
    /// Numeric less-than (size).
    LessThan,
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ConditionDto {
    /// What to look at.
    pub field: FieldDto,
    /// The header name, when `field` is `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 76)]
    pub header: Option<String>,
    /// How to compare.
    pub operator: OperatorDto,
    /// What to compare with (at most 998 bytes).
    #[schema(max_length = 998)]
    pub value: String,
}

/// What a block answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum BlockReplyDto {
    /// Accept with 250 and discard.
    Silent,
    /// Refuse with 550 5.7.1.
    Reject,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum ActionDto {
    /// Forward to these mailboxes (ids) instead of the alias's.
    ForwardTo {
        /// Mailbox ids (the caller's).
        mailboxes: Vec<String>,
    },
    /// Do not forward.
    Block {
        /// `reject` (550) or `silent` (250, discarded).
        reply: BlockReplyDto,
    },
    /// Hold for review.
    Quarantine,
    /// Prefix the Subject.
    PrefixSubject {
        /// The prefix.
        prefix: String,
    },
    /// Add a header field.
    AddHeader {
        /// Header name.
        name: String,
        /// Header value.
        value: String,
    },
    /// Evaluate no further rules.
    Stop,
}

/// All or any condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum MatchModeDto {
    /// Every condition holds.
    #[default]
    All,
    /// At least one holds.
    Any,
}

/// A rule as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct RuleView {
    /// Identifier.
    pub id: String,
    /// Label.
    pub name: String,
    /// `user` (every alias), `domain` or `alias`.
    pub scope: String,
    /// The alias, for an alias-scoped rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_id: Option<String>,
    /// The domain, for a domain-scoped rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    /// Lower runs first.
    pub priority: i32,
    /// Disabled rules are kept but not evaluated.
    pub enabled: bool,
    /// `all` or `any`.
    pub match_mode: MatchModeDto,
    /// Conditions.
    pub conditions: Vec<ConditionDto>,
    /// Actions, in order.
    pub actions: Vec<ActionDto>,
    /// Creation time (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
    /// Revision (send it back in `PATCH` to detect concurrent edits).
    pub revision: u64,
}

fn field_to_dto(f: &ConditionField) -> (FieldDto, Option<String>) {
    match f {
        ConditionField::From => (FieldDto::From, None),
        ConditionField::To => (FieldDto::To, None),
        ConditionField::Subject => (FieldDto::Subject, None),
        ConditionField::Header(h) => (FieldDto::Header, Some(h.clone())),
        ConditionField::Size => (FieldDto::Size, None),
        ConditionField::HasAttachment => (FieldDto::HasAttachment, None),
        ConditionField::Spf => (FieldDto::Spf, None),
        ConditionField::Dkim => (FieldDto::Dkim, None),
        _ => (FieldDto::Dmarc, None),
    }
}

fn op_to_dto(o: Operator) -> OperatorDto {
    match o {
        Operator::Is => OperatorDto::Is,
        Operator::IsNot => OperatorDto::IsNot,
        Operator::Contains => OperatorDto::Contains,
        Operator::NotContains => OperatorDto::NotContains,
        Operator::StartsWith => OperatorDto::StartsWith,
        Operator::EndsWith => OperatorDto::EndsWith,
        Operator::MatchesRegex => OperatorDto::MatchesRegex,
        Operator::GreaterThan => OperatorDto::GreaterThan,
        _ => OperatorDto::LessThan,
    }
}

fn op_from_dto(o: OperatorDto) -> Operator {
    match o {
        OperatorDto::Is => Operator::Is,
        OperatorDto::IsNot => Operator::IsNot,
        OperatorDto::Contains => Operator::Contains,
        OperatorDto::NotContains => Operator::NotContains,
        OperatorDto::StartsWith => Operator::StartsWith,
        OperatorDto::EndsWith => Operator::EndsWith,
        OperatorDto::MatchesRegex => Operator::MatchesRegex,
        OperatorDto::GreaterThan => Operator::GreaterThan,
        OperatorDto::LessThan => Operator::LessThan,
    }
}

pub(crate) fn condition_to_dto(c: &Condition) -> ConditionDto {
    let (field, header) = field_to_dto(&c.field);
    ConditionDto {
        field,
        header,
        operator: op_to_dto(c.operator),
        value: c.value.clone(),
    }
}

/// An action on the wire; `mailbox` names each `ForwardTo` mailbox.
pub(crate) fn action_to_dto(a: &RuleAction, mailbox: &dyn Fn(MailboxId) -> String) -> ActionDto {
    match a {
        RuleAction::ForwardTo(ids) => ActionDto::ForwardTo {
            mailboxes: ids.iter().map(|id| mailbox(*id)).collect(),
        },
        RuleAction::Block(BlockReply::Reject) => ActionDto::Block {
            reply: BlockReplyDto::Reject,
        },
        RuleAction::Block(BlockReply::Silent) => ActionDto::Block {
            reply: BlockReplyDto::Silent,
        },
        RuleAction::Quarantine => ActionDto::Quarantine,
        RuleAction::PrefixSubject(p) => ActionDto::PrefixSubject { prefix: p.clone() },
        RuleAction::AddHeader { name, value } => ActionDto::AddHeader {
            name: name.clone(),
            value: value.clone(),
        },
        _ => ActionDto::Stop,
    }
}

pub(crate) fn mode_to_dto(m: MatchMode) -> MatchModeDto {
    match m {
        MatchMode::All => MatchModeDto::All,
        MatchMode::Any => MatchModeDto::Any,
    }
}

pub(crate) fn mode_from_dto(m: MatchModeDto) -> MatchMode {
    match m {
        MatchModeDto::All => MatchMode::All,
        MatchModeDto::Any => MatchMode::Any,
    }
}

impl From<&ForwardingRule> for RuleView {
    fn from(r: &ForwardingRule) -> RuleView {
        let (scope, alias_id, domain_id) = match r.scope {
            RuleScope::User => ("user", None, None),
            RuleScope::Domain(d) => ("domain", None, Some(d.to_string())),
            RuleScope::Alias(a) => ("alias", Some(a.to_string()), None),
        };
        RuleView {
            id: r.id.to_string(),
            name: r.name.clone(),
            scope: scope.to_owned(),
            alias_id,
            domain_id,
            priority: r.priority,
            enabled: r.enabled,
            match_mode: mode_to_dto(r.match_mode),
            conditions: r.conditions.iter().map(condition_to_dto).collect(),
            actions: r
                .actions
                .iter()
                .map(|a| action_to_dto(a, &|id| id.to_string()))
                .collect(),
            created_at: r.created_at.as_unix_millis(),
            updated_at: r.updated_at.as_unix_millis(),
            revision: r.revision,
        }
    }
}

/// Converts wire conditions, bounded.
///
/// # Errors
///
/// `422` naming the offending field.
pub(crate) fn conditions_from_dto(list: &[ConditionDto]) -> ApiResult<Vec<Condition>> {
    check_count("conditions", list, MAX_RULE_CONDITIONS)?;
    list.iter()
        .enumerate()
        .map(|(i, c)| {
            if c.value.len() > MAX_RULE_VALUE {
                return Err(Problem::invalid(
                    format!("conditions/{i}/value"),
                    format!("must be at most {MAX_RULE_VALUE} bytes"),
                ));
            }
            let field = match (c.field, &c.header) {
                (FieldDto::Header, Some(h)) => {
                    check_len(&format!("conditions/{i}/header"), h, 1, 76)?;
                    ConditionField::Header(h.clone())
                }
                (FieldDto::Header, None) => {
                    return Err(Problem::invalid(
                        format!("conditions/{i}/header"),
                        "required when field is header",
                    ));
                }
                (_, Some(_)) => {
                    return Err(Problem::invalid(
                        format!("conditions/{i}/header"),
                        "only allowed when field is header",
                    ));
                }
                (FieldDto::From, None) => ConditionField::From,
                (FieldDto::To, None) => ConditionField::To,
                (FieldDto::Subject, None) => ConditionField::Subject,
                (FieldDto::Size, None) => ConditionField::Size,
                (FieldDto::HasAttachment, None) => ConditionField::HasAttachment,
                (FieldDto::Spf, None) => ConditionField::Spf,
                (FieldDto::Dkim, None) => ConditionField::Dkim,
                (FieldDto::Dmarc, None) => ConditionField::Dmarc,
            };
            Ok(Condition {
                field,
                operator: op_from_dto(c.operator),
                value: c.value.clone(),
            })
        })
        .collect()
}

/// Converts wire actions; `mailbox` resolves a `forward_to` entry to one of
/// the caller's mailboxes (`404` otherwise).
///
/// # Errors
///
/// `422` naming the offending field, or what `mailbox` returns.
pub(crate) async fn actions_from_dto<F, Fut>(
    list: &[ActionDto],
    mailbox: F,
) -> ApiResult<Vec<RuleAction>>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ApiResult<MailboxId>>,
{
    check_count("actions", list, MAX_RULE_ACTIONS)?;
    let mut out = Vec::with_capacity(list.len());
    for (i, a) in list.iter().enumerate() {
        let value_len = |field: &str, v: &str| -> ApiResult<()> {
            if v.len() > MAX_RULE_VALUE {
                Err(Problem::invalid(
                    format!("actions/{i}/{field}"),
                    format!("must be at most {MAX_RULE_VALUE} bytes"),
                ))
            } else {
                Ok(())
            }
        };
        out.push(match a {
            ActionDto::ForwardTo { mailboxes } => {
                check_count(&format!("actions/{i}/mailboxes"), mailboxes, 32)?;
                let mut ids = Vec::with_capacity(mailboxes.len());
                for m in mailboxes {
                    check_len(&format!("actions/{i}/mailboxes"), m, 1, 320)?;
                    ids.push(mailbox(m.clone()).await?);
                }
                RuleAction::ForwardTo(ids)
            }
            ActionDto::Block { reply } => RuleAction::Block(match reply {
                BlockReplyDto::Reject => BlockReply::Reject,
                BlockReplyDto::Silent => BlockReply::Silent,
            }),
            ActionDto::Quarantine => RuleAction::Quarantine,
            ActionDto::PrefixSubject { prefix } => {
                value_len("prefix", prefix)?;
                RuleAction::PrefixSubject(prefix.clone())
            }
            ActionDto::AddHeader { name, value } => {
                check_len(&format!("actions/{i}/name"), name, 1, 76)?;
                value_len("value", value)?;
                RuleAction::AddHeader {
                    name: name.clone(),
                    value: value.clone(),
                }
            }
            ActionDto::Stop => RuleAction::Stop,
        });
    }
    Ok(out)
}

/// Validates `rule` as the engine does and compiles it.
///
/// # Errors
///
/// `422` with the engine's message when the engine would skip the rule.
pub(crate) fn check_compiles(rule: &ForwardingRule) -> ApiResult<()> {
    rule.validate()
        .map_err(|e| Problem::invalid("rule", e.to_string()))?;
    let mut probe = rule.clone();
    probe.enabled = true;
    let set = RuleSet::compile(vec![probe]);
    if let Some(skipped) = set.skipped().first() {
        return Err(Problem::invalid("rule", skipped.error.to_string()));
    }
    Ok(())
}

fn regexes(rule: &ForwardingRule) -> usize {
    rule.conditions
        .iter()
        .filter(|c| c.operator == Operator::MatchesRegex)
        .count()
}

/// Refuses `rule` when the caller's enabled rules would hold more regular
/// expressions than a compiled set takes ([`MAX_REGEXES`]): the engine
/// would skip the rules past the limit. Counted over all the caller's rules
/// (an upper bound of any one alias's set).
///
/// # Errors
///
/// `422` naming `conditions`.
pub(crate) fn check_regex_budget(
    rule: &ForwardingRule,
    others: &[ForwardingRule],
) -> ApiResult<()> {
    if !rule.enabled {
        return Ok(());
    }
    let total: usize = regexes(rule)
        + others
            .iter()
            .filter(|r| r.enabled && r.id != rule.id)
            .map(regexes)
            .sum::<usize>();
    if total > MAX_REGEXES {
        return Err(Problem::invalid(
            "conditions",
            format!("your enabled rules may hold at most {MAX_REGEXES} regular expressions in all"),
        ));
    }
    Ok(())
}

fn parse_id<T: std::str::FromStr>(field: &str, s: &str) -> ApiResult<T> {
    s.parse()
        .map_err(|_| Problem::invalid(field, "not a valid identifier"))
}

async fn own_mailbox(state: &ApiState, principal: &Principal, s: String) -> ApiResult<MailboxId> {
    let id: MailboxId = s.parse().map_err(|_| Problem::not_found("mailbox"))?;
    state
        .store()
        .get_mailbox(principal.access(), id)
        .await
        .map_err(|_| Problem::not_found("mailbox"))?;
    Ok(id)
}

/// A new rule.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateRule {
    /// Label (1–200 characters).
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Scope the rule to this alias (the caller's).
    #[serde(default)]
    pub alias_id: Option<String>,
    /// Scope the rule to the caller's aliases on this domain.
    #[serde(default)]
    pub domain_id: Option<String>,
    /// Lower runs first (default: after the caller's other rules).
    #[serde(default)]
    pub priority: Option<i32>,
    /// Default `true`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Default `all`.
    #[serde(default)]
    pub match_mode: Option<MatchModeDto>,
    /// At most 32.
    #[serde(default)]
    pub conditions: Vec<ConditionDto>,
    /// 1 to 16.
    pub actions: Vec<ActionDto>,
}

/// Changes to a rule; absent fields stay as they are.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateRule {
    /// Label.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub name: Option<String>,
    /// Priority.
    #[serde(default)]
    pub priority: Option<i32>,
    /// Enabled.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `all` or `any`.
    #[serde(default)]
    pub match_mode: Option<MatchModeDto>,
    /// Replaces the conditions.
    #[serde(default)]
    pub conditions: Option<Vec<ConditionDto>>,
    /// Replaces the actions.
    #[serde(default)]
    pub actions: Option<Vec<ActionDto>>,
    /// The revision the change is based on; `409` when the rule changed since.
    #[serde(default)]
    pub revision: Option<u64>,
}

/// The caller's rules, in evaluation order (priority, then creation).
#[utoipa::path(
    get,
    path = "/rules",
    tag = "rules",
    responses((status = 200, description = "The caller's rules", body = Vec<RuleView>))
)]
pub(crate) async fn list_rules(
    State(state): State<ApiState>,
    principal: Principal,
) -> ApiResult<Json<Vec<RuleView>>> {
    principal.require(ApiScope::AliasesRead)?;
    let rules = state.store().list_rules(principal.id()).await?;
    Ok(Json(rules.iter().map(RuleView::from).collect()))
}

/// Creates a rule.
#[utoipa::path(
    post,
    path = "/rules",
    tag = "rules",
    request_body = CreateRule,
    responses((status = 201, description = "The rule", body = RuleView))
)]
pub(crate) async fn create_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateRule>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    principal.require(ApiScope::AliasesWrite)?;
    check_len("name", &body.name, 1, MAX_RULE_NAME)?;
    let scope = match (&body.alias_id, &body.domain_id) {
        (Some(_), Some(_)) => {
            return Err(Problem::invalid(
                "alias_id",
                "give alias_id or domain_id, not both",
            ));
        }
        (Some(a), None) => {
            let id: AliasId = a.parse().map_err(|_| Problem::not_found("alias"))?;
            let alias = state.store().get_alias(principal.access(), id).await?;
            RuleScope::Alias(alias.id)
        }
        (None, Some(d)) => {
            let id: DomainId = d.parse().map_err(|_| Problem::not_found("domain"))?;
            state.store().get_domain(principal.access(), id).await?;
            RuleScope::Domain(id)
        }
        (None, None) => RuleScope::User,
    };
    let existing = state.store().list_rules(principal.id()).await?;
    if existing.len() >= MAX_RULES {
        return Err(Problem::invalid(
            "rules",
            format!("an account has at most {MAX_RULES} rules"),
        ));
    }
    let conditions = conditions_from_dto(&body.conditions)?;
    let actions = actions_from_dto(&body.actions, |m| own_mailbox(&state, &principal, m)).await?;
    let priority = body.priority.unwrap_or_else(|| {
        existing
            .iter()
            .map(|r| r.priority)
            .max()
            .map_or(0, |p| p.saturating_add(1))
    });
    let now = state.clock().now();
    let mut rule = ForwardingRule::new(
        principal.id(),
        scope,
        body.name.clone(),
        priority,
        actions,
        now,
    );
    rule.enabled = body.enabled.unwrap_or(true);
    rule.match_mode = mode_from_dto(body.match_mode.unwrap_or_default());
    rule.conditions = conditions;
    check_compiles(&rule)?;
    check_regex_budget(&rule, &existing)?;
    state.store().create_rule(&rule).await?;
    audit::record(&state, Audit::by(&principal, "rule.create").target(rule.id)).await;
    Ok((StatusCode::CREATED, Json(RuleView::from(&rule))))
}

/// One rule.
#[utoipa::path(
    get,
    path = "/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 200, description = "The rule", body = RuleView))
)]
pub(crate) async fn get_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<RuleId>,
) -> ApiResult<Json<RuleView>> {
    principal.require(ApiScope::AliasesRead)?;
    let rule = state.store().get_rule(principal.access(), id).await?;
    Ok(Json(RuleView::from(&rule)))
}

/// Changes a rule (the scope cannot change: create another rule).
#[utoipa::path(
    patch,
    path = "/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    request_body = UpdateRule,
    responses((status = 200, description = "The rule", body = RuleView))
)]
pub(crate) async fn update_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<RuleId>,
    ApiJson(body): ApiJson<UpdateRule>,
) -> ApiResult<Json<RuleView>> {
    principal.require(ApiScope::AliasesWrite)?;
    let mut rule = state.store().get_rule(principal.access(), id).await?;
    if let Some(rev) = body.revision
        && rev != rule.revision
    {
        return Err(Problem::conflict("rule: changed since that revision"));
    }
    if let Some(name) = &body.name {
        check_len("name", name, 1, MAX_RULE_NAME)?;
        rule.name.clone_from(name);
    }
    if let Some(p) = body.priority {
        rule.priority = p;
    }
    if let Some(e) = body.enabled {
        rule.enabled = e;
    }
    if let Some(m) = body.match_mode {
        rule.match_mode = mode_from_dto(m);
    }
    if let Some(c) = &body.conditions {
        rule.conditions = conditions_from_dto(c)?;
    }
    if let Some(a) = &body.actions {
        rule.actions = actions_from_dto(a, |m| own_mailbox(&state, &principal, m)).await?;
    }
    rule.updated_at = state.clock().now();
    check_compiles(&rule)?;
    let others = state.store().list_rules(principal.id()).await?;
    check_regex_budget(&rule, &others)?;
    let rule = state.store().update_rule(principal.access(), &rule).await?;
    audit::record(&state, Audit::by(&principal, "rule.update").target(rule.id)).await;
    Ok(Json(RuleView::from(&rule)))
}

/// Deletes a rule.
#[utoipa::path(
    delete,
    path = "/rules/{id}",
    tag = "rules",
    params(("id" = String, Path, description = "Rule id")),
    responses((status = 204, description = "Deleted"))
)]
pub(crate) async fn delete_rule(
    State(state): State<ApiState>,
    principal: Principal,
    ApiPath(id): ApiPath<RuleId>,
) -> ApiResult<StatusCode> {
    principal.require(ApiScope::AliasesWrite)?;
    state.store().delete_rule(principal.access(), id).await?;
    audit::record(&state, Audit::by(&principal, "rule.delete").target(id)).await;
    Ok(StatusCode::NO_CONTENT)
}

/// The new order of every one of the caller's rules.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReorderRules {
    /// Every rule id of the caller, exactly once, first to run first.
    pub ids: Vec<String>,
}

/// Sets the priorities of all the caller's rules to 0, 1, 2… in the order
/// given.
#[utoipa::path(
    post,
    path = "/rules/reorder",
    tag = "rules",
    request_body = ReorderRules,
    responses((status = 200, description = "The rules in their new order", body = Vec<RuleView>))
)]
pub(crate) async fn reorder_rules(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<ReorderRules>,
) -> ApiResult<Json<Vec<RuleView>>> {
    principal.require(ApiScope::AliasesWrite)?;
    check_count("ids", &body.ids, MAX_RULES)?;
    let ids = body
        .ids
        .iter()
        .enumerate()
        .map(|(i, s)| parse_id::<RuleId>(&format!("ids/{i}"), s))
        .collect::<ApiResult<Vec<_>>>()?;
    state
        .store()
        .reorder_rules(principal.id(), &ids)
        .await
        .map_err(|e| match e {
            smtpy_core::StoreError::Invalid { reason, .. } => Problem::invalid("ids", reason),
            other => other.into(),
        })?;
    audit::record(
        &state,
        Audit::by(&principal, "rule.reorder").detail("count", ids.len()),
    )
    .await;
    let rules = state.store().list_rules(principal.id()).await?;
    Ok(Json(rules.iter().map(RuleView::from).collect()))
}

/// Headers of a message to explain: an object of fields, or a raw header
/// block.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum ExplainHeaders {
    /// Field name → value (at most 100 fields).
    Fields(BTreeMap<String, String>),
    /// A raw header block (at most 64 KiB).
    Raw(String),
}

/// A message to explain.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainRequest {
    /// The recipient: one of the caller's aliases, or an address on one of
    /// the caller's catch-all domains.
    #[schema(max_length = 320)]
    pub alias: String,
    /// The envelope sender; absent, `null` or empty for the null sender `<>`.
    #[serde(default)]
    #[schema(max_length = 320)]
    pub mail_from: Option<String>,
    /// The message's header fields.
    #[serde(default)]
    pub headers: Option<ExplainHeaders>,
    /// Message size in bytes for `size` conditions (default: the header
    /// block's length).
    #[serde(default)]
    pub size: Option<u64>,
}

/// An SMTP reply.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct SmtpReplyView {
    /// Basic code (250, 550…).
    pub code: u16,
    /// Enhanced status (`5.7.1`).
    pub enhanced: String,
    /// Text.
    pub text: String,
}

/// One header field.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct HeaderView {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// What smtpy would do with the message.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub(crate) struct ExplanationView {
    /// The existing alias (absent when it would be created by a catch-all).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_id: Option<String>,
    /// The alias address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias_address: Option<String>,
    /// A catch-all would create the alias on first mail (it is not created).
    pub would_create_alias: bool,
    /// Rules that matched, in evaluation order.
    pub matched_rules: Vec<String>,
    /// The rule that blocked or quarantined the message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deciding_rule: Option<String>,
    /// The SMTP reply the sender would get.
    pub reply: SmtpReplyView,
    /// `rcpt` (decided at RCPT TO) or `data` (at the end of DATA).
    pub stage: String,
    /// Held for review.
    pub quarantine: bool,
    /// Mailbox ids it would be forwarded to.
    pub mailboxes: Vec<String>,
    /// Header fields the rules would set (Subject with prefixes, added fields).
    pub rewritten_headers: Vec<HeaderView>,
}

fn header_block(headers: Option<&ExplainHeaders>) -> ApiResult<Vec<u8>> {
    let mut block = match headers {
        None => String::new(),
        Some(ExplainHeaders::Raw(raw)) => {
            if raw.len() > MAX_EXPLAIN_HEADERS {
                return Err(Problem::invalid(
                    "headers",
                    format!("must be at most {MAX_EXPLAIN_HEADERS} bytes"),
                ));
            }
            raw.replace("\r\n", "\n").replace('\n', "\r\n")
        }
        Some(ExplainHeaders::Fields(fields)) => {
            if fields.len() > MAX_EXPLAIN_FIELDS {
                return Err(Problem::invalid(
                    "headers",
                    format!("must have at most {MAX_EXPLAIN_FIELDS} fields"),
                ));
            }
            let mut s = String::new();
            for (name, value) in fields {
                let ok_name = !name.is_empty()
                    && name.len() <= 76
                    && name.bytes().all(|b| (33..=126).contains(&b) && b != b':');
                if !ok_name {
                    return Err(Problem::invalid(
                        format!("headers/{name}"),
                        "not a header field name",
                    ));
                }
                if value.len() > 8 * 1024 || value.bytes().any(|b| b == b'\r' || b == b'\n') {
                    return Err(Problem::invalid(
                        format!("headers/{name}"),
                        "value must be one line of at most 8192 bytes",
                    ));
                }
                s.push_str(name);
                s.push_str(": ");
                s.push_str(value);
                s.push_str("\r\n");
            }
            s
        }
    };
    if !block.is_empty() && !block.ends_with("\r\n\r\n") {
        if !block.ends_with("\r\n") {
            block.push_str("\r\n");
        }
        block.push_str("\r\n");
    }
    Ok(block.into_bytes())
}

/// What would happen to a message sent to one of the caller's aliases:
/// routing and rules exactly as the mail path decides, read-only (nothing
/// is created, sent or counted).
#[utoipa::path(
    post,
    path = "/rules/explain",
    tag = "rules",
    request_body = ExplainRequest,
    responses((status = 200, description = "The explanation", body = ExplanationView))
)]
pub(crate) async fn explain_message(
    State(state): State<ApiState>,
    principal: Principal,
    ApiJson(body): ApiJson<ExplainRequest>,
) -> ApiResult<Json<ExplanationView>> {
    principal.require(ApiScope::AliasesRead)?;
    check_len("alias", &body.alias, 3, 320)?;
    let rcpt = EmailAddress::parse(&body.alias)
        .map_err(|_| Problem::invalid("alias", "not an email address"))?;
    let sender = match body.mail_from.as_deref().map(str::trim) {
        None | Some("" | "<>") => None,
        Some(s) => {
            check_len("mail_from", s, 3, 320)?;
            Some(
                EmailAddress::parse(s)
                    .map_err(|_| Problem::invalid("mail_from", "not an email address"))?,
            )
        }
    };
    let headers = header_block(body.headers.as_ref())?;
    // Only the caller's aliases, or a catch-all domain of the caller's.
    let store = state.store();
    match store.find_alias_by_address(&rcpt).await? {
        Some(alias) if alias.owner == principal.id() => {}
        Some(_) => return Err(Problem::not_found("alias")),
        None => match store.find_domain_by_name(rcpt.domain()).await? {
            Some(d) if d.owner == principal.id() => {}
            _ => return Err(Problem::not_found("alias")),
        },
    }
    let input = ExplainInput {
        sender: sender.as_ref(),
        recipient: &rcpt,
        headers: &headers,
        size: body.size,
    };
    let ex = explain(store.as_ref(), &input, state.clock().now()).await?;
    let (c, s, d) = ex.reply.enhanced;
    Ok(Json(ExplanationView {
        alias_id: ex.alias.map(|a| a.to_string()),
        alias_address: ex.alias_address.map(|a| a.to_string()),
        would_create_alias: ex.would_create_alias,
        matched_rules: ex.matched_rules.iter().map(ToString::to_string).collect(),
        deciding_rule: ex.decided_by.map(|r| r.to_string()),
        reply: SmtpReplyView {
            code: ex.reply.code,
            enhanced: format!("{c}.{s}.{d}"),
            text: ex.reply.text.to_string(),
        },
        stage: if ex.rcpt_stage { "rcpt" } else { "data" }.to_owned(),
        quarantine: ex.quarantine,
        mailboxes: ex.mailboxes.iter().map(ToString::to_string).collect(),
        rewritten_headers: ex
            .rewritten_headers
            .into_iter()
            .map(|(name, value)| HeaderView { name, value })
            .collect(),
    }))
}

/// The routes of this module.
pub(crate) fn routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(reorder_rules))
        .routes(routes!(explain_message))
}
