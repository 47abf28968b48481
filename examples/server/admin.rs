//! `server admin …`: users, domains, mailboxes and aliases from the command line.
//!
//! Every command writes its results to an [`Out`] (stdout, or the control
//! socket of a running server), one row per line.

use clap::Subcommand;
use smtpy::core::address::{DomainName, EmailAddress};
use smtpy::core::ids::{MailboxId, UserId};
use smtpy::core::model::{Alias, AliasMode, Domain, Mailbox, Role, User, UserStatus};
use smtpy::core::store::{Access, AliasFilter, PageRequest};
use smtpy::core::time::{Clock, SystemClock, Timestamp};
use smtpy::core::{Store, StoreError};

use crate::cli::{Ctx, Handles, Out, say};
use crate::config::Config;
use crate::run::Failure;

/// `admin …`
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Accounts of the HTTP API.
    User {
        /// What to do.
        #[command(subcommand)]
        action: UserAction,
    },
    /// Hosted domains.
    Domain {
        /// What to do.
        #[command(subcommand)]
        action: DomainAction,
    },
    /// Destination mailboxes (real addresses aliases forward to).
    Mailbox {
        /// What to do.
        #[command(subcommand)]
        action: MailboxAction,
    },
    /// Aliases.
    Alias {
        /// What to do.
        #[command(subcommand)]
        action: AliasAction,
    },
}

/// `admin user …`
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account and print a one-time API key with every scope
    /// (the `admin` scope only with --admin). Refuses an existing email.
    Create {
        /// The sign-in address.
        #[arg(long)]
        email: String,
        /// Make the account an administrator.
        #[arg(long)]
        admin: bool,
        /// A file holding the account's password (first line); without it
        /// the account signs in with its API key only until a password is set.
        #[arg(long)]
        password_file: Option<std::path::PathBuf>,
    },
    /// List accounts: email, role, status, id.
    List,
    /// Disable an account: it cannot sign in, its sessions end.
    Disable {
        /// The account's email.
        email: String,
    },
    /// Enable a disabled account.
    Enable {
        /// The account's email.
        email: String,
    },
    /// Delete an account and everything it owns (its aliases leave tombstones).
    Delete {
        /// The account's email.
        email: String,
    },
}

/// `admin domain …`
#[derive(Debug, Subcommand)]
pub enum DomainAction {
    /// Host a domain (verified at once: the operator controls it) and print
    /// its DKIM records.
    #[command(alias = "add")]
    Create {
        /// The domain, e.g. alias.example.
        domain: String,
    },
    /// List hosted domains: name, state (enabled, disabled, unverified),
    /// owner, DKIM selectors.
    List,
    /// Stop receiving mail for a domain (mail to it is refused as if it
    /// were not hosted); keeps its aliases and its verification. It stays
    /// disabled until `enable`: neither its owner nor the DNS re-check can
    /// undo it.
    Disable {
        /// The domain.
        domain: String,
    },
    /// Receive mail for a disabled domain again (a domain that is not
    /// verified is marked verified, as the operator vouches for it).
    Enable {
        /// The domain.
        domain: String,
    },
    /// Stop hosting a domain (refused while aliases, live or deleted, use it).
    Delete {
        /// The domain.
        domain: String,
    },
    /// Old spelling of `dkim dns`.
    #[command(hide = true)]
    DkimRecords {
        /// The domain.
        domain: String,
    },
    /// Old spelling of `dkim rotate`.
    #[command(hide = true)]
    DkimRotate {
        /// The domain.
        domain: String,
    },
}

