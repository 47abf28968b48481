//! Generated alias local parts: random words, random characters, UUID v4.
//!
//! Randomness comes from the operating system (`ring::rand::SystemRandom`);
//! indices are drawn without modulo bias.

use ring::rand::{SecureRandom as _, SystemRandom};

/// Which generator makes a local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generator {
    /// Two or three words joined with `.` or `_`, then 2–3 digits
    /// (`quiet.maple.417`).
    Words,
    /// 12 lower-case letters and digits.
    Chars,
    /// A random UUID (version 4), hyphenated, lower case.
    Uuid,
}

/// Why no local part could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NoRandomness;

/// Common, short, inoffensive English words (all `a-z`, 3 to 7 letters).
pub(crate) const WORDS: &[&str] = &[
    "able", "acorn", "actor", "agile", "alarm", "album", "amber", "angle", "apple", "april",
    "apron", "arch", "arena", "arrow", "atlas", "attic", "autumn", "badge", "baker", "bamboo",
    "banjo", "barn", "basil", "basin", "beach", "beam", "bean", "bell", "bench", "berry", "bird",
    "bison", "blade", "blank", "bloom", "blue", "board", "boat", "bold", "bolt", "book", "boot",
    "bottle", "brave", "bread", "brick", "bridge", "brief", "brook", "brush", "bucket", "bunny",
    "cabin", "cable", "cactus", "cake", "calm", "camel", "camp", "candle", "canoe", "canyon",
    "cape", "card", "cargo", "carpet", "castle", "cedar", "chalk", "charm", "cheese", "cherry",
    "chess", "chief", "choir", "cider", "cinema", "circle", "city", "civic", "clay", "clean",
    "cliff", "clock", "cloud", "clover", "coast", "cocoa", "comet", "copper", "coral", "cotton",
    "couch", "cove", "crane", "crisp", "crown", "cube", "daisy", "dance", "dawn", "deer", "delta",
    "denim", "desk", "dial", "diary", "dock", "dolphin", "dome", "door", "dove", "dream", "drift",
    "drum", "dune", "eagle", "early", "earth", "easel", "echo", "elbow", "elder", "elm", "ember",
    "empty", "engine", "epic", "equal", "fable", "fair", "falcon", "farm", "feast", "fern",
    "ferry", "field", "fig", "finch", "fire", "flag", "flame", "flint", "flora", "flute", "foam",
    "focus", "forest", "fork", "fox", "frame", "fresh", "frost", "fruit", "galaxy", "garden",
    "gate", "gecko", "gentle", "ginger", "glade", "glass", "globe", "glow", "goat", "gold",
    "grain", "grape", "grass", "green", "grove", "guide", "guitar", "harbor", "happy", "harp",
    "hazel", "heart", "hedge", "hero", "hill", "honey", "hoop", "horse", "house", "humble", "icon",
    "idea", "igloo", "inch", "indigo", "iris", "island", "ivory", "ivy", "jacket", "jade", "jam",
    "jazz", "jelly", "jewel", "jolly", "jungle", "kayak", "kettle", "key", "kind", "king", "kite",
    "kiwi", "koala", "ladder", "lake", "lamp", "lantern", "large", "lark", "laser", "leaf",
    "lemon", "lens", "level", "light", "lilac", "lily", "lime", "linen", "lion", "lizard", "llama",
    "lodge", "lotus", "lucky", "lunar", "lunch", "magic", "maple", "marble", "market", "meadow",
    "melon", "mellow", "merry", "metal", "mild", "mint", "mirror", "mist", "mocha", "model",
    "moon", "moose", "moss", "motor", "mouse", "music", "navy", "nest", "nickel", "noble", "north",
    "novel", "nut", "oak", "oasis", "ocean", "olive", "onion", "opal", "orange", "orbit", "orchid",
    "otter", "owl", "paddle", "paint", "palm", "panda", "paper", "park", "pastel", "peach", "pear",
    "pebble", "pencil", "pepper", "piano", "pilot", "pine", "pixel", "planet", "plum", "polar",
    "pond", "pony", "poppy", "prairie", "prism", "proud", "pulse", "puzzle", "quail", "quartz",
    "quick", "quiet", "quill", "rabbit", "radar", "rain", "ranch", "rapid", "raven", "reed",
    "reef", "ribbon", "ridge", "ripple", "river", "road", "robin", "rocket", "rose", "royal",
    "ruby", "sage", "sail", "salt", "sand", "satin", "scarf", "scout", "seal", "shell", "shore",
    "silk", "silver", "simple", "sky", "slate", "smile", "snow", "solar", "sonic", "spark",
    "spice", "spring", "spruce", "square", "star", "steady", "stone", "storm", "stream", "sugar",
    "summer", "sunny", "swan", "sweet", "swift", "table", "tango", "teal", "tempo", "thistle",
    "thunder", "tiger", "timber", "toast", "topaz", "torch", "tower", "trail", "tree", "tulip",
    "tundra", "turtle", "twig", "umber", "unity", "urban", "valley", "velvet", "violet", "vivid",
    "voyage", "wagon", "walnut", "warm", "water", "wave", "wheat", "whale", "willow", "wind",
    "window", "winter", "wise", "wolf", "wonder", "wood", "yarn", "yellow", "yonder", "young",
    "zebra", "zenith", "zephyr", "zest", "zinc", "zone",
];

