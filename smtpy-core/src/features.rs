//! Feature flags: switches an administrator flips at runtime.
//!
//! [`FeatureFlags`] is the plain value (serde, with documented defaults; the
//! reference server reads its initial value from the `[features]` section
//! of its configuration). [`Features`] is the shared, cheaply cloned handle
//! the SMTP and HTTP layers read on every decision. Flags live in the store
//! under the setting [`FEATURES_SETTING`] once an administrator changed them
//! (`PATCH /api/v1/admin/features`); from then on the stored flags win over
//! the configuration on every instance. Each instance polls
//! [`Features::refresh_if_changed`] every few seconds, which reads one row
//! and parses it only when its version moved, so instances converge.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use smtpy_core::features::{FeatureFlags, Features};
//! use smtpy_core::memory::MemoryStore;
//! use smtpy_core::time::Timestamp;
//!
//! let store = MemoryStore::new();
//! let here = Features::new(FeatureFlags::default());
//! let there = Features::new(FeatureFlags::default());
//! assert!(here.get().replies);
//!
//! let patch = serde_json::json!({ "replies": false });
//! here.update(&store, &patch, Timestamp::from_unix_secs(1)).await?;
//! assert!(!here.get().replies);
//!
//! // Another instance picks the change up on its next poll.
//! assert!(there.refresh_if_changed(&store).await?);
//! assert!(!there.get().replies);
//! assert!(!there.refresh_if_changed(&store).await?, "nothing new");
//! # Ok::<(), smtpy_core::features::FeatureError>(())
//! # }).unwrap();
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::store::{ControlStore, Setting};
use crate::time::Timestamp;

/// The setting key the flags are stored under (JSON of [`FeatureFlags`]).
pub const FEATURES_SETTING: &str = "features";

/// What the service allows, switchable at runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default)]
pub struct FeatureFlags {
    /// Anyone may create an account over HTTP (`POST /api/v1/auth/register`)
    /// without an invitation. Default: `false`.
    pub registration: bool,
    /// Owners may reply to forwarded mail through reverse aliases (the SMTP
    /// reply path). When off, mail to a reverse alias from its owner is
    /// refused with `550 5.7.1`. Default: `true`.
    pub replies: bool,
    /// Owners may create contacts through the API to start new mail from an
    /// alias. When off, that request is a `403`. Contacts created by
    /// incoming mail (to reply to) are not affected. Default: `true`.
    pub send_from_alias: bool,
    /// Catch-all domains create an alias on the first mail to an unknown
    /// address. When off, such mail gets the ordinary unknown-recipient
    /// reply. Default: `true`.
    pub auto_create: bool,
}

impl Default for FeatureFlags {
    fn default() -> Self {
        Self {
            registration: false,
            replies: true,
            send_from_alias: true,
            auto_create: true,
        }
    }
}

/// The flag names, in the order of [`FeatureFlags`]'s fields.
pub const FLAG_NAMES: [&str; 4] = ["registration", "replies", "send_from_alias", "auto_create"];

impl FeatureFlags {
    /// The flag called `name`, if there is one.
    #[must_use]
    pub fn flag_mut(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "registration" => Some(&mut self.registration),
            "replies" => Some(&mut self.replies),
            "send_from_alias" => Some(&mut self.send_from_alias),
            "auto_create" => Some(&mut self.auto_create),
            _ => None,
        }
    }

    /// These flags with the booleans of a JSON object applied (a JSON merge
    /// patch restricted to known flags): `{"replies": false}` turns replies
    /// off and leaves the rest.
    ///
    /// # Errors
    ///
    /// [`FeatureError::Invalid`] if `patch` is not an object, names an
    /// unknown flag, or gives a flag a value that is not a boolean; the
    /// message names the offending key.
    ///
    /// ```
    /// use smtpy_core::features::FeatureFlags;
    /// let on = FeatureFlags::default().merged(&serde_json::json!({"registration": true})).unwrap();
    /// assert!(on.registration && on.replies);
    /// assert!(FeatureFlags::default().merged(&serde_json::json!({"nope": true})).is_err());
    /// ```
    pub fn merged(&self, patch: &serde_json::Value) -> Result<FeatureFlags, FeatureError> {
        let object = patch.as_object().ok_or_else(|| {
            FeatureError::Invalid("the feature flags must be a JSON object".to_owned())
        })?;
        let mut out = *self;
        for (key, value) in object {
            let flag = out.flag_mut(key).ok_or_else(|| {
                FeatureError::Invalid(format!(
                    "unknown feature flag `{key}` (known: {})",
                    FLAG_NAMES.join(", ")
                ))
            })?;
            *flag = value.as_bool().ok_or_else(|| {
                FeatureError::Invalid(format!("feature flag `{key}` must be true or false"))
            })?;
        }
        Ok(out)
    }
}