/// `admin mailbox …`
#[derive(Debug, Subcommand)]
pub enum MailboxAction {
    /// Add a destination mailbox, verified (the operator vouches for it).
    Create {
        /// The address.
        address: String,
        /// The owning account (default: the operator account).
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// List mailboxes: address, owner, verified, state, id.
    List {
        /// Only this account's.
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Stop delivering to a mailbox.
    Disable {
        /// The address.
        address: String,
        /// The owning account, when several have this address.
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Deliver to a disabled mailbox again.
    Enable {
        /// The address.
        address: String,
        /// The owning account, when several have this address.
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
    /// Delete a mailbox (refused while an alias or a domain default uses it).
    Delete {
        /// The address.
        address: String,
        /// The owning account, when several have this address.
        #[arg(long, value_name = "EMAIL")]
        owner: Option<String>,
    },
}

/// `admin alias …`
#[derive(Debug, Subcommand)]
pub enum AliasAction {
    /// Create an alias forwarding to one or more mailboxes (created verified).
    #[command(alias = "add")]
    Create {
        /// The alias address, on a hosted domain.
        address: String,
        /// A real mailbox to forward to (repeat for several).
        #[arg(long = "mailbox", required = true)]
        mailboxes: Vec<String>,
        /// `alias` (default): senders become reverse aliases and replies go
        /// back through the alias; `forward`: From kept, SRS envelope, ARC seal.
        #[arg(long, default_value = "alias", value_parser = ["alias", "forward"])]
        mode: String,
    },
    /// List aliases: address, state, mode, mailboxes.
    List {
        /// Only aliases on this domain.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Disable an alias: mail to it is refused with 550 5.1.1.
    Disable {
        /// The alias address.
        address: String,
    },
    /// Enable a disabled alias.
    Enable {
        /// The alias address.
        address: String,
    },
    /// Delete an alias (to the trash: purged after `[jobs] deleted_alias_retention`;
    /// the address can never be reused).
    Delete {
        /// The alias address.
        address: String,
    },
    /// Create many aliases from a file of lines `alias mailbox [mailbox…]`
    /// (blank lines and `#` comments skipped); all or nothing per batch of 10,000.
    Import {
        /// The file.
        file: std::path::PathBuf,
    },
}

/// Runs an `admin` command.
pub async fn run(
    config: &Config,
    handles: &Handles,
    ctx: &Ctx,
    command: AdminCommand,
    out: Out<'_>,
) -> Result<(), Failure> {
    let store = &*handles.store;
    let now = SystemClock.now();
    match command {
        AdminCommand::User { action } => user(store, ctx, action, now, out).await,
        AdminCommand::Domain { action } => domain(config, store, action, now, out).await,
        AdminCommand::Mailbox { action } => mailbox(config, store, action, now, out).await,
        AdminCommand::Alias { action } => alias(store, ctx, action, now, out).await,
    }
}

async fn user(
    store: &dyn Store,
    ctx: &Ctx,
    action: UserAction,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    match action {
        UserAction::Create {
            email,
            admin,
            password_file,
        } => {
            let file = password_file.map(|f| ctx.path(&f));
            create_user(store, &email, admin, file.as_deref(), now, out).await
        }
        UserAction::List => {
            for u in all_users(store).await? {
                say!(
                    out,
                    "{:<40} {:<5} {:<8} {}",
                    u.email,
                    role_name(u.role),
                    status_name(u.status),
                    u.id
                );
            }
            Ok(())
        }
        UserAction::Disable { email } => {
            let mut u = find_user(store, &email).await?;
            u.status = UserStatus::Disabled;
            u.updated_at = now;
            store.update_user(&u).await.map_err(store_err)?;
            let ended = store.delete_user_sessions(u.id).await.map_err(store_err)?;
            say!(out, "user {} disabled ({ended} sessions ended)", u.email);
            Ok(())
        }
        UserAction::Enable { email } => {
            let mut u = find_user(store, &email).await?;
            u.status = UserStatus::Active;
            u.updated_at = now;
            store.update_user(&u).await.map_err(store_err)?;
            say!(out, "user {} enabled", u.email);
            Ok(())
        }
        UserAction::Delete { email } => {
            let u = find_user(store, &email).await?;
            match store.delete_user(u.id).await {
                Ok(()) => {
                    say!(out, "user {} deleted with everything it owned", u.email);
                    Ok(())
                }
                Err(StoreError::Conflict { reason, .. }) => Err(Failure::Usage(format!(
                    "user {} cannot be deleted: {reason} (a domain they own carries other \
                     users' aliases: hand it over or delete those aliases first)",
                    u.email
                ))),
                Err(e) => Err(store_err(e)),
            }
        }
    }
}

async fn domain(
    config: &Config,
    store: &dyn Store,
    action: DomainAction,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    match action {
        DomainAction::Create { domain } => {
            let name = DomainName::parse(&domain).map_err(|e| usage(&domain, e))?;
            let owner = operator(store, config).await?;
            let mut d = Domain::new(name.clone(), owner.id, String::new(), now);
            d.verified_at = Some(now);
            let keyring = crate::policy::keyring(config)?;
            let records = crate::policy::provision_dkim(config, &mut d, &keyring)?;
            match store.create_domain(&d).await {
                Ok(()) => {
                    say!(
                        out,
                        "domain {name} added; publish these DNS records for DKIM:"
                    );
                    crate::dkim::print_records(&records, out)?;
                }
                Err(StoreError::AlreadyExists { .. }) => say!(out, "domain {name} already hosted"),
                Err(e) => return Err(store_err(e)),
            }
            Ok(())
        }
        DomainAction::List => {
            let mut owners = std::collections::HashMap::new();
            let mut after = None;
            loop {
                let page = store
                    .list_domains(Access::System, PageRequest { after, limit: 500 })
                    .await
                    .map_err(store_err)?;
                for d in &page.items {
                    let owner = match owners.get(&d.owner) {
                        Some(e) => e,
                        None => {
                            let email = store
                                .get_user(d.owner)
                                .await
                                .map(|u| u.email.to_string())
                                .unwrap_or_else(|_| d.owner.to_string());
                            owners.entry(d.owner).or_insert(email)
                        }
                    };
                    let selectors: Vec<&str> =
                        d.dkim_keys.iter().map(|k| k.selector.as_str()).collect();
                    say!(
                        out,
                        "{:<32} {:<8} owner={} dkim={}",
                        d.name.as_ascii(),
                        domain_state(d),
                        owner,
                        if selectors.is_empty() {
                            "-".to_owned()
                        } else {
                            selectors.join(",")
                        }
                    );
                }
                match page.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            Ok(())
        }
        DomainAction::Disable { domain } => {
            let d = set_domain_disabled(store, &domain, true, now).await?;
            say!(
                out,
                "domain {} disabled: mail to it is refused until `admin domain enable` \
                 (its owner cannot re-enable or re-verify it)",
                d.name
            );
            Ok(())
        }
        DomainAction::Enable { domain } => {
            let d = set_domain_disabled(store, &domain, false, now).await?;
            say!(out, "domain {} enabled", d.name);
            Ok(())
        }
        DomainAction::Delete { domain } => {
            let d = hosted(store, &domain).await?;
            match store.delete_domain(Access::System, d.id).await {
                Ok(()) => {
                    say!(out, "domain {} deleted", d.name);
                    Ok(())
                }
                Err(StoreError::Conflict { .. }) => Err(Failure::Usage(format!(
                    "domain {} is still used by aliases (live or in the trash); delete them \
                     first (admin alias list --domain {})",
                    d.name, d.name
                ))),
                Err(e) => Err(store_err(e)),
            }
        }
        DomainAction::DkimRecords { domain } => {
            crate::dkim::run(config, store, crate::dkim::DkimAction::Dns { domain }, out).await
        }
        DomainAction::DkimRotate { domain } => {
            crate::dkim::run(
                config,
                store,
                crate::dkim::DkimAction::Rotate { domain },
                out,
            )
            .await
        }
    }
}

async fn mailbox(
    config: &Config,
    store: &dyn Store,
    action: MailboxAction,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    match action {
        MailboxAction::Create { address, owner } => {
            let address = EmailAddress::parse(&address).map_err(|e| usage(&address, e))?;
            let owner = match owner {
                Some(email) => find_user(store, &email).await?,
                None => operator(store, config).await?,
            };
            let mut m = Mailbox::new(owner.id, address.clone(), now);
            m.verified_at = Some(now);
            match store.create_mailbox(&m).await {
                Ok(()) => {
                    say!(
                        out,
                        "mailbox {address} added for {} (verified)",
                        owner.email
                    );
                    Ok(())
                }
                Err(StoreError::AlreadyExists { .. }) => Err(Failure::Usage(format!(
                    "mailbox {address} exists already for {}",
                    owner.email
                ))),
                Err(e) => Err(store_err(e)),
            }
        }
        MailboxAction::List { owner } => {
            let owners = match owner {
                Some(email) => vec![find_user(store, &email).await?],
                None => all_users(store).await?,
            };
            for u in owners {
                for m in store.list_mailboxes(u.id).await.map_err(store_err)? {
                    say!(
                        out,
                        "{:<40} owner={} {:<10} {:<8} {}",
                        m.address,
                        u.email,
                        if m.verified_at.is_some() {
                            "verified"
                        } else {
                            "unverified"
                        },
                        if m.disabled { "disabled" } else { "enabled" },
                        m.id
                    );
                }
            }
            Ok(())
        }
        MailboxAction::Disable { address, owner } => {
            let mut m = one_mailbox(store, &address, owner.as_deref()).await?;
            m.disabled = true;
            m.updated_at = now;
            store
                .update_mailbox(Access::System, &m)
                .await
                .map_err(store_err)?;
            say!(out, "mailbox {} disabled", m.address);
            Ok(())
        }
        MailboxAction::Enable { address, owner } => {
            let mut m = one_mailbox(store, &address, owner.as_deref()).await?;
            m.disabled = false;
            m.updated_at = now;
            store
                .update_mailbox(Access::System, &m)
                .await
                .map_err(store_err)?;
            say!(out, "mailbox {} enabled", m.address);
            Ok(())
        }
        MailboxAction::Delete { address, owner } => {
            let m = one_mailbox(store, &address, owner.as_deref()).await?;
            match store.delete_mailbox(Access::System, m.id).await {
                Ok(()) => {
                    say!(out, "mailbox {} deleted", m.address);
                    Ok(())
                }
                Err(StoreError::Conflict { .. }) => Err(Failure::Usage(format!(
                    "mailbox {} is still used by an alias (live or in the trash) or as a \
                     domain's default mailbox; change those first",
                    m.address
                ))),
                Err(e) => Err(store_err(e)),
            }
        }
    }
}

async fn alias(
    store: &dyn Store,
    ctx: &Ctx,
    action: AliasAction,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    match action {
        AliasAction::Create {
            address,
            mailboxes,
            mode,
        } => {
            let address = EmailAddress::parse(&address).map_err(|e| usage(&address, e))?;
            if reserved(&address) {
                return Err(Failure::Usage(format!(
                    "{address}: local parts starting with \"{}\" or \"bounce=\" are reserved for reverse aliases and bounce addresses",
                    smtpy::core::reverse::PREFIX
                )));
            }
            let domain = store
                .find_domain_by_name(address.domain())
                .await
                .map_err(store_err)?
                .ok_or_else(|| {
                    Failure::Usage(format!(
                        "{} is not hosted; add it first: server admin domain create {}",
                        address.domain(),
                        address.domain()
                    ))
                })?;
            let mut known = store
                .list_mailboxes(domain.owner)
                .await
                .map_err(store_err)?
                .into_iter()
                .map(|m| (m.address.canonical(), m.id))
                .collect();
            let boxes = mailboxes
                .iter()
                .map(|m| EmailAddress::parse(m).map_err(|e| usage(m, e)))
                .collect::<Result<Vec<_>, _>>()?;
            let ids = mailbox_ids(store, domain.owner, &mut known, &boxes, now).await?;
            let mut alias = Alias::new(address.clone(), domain.owner, domain.id, ids, now);
            if mode == "forward" {
                alias.mode = AliasMode::Forward;
            }
            match store.create_alias(&alias).await {
                Ok(()) => {
                    say!(out, "alias {address} added");
                    Ok(())
                }
                Err(StoreError::AlreadyExists { .. }) => {
                    Err(Failure::Usage(format!("alias {address} already exists")))
                }
                Err(StoreError::Gone { .. }) => Err(Failure::Usage(format!(
                    "alias {address} was deleted and cannot be reused"
                ))),
                Err(e) => Err(store_err(e)),
            }
        }
        AliasAction::List { domain } => {
            let mut filter = AliasFilter::default();
            if let Some(name) = domain {
                filter.domain = Some(hosted(store, &name).await?.id);
            }
            let mut names: std::collections::HashMap<MailboxId, String> =
                std::collections::HashMap::new();
            let mut after = None;
            loop {
                let page = store
                    .list_aliases(Access::System, &filter, PageRequest { after, limit: 500 })
                    .await
                    .map_err(store_err)?;
                for a in &page.items {
                    let mut boxes = Vec::new();
                    for id in &a.mailboxes {
                        if !names.contains_key(id) {
                            for m in store.list_mailboxes(a.owner).await.map_err(store_err)? {
                                names.insert(m.id, m.address.to_string());
                            }
                        }
                        boxes.push(names.get(id).cloned().unwrap_or_else(|| id.to_string()));
                    }
                    say!(
                        out,
                        "{:<40} {:<8} {:<7} {}",
                        a.address,
                        if a.enabled { "enabled" } else { "disabled" },
                        match a.mode {
                            AliasMode::Forward => "forward",
                            _ => "alias",
                        },
                        boxes.join(",")
                    );
                }
                match page.next {
                    Some(c) => after = Some(c),
                    None => break,
                }
            }
            Ok(())
        }
        AliasAction::Disable { address } => {
            set_alias_enabled(store, &address, false, now, out).await
        }
        AliasAction::Enable { address } => set_alias_enabled(store, &address, true, now, out).await,
        AliasAction::Delete { address } => {
            let a = find_alias(store, &address).await?;
            store
                .delete_alias(Access::System, a.id, now)
                .await
                .map_err(store_err)?;
            say!(
                out,
                "alias {} deleted (mail to it is refused; the address cannot be reused)",
                a.address
            );
            Ok(())
        }
        AliasAction::Import { file } => import(store, &ctx.path(&file), now, out).await,
    }
}

async fn set_alias_enabled(
    store: &dyn Store,
    address: &str,
    enabled: bool,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    let mut alias = find_alias(store, address).await?;
    alias.enabled = enabled;
    alias.updated_at = now;
    store
        .update_alias(Access::System, &alias)
        .await
        .map_err(store_err)?;
    say!(
        out,
        "alias {} {}",
        alias.address,
        if enabled { "enabled" } else { "disabled" }
    );
    Ok(())
}

async fn find_alias(store: &dyn Store, address: &str) -> Result<Alias, Failure> {
    let address = EmailAddress::parse(address).map_err(|e| usage(address, e))?;
    store
        .find_alias_by_address(&address)
        .await
        .map_err(store_err)?
        .ok_or_else(|| Failure::Usage(format!("no alias {address}")))
}

async fn find_user(store: &dyn Store, email: &str) -> Result<User, Failure> {
    let address = EmailAddress::parse(email).map_err(|e| usage(email, e))?;
    store
        .find_user_by_email(&address)
        .await
        .map_err(store_err)?
        .ok_or_else(|| Failure::Usage(format!("no account {address}")))
}

async fn all_users(store: &dyn Store) -> Result<Vec<User>, Failure> {
    let mut users = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_users(PageRequest { after, limit: 500 })
            .await
            .map_err(store_err)?;
        users.extend(page.items);
        match page.next {
            Some(c) => after = Some(c),
            None => return Ok(users),
        }
    }
}

/// The one mailbox with `address` (of `owner` when given).
async fn one_mailbox(
    store: &dyn Store,
    address: &str,
    owner: Option<&str>,
) -> Result<Mailbox, Failure> {
    let wanted = EmailAddress::parse(address)
        .map_err(|e| usage(address, e))?
        .canonical();
    let owners = match owner {
        Some(email) => vec![find_user(store, email).await?],
        None => all_users(store).await?,
    };
    let mut found: Vec<(Mailbox, EmailAddress)> = Vec::new();
    for u in owners {
        for m in store.list_mailboxes(u.id).await.map_err(store_err)? {
            if m.address.canonical() == wanted {
                found.push((m, u.email.clone()));
            }
        }
    }
    match found.len() {
        0 => Err(Failure::Usage(format!("no mailbox {address}"))),
        1 => Ok(found.remove(0).0),
        _ => Err(Failure::Usage(format!(
            "mailbox {address} belongs to several accounts ({}); add --owner EMAIL",
            found
                .iter()
                .map(|(_, e)| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Admin => "admin",
        _ => "user",
    }
}

fn status_name(status: UserStatus) -> &'static str {
    match status {
        UserStatus::Active => "active",
        UserStatus::Disabled => "disabled",
        UserStatus::Pending => "pending",
        _ => "other",
    }
}

/// Mailbox ids of `owner` for `addresses`, created verified when missing.
async fn mailbox_ids(
    store: &dyn Store,
    owner: UserId,
    known: &mut std::collections::HashMap<String, MailboxId>,
    addresses: &[EmailAddress],
    now: Timestamp,
) -> Result<Vec<MailboxId>, Failure> {
    let mut ids = Vec::new();
    for m in addresses {
        let id = match known.get(&m.canonical()) {
            Some(id) => *id,
            None => {
                let mut mailbox = Mailbox::new(owner, m.clone(), now);
                mailbox.verified_at = Some(now);
                store.create_mailbox(&mailbox).await.map_err(store_err)?;
                known.insert(m.canonical(), mailbox.id);
                mailbox.id
            }
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

async fn import(
    store: &dyn Store,
    file: &std::path::Path,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let mut domains = std::collections::HashMap::new();
    let mut known: std::collections::HashMap<UserId, std::collections::HashMap<String, MailboxId>> =
        std::collections::HashMap::new();
    let mut batch = Vec::new();
    let mut total = 0usize;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |e: &dyn std::fmt::Display| {
            Failure::Usage(format!("{}:{}: {e}", file.display(), n + 1))
        };
        let mut words = line.split_whitespace();
        let alias = EmailAddress::parse(words.next().unwrap_or_default()).map_err(|e| at(&e))?;
        if reserved(&alias) {
            return Err(at(
                &"the local part is reserved for reverse aliases and bounce addresses",
            ));
        }
        let boxes = words
            .map(EmailAddress::parse)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| at(&e))?;
        if boxes.is_empty() {
            return Err(at(&"an alias needs at least one mailbox"));
        }
        let domain = match domains.get(alias.domain().as_ascii()) {
            Some(d) => d,
            None => {
                let d: Domain = store
                    .find_domain_by_name(alias.domain())
                    .await
                    .map_err(store_err)?
                    .ok_or_else(|| at(&format!("{} is not hosted", alias.domain())))?;
                domains
                    .entry(alias.domain().as_ascii().to_owned())
                    .or_insert(d)
            }
        };
        let owned = match known.get_mut(&domain.owner) {
            Some(k) => k,
            None => {
                let mut k = std::collections::HashMap::new();
                for m in store
                    .list_mailboxes(domain.owner)
                    .await
                    .map_err(store_err)?
                {
                    k.insert(m.address.canonical(), m.id);
                }
                known.entry(domain.owner).or_insert(k)
            }
        };
        let ids = mailbox_ids(store, domain.owner, owned, &boxes, now).await?;
        batch.push(Alias::new(alias, domain.owner, domain.id, ids, now));
        if batch.len() == 10_000 {
            store.create_aliases(&batch).await.map_err(store_err)?;
            total += batch.len();
            batch.clear();
        }
    }
    total += batch.len();
    store.create_aliases(&batch).await.map_err(store_err)?;
    say!(out, "{total} aliases imported");
    Ok(())
}

pub fn usage(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Usage(format!("{what}: {e}"))
}

pub fn store_err(e: StoreError) -> Failure {
    Failure::Runtime(e.to_string())
}

/// The account the operator's commands act as: an admin with no password
/// (it cannot sign in; it only owns what the operator seeds).
async fn operator(store: &dyn Store, config: &Config) -> Result<User, Failure> {
    let email = EmailAddress::parse(&format!("operator@{}", config.hostname))
        .map_err(|e| usage("hostname", e))?;
    if let Some(u) = store.find_user_by_email(&email).await.map_err(store_err)? {
        return Ok(u);
    }
    let user = User::new(email.clone(), Role::Admin, SystemClock.now());
    match store.create_user(&user).await {
        Ok(()) => Ok(user),
        Err(StoreError::AlreadyExists { .. }) => store
            .find_user_by_email(&email)
            .await
            .map_err(store_err)?
            .ok_or_else(|| Failure::Runtime("operator account vanished".into())),
        Err(e) => Err(store_err(e)),
    }
}

/// Shortest password accepted from `--password-file` (as the API's default).
const MIN_PASSWORD_CHARS: usize = 10;

/// `admin user create`: the account, a one-time API key, an audit event.
async fn create_user(
    store: &dyn Store,
    email: &str,
    admin: bool,
    password_file: Option<&std::path::Path>,
    now: Timestamp,
    out: Out<'_>,
) -> Result<(), Failure> {
    use smtpy::core::model::{Actor, ApiScope, AuditEvent};
    use smtpy::core::password::{PasswordHash, PasswordParams};
    let email = EmailAddress::parse(email).map_err(|e| usage("--email", e))?;
    if store
        .find_user_by_email(&email)
        .await
        .map_err(store_err)?
        .is_some()
    {
        return Err(Failure::Usage(format!(
            "--email: an account {email} exists already"
        )));
    }
    let role = if admin { Role::Admin } else { Role::User };
    let mut user = User::new(email.clone(), role, now);
    if let Some(file) = password_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| usage("--password-file", format!("{}: {e}", file.display())))?;
        let password = text.lines().next().unwrap_or_default();
        if password.chars().count() < MIN_PASSWORD_CHARS {
            return Err(Failure::Usage(format!(
                "--password-file: the password must be at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        user.password = Some(
            PasswordHash::hash(password, &PasswordParams::default())
                .map_err(|e| usage("--password-file", e))?,
        );
    }
    match store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::AlreadyExists { .. }) => {
            return Err(Failure::Usage(format!(
                "--email: an account {email} exists already"
            )));
        }
        Err(e) => return Err(store_err(e)),
    }
    let mut scopes = vec![
        ApiScope::AliasesRead,
        ApiScope::AliasesWrite,
        ApiScope::DomainsRead,
        ApiScope::DomainsWrite,
        ApiScope::AccountRead,
        ApiScope::AccountWrite,
    ];
    if admin {
        scopes.push(ApiScope::Admin);
    }
    let key = smtpy_http::auth::mint_api_key(user.id, "admin user create", scopes, None, now)
        .map_err(|p| Failure::Runtime(p.detail))?;
    store.create_api_key(&key.key).await.map_err(store_err)?;
    let mut details = std::collections::BTreeMap::new();
    details.insert("via".to_owned(), "command line".to_owned());
    details.insert(
        "role".to_owned(),
        if admin { "admin" } else { "user" }.to_owned(),
    );
    let event = AuditEvent {
        id: smtpy::core::ids::AuditEventId::new(),
        actor: Actor::System,
        owner: Some(user.id),
        action: "user.create".to_owned(),
        target: Some(user.id.to_string()),
        ip: None,
        at: now,
        details,
    };
    if let Err(e) = store.append_audit(&event).await {
        tracing::warn!(error = %e, "the audit event of user create was not written");
    }
    say!(
        out,
        "user {email} created ({}), id {}",
        if admin { "admin" } else { "user" },
        user.id
    );
    say!(
        out,
        "API key (shown once, it is not stored; use it as Authorization: Bearer <key>):"
    );
    say!(out, "{}", key.token);
    Ok(())
}

/// The hosted domain named `domain`.
fn domain_state(d: &Domain) -> &'static str {
    if d.disabled {
        "disabled"
    } else if d.verified_at.is_some() {
        "enabled"
    } else {
        "unverified"
    }
}

/// Sets the administrator's `disabled` flag of a hosted domain (enabling
/// also marks an unverified domain verified). Retries when a running
/// server (the DNS re-check, an owner's change) wrote the domain between
/// the read and the write.
async fn set_domain_disabled(
    store: &dyn Store,
    domain: &str,
    disabled: bool,
    now: Timestamp,
) -> Result<Domain, Failure> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let mut d = hosted(store, domain).await?;
        d.disabled = disabled;
        if !disabled {
            d.verified_at.get_or_insert(now);
        }
        d.updated_at = now;
        match store.update_domain(Access::System, &d).await {
            Ok(stored) => return Ok(stored),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(e)),
        }
    }
    Err(Failure::Runtime(format!(
        "domain {domain} kept changing while it was being updated ({ATTEMPTS} attempts); \
         run the command again"
    )))
}

pub async fn hosted(store: &dyn Store, domain: &str) -> Result<Domain, Failure> {
    let name = DomainName::parse(domain).map_err(|e| usage(domain, e))?;
    store
        .find_domain_by_name(&name)
        .await
        .map_err(store_err)?
        .ok_or_else(|| Failure::Usage(format!("{name} is not hosted")))
}

/// Local parts smtpy uses for reverse aliases and bounce addresses.
fn reserved(address: &EmailAddress) -> bool {
    let local = address.local_part().as_str();
    smtpy::core::reverse::ReverseAliases::looks_like(local)
        || smtpy::core::bounce::BounceAddresses::looks_like(local)
}
