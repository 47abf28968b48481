//! `server dkim …`: DKIM keys of hosted domains and the DNS records to publish.

use clap::Subcommand;
use smtpy::core::Store;
use smtpy::core::dkim::{self, DnsRecord, PublishMode, RecordKind, SelectorNaming};
use smtpy::core::model::DkimAlgorithm;
use smtpy::core::store::Access;
use smtpy::core::time::{Clock, SystemClock};

use crate::admin::{hosted, store_err};
use crate::cli::{Out, say};
use crate::config::Config;
use crate::run::Failure;

/// TTL written in the zone lines.
const TTL: u32 = 3600;
/// The DMARC policy suggested to hosted domains (as the API suggests).
const DMARC_VALUE: &str = "v=DMARC1; p=quarantine; adkim=r; aspf=r";
/// The preference of the suggested MX record.
const MX_PREFERENCE: u16 = 10;

/// `dkim …`
#[derive(Debug, Subcommand)]
pub enum DkimAction {
    /// Generate keys for a domain that has none, or add an algorithm.
    Generate {
        /// The domain.
        domain: String,
        /// Only this algorithm (default: every one of `[dkim] algorithms`).
        #[arg(long, value_parser = ["rsa", "ed25519"])]
        algorithm: Option<String>,
    },
    /// Start a key rotation: new keys are published now and sign after
    /// `[dkim] publish_delay`; the old ones retire after `[dkim] grace`.
    Rotate {
        /// The domain.
        domain: String,
    },
    /// Print the zone lines to publish: DKIM, and suggested MX, SPF and DMARC.
    Dns {
        /// The domain.
        domain: String,
    },
}

/// Runs a `dkim` command.
pub async fn run(
    config: &Config,
    store: &dyn Store,
    action: DkimAction,
    out: Out<'_>,
) -> Result<(), Failure> {
    let now = SystemClock.now();
    let mode = crate::policy::publish_mode(config);
    match action {
        DkimAction::Generate { domain, algorithm } => {
            let mut d = hosted(store, &domain).await?;
            let wanted: Vec<DkimAlgorithm> = match algorithm.as_deref() {
                Some("ed25519") => vec![DkimAlgorithm::Ed25519],
                Some(_) => vec![DkimAlgorithm::Rsa2048],
                None => config.dkim_algorithms.clone(),
            };
            let missing: Vec<DkimAlgorithm> = wanted
                .into_iter()
                .filter(|a| !d.dkim_keys.iter().any(|k| k.algorithm == *a))
                .collect();
            if missing.is_empty() {
                return Err(Failure::Usage(format!(
                    "{} already has keys for that algorithm; use `dkim rotate {}` to replace them",
                    d.name, d.name
                )));
            }
            let keyring = crate::policy::keyring(config)?;
            let naming = SelectorNaming::for_mode(&mode);
            let mut selectors = Vec::new();
            for alg in missing {
                let key = dkim::new_key(&d, alg, now, &keyring, &naming)
                    .map_err(|e| Failure::Runtime(format!("DKIM key generation failed: {e}")))?;
                selectors.push(key.selector.clone());
                d.dkim_keys.push(key);
            }
            d.updated_at = now;
            store
                .update_domain(Access::System, &d)
                .await
                .map_err(store_err)?;
            say!(
                out,
                "new selectors {} for {}: publish the records below",
                selectors.join(", "),
                d.name
            );
            print_records(&dkim::records_to_publish(&d, &mode), out)
        }
        DkimAction::Rotate { domain } => {
            let mut d = hosted(store, &domain).await?;
            let keyring = crate::policy::keyring(config)?;
            let naming = SelectorNaming::for_mode(&mode);
            let selectors =
                dkim::start_rotation(&mut d, &config.dkim_algorithms, now, &keyring, &naming)
                    .map_err(|e| Failure::Runtime(format!("rotation failed: {e}")))?;
            store
                .update_domain(Access::System, &d)
                .await
                .map_err(store_err)?;
            say!(
                out,
                "new selectors {}: publish the records below; they sign after {:?}",
                selectors.join(", "),
                config.dkim_publish_delay
            );
            print_records(&dkim::records_to_publish(&d, &mode), out)
        }
        DkimAction::Dns { domain } => {
            let d = hosted(store, &domain).await?;
            let name = d.name.as_ascii().to_owned();
            let host = config.hostname.trim_end_matches('.').to_ascii_lowercase();
            say!(out, "; DKIM");
            match &mode {
                PublishMode::Direct => {
                    print_records(&dkim::records_to_publish(&d, &mode), out)?;
                }
                PublishMode::Delegated { service_domain } => {
                    say!(out, "; in the zone of {name} (once):");
                    print_records(&dkim::delegated_cnames(&d.name, service_domain), out)?;
                    say!(
                        out,
                        "; in the zone of {service_domain} (the service's keys):"
                    );
                    print_records(&dkim::records_to_publish(&d, &mode), out)?;
                }
            }
            say!(out, "; suggested: mail for {name} comes to this server");
            say!(out, "{name}. {TTL} IN MX {MX_PREFERENCE} {host}.");
            say!(out, "; suggested: SPF authorises this server");
            print_records(&[txt(&name, format!("v=spf1 include:{host} ~all"))], out)?;
            say!(out, "; suggested: DMARC policy");
            print_records(
                &[txt(&format!("_dmarc.{name}"), DMARC_VALUE.to_owned())],
                out,
            )
        }
    }
}

fn txt(name: &str, value: String) -> DnsRecord {
    DnsRecord {
        name: name.to_owned(),
        kind: RecordKind::Txt,
        value,
    }
}

/// One zone line per record.
pub fn print_records(records: &[DnsRecord], out: Out<'_>) -> Result<(), Failure> {
    for r in records {
        say!(out, "{}", r.zone_line(TTL));
    }
    Ok(())
}
