//! Password hashing with argon2id.
//!
//! Hashes are stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), which carry their own
//! parameters and salt, so [`PasswordHash::verify`] needs nothing else and
//! [`PasswordHash::needs_rehash`] can tell when the configured cost changed.

use std::fmt;

use argon2::password_hash::{self, SaltString};
use argon2::{Algorithm, Argon2, PasswordHasher as _, PasswordVerifier as _, Version};
use ring::rand::{SecureRandom as _, SystemRandom};

/// Longest accepted password, in bytes. Bounds the work an attacker can ask
/// for with a single login attempt.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Length of the random salt, in bytes (the PHC / argon2 recommendation).
const SALT_LEN: usize = 16;

/// Length of the argon2 output, in bytes.
const OUTPUT_LEN: usize = 32;

/// Errors from hashing or parsing passwords.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasswordError {
    /// The password is longer than [`MAX_PASSWORD_LEN`] bytes.
    #[error("password is longer than {max} bytes")]
    TooLong {
        /// The maximum length, in bytes.
        max: usize,
    },
    /// The password is empty.
    #[error("password is empty")]
    Empty,
    /// Hashing failed (invalid parameters or no randomness for the salt).
    #[error("password hashing failed: {0}")]
    Hash(String),
    /// The string is not a PHC argon2id hash within the accepted limits.
    #[error("malformed password hash")]
    Malformed,
}

/// argon2id cost parameters.
///
/// The [`Default`] is the OWASP Password Storage Cheat Sheet recommendation
/// for argon2id: 19 MiB of memory (`m = 19456` KiB), 2 iterations, 1 lane.
/// It is also the `argon2` crate's default and takes a few tens of
/// milliseconds on a current server core: slow enough to make offline
/// guessing expensive, cheap enough that logins stay fast and memory per
/// concurrent login stays small.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct PasswordParams {
    /// Memory cost in KiB (`m`).
    pub memory_kib: u32,
    /// Number of passes over memory (`t`).
    pub iterations: u32,
    /// Degree of parallelism / number of lanes (`p`).
    pub parallelism: u32,
}

impl PasswordParams {
    /// Largest memory cost accepted when hashing or verifying: 4 GiB.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Largest iteration count accepted when hashing or verifying.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Largest parallelism accepted when hashing or verifying.
    pub const MAX_PARALLELISM: u32 = 64;