/// Why reading or changing the flags failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A patch or the stored value is not valid flags.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug)]
struct Shared {
    flags: RwLock<FeatureFlags>,
    /// Version of the stored setting last applied; 0 before any.
    version: AtomicU64,
}

/// The shared handle on the flags in effect: clone it freely, every clone
/// sees the same flags. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Features {
    shared: Arc<Shared>,
}

impl Default for Features {
    /// All defaults ([`FeatureFlags::default`]).
    fn default() -> Self {
        Self::new(FeatureFlags::default())
    }
}

impl Features {
    /// A handle starting with `initial` (the configuration's flags).
    #[must_use]
    pub fn new(initial: FeatureFlags) -> Self {
        Self {
            shared: Arc::new(Shared {
                flags: RwLock::new(initial),
                version: AtomicU64::new(0),
            }),
        }
    }

    /// The flags in effect now.
    #[must_use]
    pub fn get(&self) -> FeatureFlags {
        *self
            .shared
            .flags
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the flags of this instance (not stored; see
    /// [`save`](Self::save) and [`update`](Self::update)).
    pub fn set(&self, flags: FeatureFlags) {
        *self
            .shared
            .flags
            .write()
            .unwrap_or_else(PoisonError::into_inner) = flags;
    }

    /// The version of the stored setting last applied (0: none yet).
    #[must_use]
    pub fn version(&self) -> u64 {
        self.shared.version.load(Ordering::Acquire)
    }

    fn apply(&self, setting: &Setting) -> Result<(), FeatureError> {
        let value: serde_json::Value = serde_json::from_str(&setting.value).map_err(|e| {
            FeatureError::Invalid(format!("the stored feature flags are not JSON: {e}"))
        })?;
        // Stored flags are complete; merging over the current ones keeps a
        // flag this build knows but the writer did not (older writers).
        let flags = self.get().merged(&value)?;
        self.set(flags);
        self.shared
            .version
            .store(setting.version, Ordering::Release);
        Ok(())
    }

    /// Applies the stored flags, if an administrator ever stored any (else
    /// keeps the current ones). Returns true if stored flags were applied.
    ///
    /// # Errors
    ///
    /// [`FeatureError::Store`] if the store fails, [`FeatureError::Invalid`]
    /// if the stored value is not valid flags (the current flags stay).
    pub async fn load(&self, store: &dyn ControlStore) -> Result<bool, FeatureError> {
        match store.get_setting(FEATURES_SETTING).await? {
            Some(setting) => {
                self.apply(&setting)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Applies the stored flags if their version differs from the one last
    /// applied; true if it did. Poll this every few seconds.
    ///
    /// # Errors
    ///
    /// As [`load`](Self::load).
    pub async fn refresh_if_changed(&self, store: &dyn ControlStore) -> Result<bool, FeatureError> {
        match store.get_setting(FEATURES_SETTING).await? {
            Some(setting) if setting.version != self.version() => {
                self.apply(&setting)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Stores the flags in effect (every instance picks them up on its next
    /// refresh) and returns the stored setting.
    ///
    /// # Errors
    ///
    /// [`FeatureError::Store`] if the store fails.
    pub async fn save(
        &self,
        store: &dyn ControlStore,
        now: Timestamp,
    ) -> Result<Setting, FeatureError> {
        let flags = self.get();
        let json = serde_json::to_string(&flags)
            .map_err(|e| FeatureError::Invalid(format!("cannot encode the flags: {e}")))?;
        let setting = store.put_setting(FEATURES_SETTING, &json, now).await?;
        self.shared
            .version
            .store(setting.version, Ordering::Release);
        Ok(setting)
    }

    /// Applies a JSON patch of booleans (see [`FeatureFlags::merged`]) to
    /// the flags in effect, stores the result and returns it. Nothing
    /// changes when the patch is invalid or the store fails.
    ///
    /// # Errors
    ///
    /// [`FeatureError::Invalid`] for a bad patch, [`FeatureError::Store`]
    /// if the store fails.
    pub async fn update(
        &self,
        store: &dyn ControlStore,
        patch: &serde_json::Value,
        now: Timestamp,
    ) -> Result<FeatureFlags, FeatureError> {
        // Start from the newest stored flags, so a patch made on one
        // instance never reverts another instance's recent change. A stored
        // value that is not valid flags is overwritten by this update (it
        // is the way to repair it).
        match self.refresh_if_changed(store).await {
            Ok(_) => {}
            Err(FeatureError::Invalid(reason)) => {
                tracing::warn!(%reason, "replacing invalid stored feature flags");
            }
            Err(e) => return Err(e),
        }
        let flags = self.get().merged(patch)?;
        let json = serde_json::to_string(&flags)
            .map_err(|e| FeatureError::Invalid(format!("cannot encode the flags: {e}")))?;
        let setting = store.put_setting(FEATURES_SETTING, &json, now).await?;
        self.set(flags);
        self.shared
            .version
            .store(setting.version, Ordering::Release);
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;

    #[test]
    fn defaults_are_documented_values() {
        let d = FeatureFlags::default();
        assert!(!d.registration && d.replies && d.send_from_alias && d.auto_create);
        let parsed: FeatureFlags = serde_json::from_str("{}").expect("empty object");
        assert_eq!(parsed, d, "missing keys take the defaults");
    }

    #[test]
    fn merge_rejects_non_objects_unknown_keys_and_non_booleans() {
        let d = FeatureFlags::default();
        for bad in [
            serde_json::json!([]),
            serde_json::json!({"replies": "no"}),
            serde_json::json!({"replies": null}),
            serde_json::json!({"unknown": true}),
        ] {
            assert!(
                matches!(d.merged(&bad), Err(FeatureError::Invalid(_))),
                "{bad}"
            );
        }
        let all_off = d
            .merged(&serde_json::json!({
                "registration": false, "replies": false,
                "send_from_alias": false, "auto_create": false
            }))
            .expect("valid");
        assert_eq!(
            (
                all_off.replies,
                all_off.send_from_alias,
                all_off.auto_create
            ),
            (false, false, false)
        );
    }

    #[tokio::test]
    async fn load_keeps_config_until_stored_and_bad_stored_value_is_an_error() {
        let store = MemoryStore::new();
        let config = FeatureFlags {
            registration: true,
            ..FeatureFlags::default()
        };
        let f = Features::new(config);
        assert!(!f.load(&store).await.expect("load"), "nothing stored");
        assert_eq!(f.get(), config);
        store
            .put_setting(FEATURES_SETTING, "not json", Timestamp::from_unix_secs(1))
            .await
            .expect("put");
        assert!(matches!(
            f.refresh_if_changed(&store).await,
            Err(FeatureError::Invalid(_))
        ));
        assert_eq!(f.get(), config, "a bad stored value changes nothing");
        store
            .put_setting(
                FEATURES_SETTING,
                r#"{"registration":false,"auto_create":false}"#,
                Timestamp::from_unix_secs(2),
            )
            .await
            .expect("put");
        assert!(f.load(&store).await.expect("load"));
        assert!(!f.get().registration && !f.get().auto_create && f.get().replies);
        assert_eq!(f.version(), 2);
    }

    #[tokio::test]
    async fn update_repairs_an_invalid_stored_value() {
        let store = MemoryStore::new();
        let now = Timestamp::from_unix_secs(5);
        store
            .put_setting(FEATURES_SETTING, "garbage", now)
            .await
            .expect("put");
        let f = Features::default();
        let flags = f
            .update(&store, &serde_json::json!({"replies": false}), now)
            .await
            .expect("update over an invalid value");
        assert!(!flags.replies);
        let stored = store
            .get_setting(FEATURES_SETTING)
            .await
            .expect("get")
            .expect("stored");
        assert_eq!(stored.version, 2);
        let parsed: FeatureFlags = serde_json::from_str(&stored.value).expect("valid now");
        assert_eq!(parsed, flags);
    }

    #[tokio::test]
    async fn update_is_atomic_on_bad_patch_and_save_stores_current() {
        let store = MemoryStore::new();
        let f = Features::default();
        let now = Timestamp::from_unix_secs(5);
        assert!(
            f.update(&store, &serde_json::json!({"x": true}), now)
                .await
                .is_err()
        );
        assert_eq!(
            store.get_setting(FEATURES_SETTING).await.expect("get"),
            None
        );
        f.set(FeatureFlags {
            replies: false,
            ..FeatureFlags::default()
        });
        let saved = f.save(&store, now).await.expect("save");
        let stored: FeatureFlags = serde_json::from_str(&saved.value).expect("json");
        assert!(!stored.replies);
        let other = Features::default();
        assert!(other.refresh_if_changed(&store).await.expect("refresh"));
        assert!(!other.get().replies);
    }
}
