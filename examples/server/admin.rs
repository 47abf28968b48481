//! `server admin …`: seed the store from the command line.

use clap::Subcommand;
use smtpy::core::address::{DomainName, EmailAddress};
use smtpy::core::model::{Alias, Domain, Mailbox, Role, User};
use smtpy::core::store::Access;
use smtpy::core::time::{Clock, SystemClock};
use smtpy::core::{Store, StoreError};

use crate::config::Config;
use crate::run::{Failure, open_store};

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Hosted domains.
    Domain {
        #[command(subcommand)]
        action: DomainAction,
    },
    /// Aliases.
    Alias {
        #[command(subcommand)]
        action: AliasAction,
    },
    /// Accounts of the HTTP API.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
}

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
}

#[derive(Debug, Subcommand)]
pub enum DomainAction {
    /// Host a domain (verified at once: the operator controls it).
    Add {
        /// The domain, e.g. alias.example.
        domain: String,
    },
    /// Print the DNS records to publish for a domain's DKIM keys.
    DkimRecords {
        /// The domain.
        domain: String,
    },
    /// Start a DKIM key rotation: new keys are published now and sign after
    /// `[dkim] publish_delay`; the old ones retire after `[dkim] grace`.
    DkimRotate {
        /// The domain.
        domain: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AliasAction {
    /// Create an alias forwarding to one or more mailboxes (created verified).
    Add {
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
    /// Disable an alias: mail to it is refused with 550 5.1.1.
    Disable {
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

/// Mailbox ids of `owner` for `addresses`, created verified when missing.
async fn mailbox_ids(
    store: &dyn Store,
    owner: smtpy::core::ids::UserId,
    known: &mut std::collections::HashMap<String, smtpy::core::ids::MailboxId>,
    addresses: &[EmailAddress],
    now: smtpy::core::time::Timestamp,
) -> Result<Vec<smtpy::core::ids::MailboxId>, Failure> {
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
    now: smtpy::core::time::Timestamp,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::Usage(format!("{}: {e}", file.display())))?;
    let mut domains = std::collections::HashMap::new();
    let mut known: std::collections::HashMap<
        smtpy::core::ids::UserId,
        std::collections::HashMap<String, smtpy::core::ids::MailboxId>,
    > = std::collections::HashMap::new();
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
    println!("{total} aliases imported");
    Ok(())
}

fn usage(what: &str, e: impl std::fmt::Display) -> Failure {
    Failure::Usage(format!("{what}: {e}"))
}

fn store_err(e: StoreError) -> Failure {
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

pub async fn run(config: &Config, command: AdminCommand) -> Result<(), Failure> {
    let (store, _queue) = open_store(config).await?;
    let now = SystemClock.now();
    match command {
        AdminCommand::Domain {
            action: DomainAction::Add { domain },
        } => {
            let name = DomainName::parse(&domain).map_err(|e| usage(&domain, e))?;
            let owner = operator(&*store, config).await?;
            let mut d = Domain::new(name.clone(), owner.id, String::new(), now);
            d.verified_at = Some(now);
            let keyring = crate::policy::keyring(config)?;
            let records = crate::policy::provision_dkim(config, &mut d, &keyring)?;
            match store.create_domain(&d).await {
                Ok(()) => {
                    println!("domain {name} added; publish these DNS records for DKIM:");
                    print_records(&records);
                }
                Err(StoreError::AlreadyExists { .. }) => println!("domain {name} already hosted"),
                Err(e) => return Err(store_err(e)),
            }
        }
        AdminCommand::Domain {
            action: DomainAction::DkimRecords { domain },
        } => {
            let d = hosted(&*store, &domain).await?;
            print_records(&smtpy::core::dkim::records_to_publish(
                &d,
                &crate::policy::publish_mode(config),
            ));
        }
        AdminCommand::Domain {
            action: DomainAction::DkimRotate { domain },
        } => {
            let mut d = hosted(&*store, &domain).await?;
            let keyring = crate::policy::keyring(config)?;
            let mode = crate::policy::publish_mode(config);
            let naming = smtpy::core::dkim::SelectorNaming::for_mode(&mode);
            let selectors = smtpy::core::dkim::start_rotation(
                &mut d,
                &config.dkim_algorithms,
                now,
                &keyring,
                &naming,
            )
            .map_err(|e| Failure::Runtime(format!("rotation failed: {e}")))?;
            store
                .update_domain(Access::System, &d)
                .await
                .map_err(store_err)?;
            println!(
                "new selectors {}: publish the records below; they sign after {:?}",
                selectors.join(", "),
                config.dkim_publish_delay
            );
            print_records(&smtpy::core::dkim::records_to_publish(&d, &mode));
        }
        AdminCommand::Alias {
            action:
                AliasAction::Add {
                    address,
                    mailboxes,
                    mode,
                },
        } => {
            let address = EmailAddress::parse(&address).map_err(|e| usage(&address, e))?;
            let domain = store
                .find_domain_by_name(address.domain())
                .await
                .map_err(store_err)?
                .ok_or_else(|| {
                    Failure::Usage(format!(
                        "{} is not hosted; add it first: server admin domain add {}",
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
            let ids = mailbox_ids(&*store, domain.owner, &mut known, &boxes, now).await?;
            if reserved(&address) {
                return Err(Failure::Usage(format!(
                    "{address}: local parts starting with \"{}\" or \"bounce=\" are reserved for reverse aliases and bounce addresses",
                    smtpy::core::reverse::PREFIX
                )));
            }
            let mut alias = Alias::new(address.clone(), domain.owner, domain.id, ids, now);
            if mode == "forward" {
                alias.mode = smtpy::core::model::AliasMode::Forward;
            }
            match store.create_alias(&alias).await {
                Ok(()) => println!("alias {address} added"),
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(Failure::Usage(format!("alias {address} already exists")));
                }
                Err(StoreError::Gone { .. }) => {
                    return Err(Failure::Usage(format!(
                        "alias {address} was deleted and cannot be reused"
                    )));
                }
                Err(e) => return Err(store_err(e)),
            }
        }
        AdminCommand::User {
            action:
                UserAction::Create {
                    email,
                    admin,
                    password_file,
                },
        } => {
            create_user(&*store, &email, admin, password_file.as_deref(), now).await?;
        }
        AdminCommand::Alias {
            action: AliasAction::Import { file },
        } => {
            import(&*store, &file, now).await?;
        }
        AdminCommand::Alias {
            action: AliasAction::Disable { address },
        } => {
            let address = EmailAddress::parse(&address).map_err(|e| usage(&address, e))?;
            let mut alias = store
                .find_alias_by_address(&address)
                .await
                .map_err(store_err)?
                .ok_or_else(|| Failure::Usage(format!("no alias {address}")))?;
            alias.enabled = false;
            alias.updated_at = now;
            store
                .update_alias(Access::System, &alias)
                .await
                .map_err(store_err)?;
            println!("alias {address} disabled");
        }
    }
    Ok(())
}

/// Shortest password accepted from `--password-file` (as the API's default).
const MIN_PASSWORD_CHARS: usize = 10;

/// `admin user create`: the account, a one-time API key, an audit event.
async fn create_user(
    store: &dyn Store,
    email: &str,
    admin: bool,
    password_file: Option<&std::path::Path>,
    now: smtpy::core::time::Timestamp,
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
        eprintln!("warning: the audit event was not written: {e}");
    }
    println!(
        "user {email} created ({}), id {}",
        if admin { "admin" } else { "user" },
        user.id
    );
    println!("API key (shown once, it is not stored; use it as Authorization: Bearer <key>):");
    println!("{}", key.token);
    Ok(())
}

async fn hosted(store: &dyn Store, domain: &str) -> Result<Domain, Failure> {
    let name = DomainName::parse(domain).map_err(|e| usage(domain, e))?;
    store
        .find_domain_by_name(&name)
        .await
        .map_err(store_err)?
        .ok_or_else(|| Failure::Usage(format!("{name} is not hosted")))
}

fn print_records(records: &[smtpy::core::dkim::DnsRecord]) {
    for r in records {
        println!("{}", r.zone_line(3600));
    }
}

/// Local parts smtpy uses for reverse aliases and bounce addresses.
fn reserved(address: &EmailAddress) -> bool {
    let local = address.local_part().as_str();
    smtpy::core::reverse::ReverseAliases::looks_like(local)
        || smtpy::core::bounce::BounceAddresses::looks_like(local)
}