const ALPHANUMERIC: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A uniform random index below `n` (`n > 0`), by rejection sampling.
fn index(rng: &SystemRandom, n: usize) -> Result<usize, NoRandomness> {
    let n = u32::try_from(n).map_err(|_| NoRandomness)?;
    if n == 0 {
        return Err(NoRandomness);
    }
    // The largest multiple of n that fits: values at or above it are redrawn.
    let zone = u32::MAX - (u32::MAX % n);
    loop {
        let mut b = [0u8; 4];
        rng.fill(&mut b).map_err(|_| NoRandomness)?;
        let v = u32::from_be_bytes(b);
        if v < zone {
            return Ok((v % n) as usize);
        }
    }
}

/// A fresh local part made by `generator`.
///
/// # Errors
///
/// [`NoRandomness`] when the system random number generator fails.
pub(crate) fn local_part(generator: Generator) -> Result<String, NoRandomness> {
    let rng = SystemRandom::new();
    match generator {
        Generator::Words => {
            let count = 2 + index(&rng, 2)?;
            let sep = if index(&rng, 2)? == 0 { '.' } else { '_' };
            let mut out = String::new();
            for i in 0..count {
                if i > 0 {
                    out.push(sep);
                }
                out.push_str(WORDS[index(&rng, WORDS.len())?]);
            }
            out.push(sep);
            let digits = 2 + index(&rng, 2)?;
            for _ in 0..digits {
                out.push(char::from(
                    b'0' + u8::try_from(index(&rng, 10)?).unwrap_or(0),
                ));
            }
            Ok(out)
        }
        Generator::Chars => (0..12)
            .map(|_| index(&rng, ALPHANUMERIC.len()).map(|i| char::from(ALPHANUMERIC[i])))
            .collect(),
        Generator::Uuid => {
            let mut b = [0u8; 16];
            rng.fill(&mut b).map_err(|_| NoRandomness)?;
            Ok(uuid::Builder::from_random_bytes(b)
                .into_uuid()
                .hyphenated()
                .to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_lower_case_letters_and_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for w in WORDS {
            assert!(w.bytes().all(|b| b.is_ascii_lowercase()), "{w}");
            assert!((3..=7).contains(&w.len()), "{w}");
            assert!(seen.insert(*w), "duplicate {w}");
        }
        assert!(WORDS.len() >= 300, "{}", WORDS.len());
    }

    #[test]
    fn generated_shapes() {
        for _ in 0..200 {
            let w = local_part(Generator::Words).expect("words");
            let sep = if w.contains('.') { '.' } else { '_' };
            let parts: Vec<&str> = w.split(sep).collect();
            assert!((3..=4).contains(&parts.len()), "{w}");
            let (digits, words) = parts.split_last().expect("parts");
            assert!((2..=3).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()));
            assert!(words.iter().all(|x| WORDS.contains(x)), "{w}");

            let c = local_part(Generator::Chars).expect("chars");
            assert_eq!(c.len(), 12);
            assert!(c.bytes().all(|b| ALPHANUMERIC.contains(&b)));

            let u = local_part(Generator::Uuid).expect("uuid");
            let parsed = uuid::Uuid::parse_str(&u).expect("uuid parses");
            assert_eq!(parsed.get_version_num(), 4);
        }
    }
}