    /// **Tests only.** The cheapest parameters argon2 accepts (m = 8 KiB,
    /// t = 1, p = 1). They offer essentially no protection against guessing;
    /// never use them for real passwords.
    pub fn insecure_fast_for_tests() -> PasswordParams {
        PasswordParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Whether these parameters are within the accepted upper limits (guards
    /// against a stored hash that asks for unbounded memory or time).
    fn within_limits(&self) -> bool {
        self.memory_kib <= Self::MAX_MEMORY_KIB
            && self.iterations <= Self::MAX_ITERATIONS
            && self.parallelism <= Self::MAX_PARALLELISM
    }

    /// The `argon2` crate's parameter type, validated.
    fn to_argon2(self) -> Result<argon2::Params, PasswordError> {
        if !self.within_limits() {
            return Err(PasswordError::Hash(format!(
                "parameters exceed limits (m <= {}, t <= {}, p <= {})",
                Self::MAX_MEMORY_KIB,
                Self::MAX_ITERATIONS,
                Self::MAX_PARALLELISM
            )));
        }
        argon2::Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| PasswordError::Hash(e.to_string()))
    }
}

impl Default for PasswordParams {
    fn default() -> Self {
        PasswordParams {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Reject empty and over-long passwords.
fn check_password(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        Err(PasswordError::Empty)
    } else if password.len() > MAX_PASSWORD_LEN {
        Err(PasswordError::TooLong {
            max: MAX_PASSWORD_LEN,
        })
    } else {
        Ok(())
    }
}

/// Parse `phc` and check it is a complete argon2id (v19) hash whose
/// parameters are within limits. Returns the parsed hash and its parameters.
fn parse_phc(
    phc: &str,
) -> Result<(password_hash::PasswordHash<'_>, argon2::Params), PasswordError> {
    let parsed = password_hash::PasswordHash::new(phc).map_err(|_| PasswordError::Malformed)?;
    if !matches!(
        Algorithm::try_from(parsed.algorithm),
        Ok(Algorithm::Argon2id)
    ) {
        return Err(PasswordError::Malformed);
    }
    if parsed.version != Some(Version::V0x13.into()) {
        return Err(PasswordError::Malformed);
    }
    if parsed.salt.is_none() || parsed.hash.is_none() {
        return Err(PasswordError::Malformed);
    }
    let params = argon2::Params::try_from(&parsed).map_err(|_| PasswordError::Malformed)?;
    let ours = PasswordParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    };
    if !ours.within_limits() {
        return Err(PasswordError::Malformed);
    }
    Ok((parsed, params))
}

/// A PHC-format argon2id hash string. `Debug` prints
/// `PasswordHash(<redacted>)`.
///
/// Serialises as the bare PHC string; deserialising validates it like
/// [`PasswordHash::from_phc`].
#[derive(Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Hash `password` with argon2id, `params` and a fresh random salt.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Empty`] / [`PasswordError::TooLong`] for an empty or
    /// over-long password; [`PasswordError::Hash`] for invalid parameters or
    /// if the system RNG fails.
    pub fn hash(password: &str, params: &PasswordParams) -> Result<PasswordHash, PasswordError> {
        check_password(password)?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
        let mut salt_bytes = [0u8; SALT_LEN];
        SystemRandom::new()
            .fill(&mut salt_bytes)
            .map_err(|_| PasswordError::Hash("system random number generator failed".into()))?;
        let salt =
            SaltString::encode_b64(&salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
        let hash = argon
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(PasswordHash(hash.to_string()))
    }

    /// Whether `password` matches. The comparison of hash outputs is constant
    /// time. Returns `false` for a malformed hash and for passwords that
    /// [`PasswordHash::hash`] would reject.
    pub fn verify(&self, password: &str) -> bool {
        if check_password(password).is_err() {
            return false;
        }
        let Ok((parsed, params)) = parse_phc(&self.0) else {
            return false;
        };
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    }

    /// Wrap a stored PHC string after checking that it parses, is argon2id
    /// version 19 with a salt and an output, and has parameters within the
    /// [`PasswordParams`] limits.
    ///
    /// # Errors
    ///
    /// [`PasswordError::Malformed`] otherwise.
    pub fn from_phc(s: &str) -> Result<PasswordHash, PasswordError> {
        parse_phc(s)?;
        Ok(PasswordHash(s.to_owned()))
    }

    /// The PHC string, for storage.
    pub fn as_phc(&self) -> &str {
        &self.0
    }

    /// Whether this hash was made with parameters other than `params` (or is
    /// malformed) and should be replaced by a fresh hash the next time the
    /// clear password is available, i.e. after a successful login.
    pub fn needs_rehash(&self, params: &PasswordParams) -> bool {
        let Ok((parsed, current)) = parse_phc(&self.0) else {
            return true;
        };
        let output_len = parsed.hash.as_ref().map(|h| h.len());
        current.m_cost() != params.memory_kib
            || current.t_cost() != params.iterations
            || current.p_cost() != params.parallelism
            || output_len != Some(OUTPUT_LEN)
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

impl<'de> serde::Deserialize<'de> for PasswordHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let phc = String::deserialize(deserializer)?;
        PasswordHash::from_phc(&phc).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> PasswordParams {
        PasswordParams::insecure_fast_for_tests()
    }

    #[test]
    fn hash_then_verify() {
        let hash = PasswordHash::hash("correct horse", &fast()).expect("hash");
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        assert!(hash.verify("correct horse"));
        let again = PasswordHash::from_phc(hash.as_phc()).expect("parse own output");
        assert_eq!(again, hash);
        assert!(again.verify("correct horse"));
    }

    #[test]
    fn default_params_hash_and_verify() {
        let params = PasswordParams::default();
        assert_eq!(
            (params.memory_kib, params.iterations, params.parallelism),
            (19_456, 2, 1)
        );
        let hash = PasswordHash::hash("s3cret", &params).expect("hash");
        assert!(hash.as_phc().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hash.verify("s3cret"));
        assert!(!hash.needs_rehash(&params));
    }

    #[test]
    fn salts_differ() {
        let a = PasswordHash::hash("same", &fast()).expect("hash");
        let b = PasswordHash::hash("same", &fast()).expect("hash");
        assert_ne!(a, b);
    }

    #[test]
    fn wrong_password_is_false() {
        let hash = PasswordHash::hash("correct horse", &fast()).expect("hash");
        assert!(!hash.verify("correct horsf"));
        assert!(!hash.verify("Correct horse"));
        assert!(!hash.verify(""));
        assert!(!hash.verify(&"x".repeat(MAX_PASSWORD_LEN + 1)));
    }

    #[test]
    fn length_limits() {
        assert_eq!(PasswordHash::hash("", &fast()), Err(PasswordError::Empty));
        assert_eq!(
            PasswordHash::hash(&"x".repeat(MAX_PASSWORD_LEN + 1), &fast()),
            Err(PasswordError::TooLong {
                max: MAX_PASSWORD_LEN
            })
        );
        let longest = "y".repeat(MAX_PASSWORD_LEN);
        let hash = PasswordHash::hash(&longest, &fast()).expect("max length is accepted");
        assert!(hash.verify(&longest));
    }

    #[test]
    fn invalid_params_are_errors() {
        let zero = PasswordParams {
            memory_kib: 0,
            iterations: 0,
            parallelism: 0,
        };
        assert!(matches!(
            PasswordHash::hash("pw", &zero),
            Err(PasswordError::Hash(_))
        ));
        let huge = PasswordParams {
            memory_kib: u32::MAX,
            ..fast()
        };
        assert!(matches!(
            PasswordHash::hash("pw", &huge),
            Err(PasswordError::Hash(_))
        ));
    }

    #[test]
    fn malformed_hashes() {
        let hash = PasswordHash::hash("pw", &fast()).expect("hash");
        let phc = hash.as_phc();
        let argon2i = phc.replacen("$argon2id$", "$argon2i$", 1);
        let old_version = phc.replacen("$v=19$", "$v=16$", 1);
        let huge_memory = phc.replacen("m=8,", "m=4294967295,", 1);
        let no_hash = phc.rsplit_once('$').map(|(head, _)| head).unwrap_or("");
        let bad = [
            "",
            "password",
            "$argon2id$",
            "$argon2id$v=19$m=8,t=1,p=1$",
            "$2b$12$abcdefghijklmnopqrstuuYRMzRqH0wX0ckJH2MqJ5aF7u5U2eFvu",
            "$argon2id$v=19$m=8,t=1,p=1$not base64!$abc",
            argon2i.as_str(),
            old_version.as_str(),
            huge_memory.as_str(),
            no_hash,
        ];
        for s in bad {
            assert_eq!(
                PasswordHash::from_phc(s),
                Err(PasswordError::Malformed),
                "{s:?}"
            );
            // Bypass `from_phc` the way a corrupted store row would.
            let raw = PasswordHash(s.to_owned());
            assert!(!raw.verify("pw"), "{s:?}");
            assert!(raw.needs_rehash(&fast()), "{s:?}");
        }
    }

    #[test]
    fn needs_rehash_when_params_change() {
        let hash = PasswordHash::hash("pw", &fast()).expect("hash");
        assert!(!hash.needs_rehash(&fast()));
        for changed in [
            PasswordParams {
                memory_kib: 16,
                ..fast()
            },
            PasswordParams {
                iterations: 2,
                ..fast()
            },
            PasswordParams {
                memory_kib: 16,
                parallelism: 2,
                ..fast()
            },
            PasswordParams::default(),
        ] {
            assert!(hash.needs_rehash(&changed), "{changed:?}");
        }
    }

    #[test]
    fn debug_redacts() {
        let hash = PasswordHash::hash("hunter2", &fast()).expect("hash");
        let shown = format!("{hash:?}");
        assert_eq!(shown, "PasswordHash(<redacted>)");
        assert!(!shown.contains("argon2"));
        assert!(!format!("{:?}", Some(&hash)).contains(hash.as_phc()));
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let hash = PasswordHash::hash("pw", &fast()).expect("hash");
        let json = serde_json::to_string(&hash).expect("serialize");
        assert_eq!(json, format!("\"{}\"", hash.as_phc()));
        let back: PasswordHash = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, hash);
        assert!(back.verify("pw"));
        assert!(serde_json::from_str::<PasswordHash>("\"not a hash\"").is_err());
    }
}
