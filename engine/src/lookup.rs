//! The lookup sets of the request path, in two kinds: which kind a set is depends on who fills it.
//!
//! - **Filled from the configuration, unkeyed** ([`KeyHasher`], [`KeySet`], [`KeyMap`],
//!   [`NameSet`]): the allowed origins, methods and header names of a policy. Only the operator
//!   puts keys in them, when the policy is loaded; a request can only look up, and the worst
//!   lookup is bounded by the table the configuration built. Resistance to hash flooding buys
//!   nothing here, so the hasher is the cheapest that spreads similar keys well: a word at a time
//!   with a final avalanche, several times cheaper than std's SipHash on short keys.
//! - **Filled from the request, keyed** (`EchoedNames`, hashing `Caseless` names with
//!   `RequestKeys`): the header names a preflight asks for, when a policy echoes them and drops
//!   repeats. Here the client chooses the keys, so the hash is keyed with random keys drawn once
//!   per VM (a folded multiply, as in foldhash): a client cannot plan collisions without the
//!   keys, and a 60 KB list of names still costs a few nanoseconds per name.
//!
//! Both kinds compare the first [`NameSet::COMPARED_IN_ORDER`] entries one by one instead of
//! hashing: policies list a handful of names and browsers ask for a handful. [`Lowercase`] is the
//! buffer a requested name is lower-cased into before it is looked up (on the stack for any
//! ordinary name).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

// ---------------------------------------------------------------------------------------------
// Filled from the configuration

/// The hasher of the request-path lookup sets (origins, methods, header names): a word at a time,
/// with a final avalanche, several times cheaper than the default SipHash on short keys. Those
/// sets are filled from the configuration only, never from requests, so resistance to hash
/// flooding is not needed: a request can only look up, and the worst lookup is bounded by the
/// table the configuration built.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut h = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            h = (h ^ u64::from_le_bytes(word))
                .wrapping_mul(K)
                .rotate_left(29);
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        h = (h ^ u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59))
            .wrapping_mul(K)
            .rotate_left(29);
        self.0 = h;
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        // murmur3's fmix64: every input bit reaches the low bits hashbrown indexes with.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ (h >> 33)
    }
}

/// A set of byte strings looked up per request (see [`KeyHasher`]).
pub type KeySet = HashSet<Box<[u8]>, BuildHasherDefault<KeyHasher>>;
/// A map from byte strings looked up per request (see [`KeyHasher`]).
pub type KeyMap<V> = HashMap<Box<[u8]>, V, BuildHasherDefault<KeyHasher>>;

/// The allowed methods or header names of a policy, looked up once per element of a request
/// header list. Up to [`NameSet::COMPARED_IN_ORDER`] names are compared one by one, which costs
/// less than hashing the looked-up name (policies list a handful); longer lists are hashed.
#[derive(Debug)]
pub enum NameSet {
    Few(Vec<Box<[u8]>>),
    Many(KeySet),
}

impl NameSet {
    pub const COMPARED_IN_ORDER: usize = 8;

    pub fn contains(&self, name: &[u8]) -> bool {
        match self {
            NameSet::Few(names) => names.iter().any(|listed| **listed == *name),
            NameSet::Many(names) => names.contains(name),
        }
    }
}

impl FromIterator<Box<[u8]>> for NameSet {
    /// Duplicates are dropped.
    fn from_iter<I: IntoIterator<Item = Box<[u8]>>>(names: I) -> Self {
        let set: KeySet = names.into_iter().collect();
        if set.len() <= Self::COMPARED_IN_ORDER {
            NameSet::Few(set.into_iter().collect())
        } else {
            NameSet::Many(set)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Filled from the request

/// The names echoed so far, to drop repeats (compared without ASCII case). The first
/// [`NameSet::COMPARED_IN_ORDER`] are compared one by one (nothing is hashed or allocated for the
/// few names a browser sends); past that, they move to a hash set keyed per VM, so a list of
/// thousands of names costs a few nanoseconds per name, and repeats of one name stay on the
/// cheap path.
pub(crate) struct EchoedNames<'a> {
    /// The whole request header list, to size the hash set once (growing it rehashes).
    list: &'a [u8],
    few: Vec<&'a [u8]>,
    many: Option<HashSet<Caseless<'a>, RequestKeys>>,
}

impl<'a> EchoedNames<'a> {
    /// At most this many names are made room for up front (a table of about 0.5 MB, freed with
    /// the request): about as many distinct names as fit in Envoy's default 60 KiB of request
    /// headers (a name and its comma take at least 2 bytes, and only ~80 names are 1 byte
    /// long), while a larger configured limit still costs no larger allocation.
    const MOST_RESERVED: usize = 16_384;

    pub(crate) fn new(list: &'a [u8]) -> Self {
        EchoedNames {
            list,
            few: Vec::new(),
            many: None,
        }
    }

    /// Adds `name`; false when it was already there.
    pub(crate) fn insert(&mut self, name: &'a [u8]) -> bool {
        if let Some(many) = &mut self.many {
            return many.insert(Caseless(name));
        }
        if self.few.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
            return false;
        }
        if self.few.len() < NameSet::COMPARED_IN_ORDER {
            self.few.push(name);
        } else {
            let elements = self.list.iter().filter(|&&b| b == b',').count() + 1;
            let mut many = HashSet::with_capacity_and_hasher(
                elements.min(Self::MOST_RESERVED),
                RequestKeys::new(),
            );
            many.extend(self.few.drain(..).map(Caseless));
            many.insert(Caseless(name));
            self.many = Some(many);
        }
        true
    }
}

/// A request header name, compared and hashed without regard to ASCII case, borrowed from the
/// request (the echo's de-duplication set allocates nothing per name).
struct Caseless<'a>(&'a [u8]);

impl PartialEq for Caseless<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(other.0)
    }
}

impl Eq for Caseless<'_> {}

impl Hash for Caseless<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Lower-cased 8 bytes at a time (the last word zero-padded), then the length.
        for chunk in self.0.chunks(8) {
            let mut word = [0u8; 8];
            for (to, from) in word.iter_mut().zip(chunk) {
                *to = from.to_ascii_lowercase();
            }
            state.write_u64(u64::from_le_bytes(word));
        }
        state.write_usize(self.0.len());
    }
}

/// Hashing for sets filled from request bytes: a folded multiply (the 128-bit product's halves
/// XORed, as in foldhash) keyed with random keys drawn once per VM. Unlike the policy's
/// [`KeyHasher`] (for sets filled from configuration), a client cannot plan
/// collisions without the keys; unlike std's SipHash, it costs a few nanoseconds per name, so a
/// 60 KB `Access-Control-Request-Headers` of names to echo stays cheap (linear time, bounded work per element).
#[derive(Clone, Copy)]
struct RequestKeys {
    seed: u64,
    multiplier: u64,
}

impl RequestKeys {
    fn new() -> Self {
        thread_local! {
            static KEYS: RequestKeys = {
                let random = std::collections::hash_map::RandomState::new();
                RequestKeys {
                    seed: random.hash_one(0x5eed_u64),
                    // Odd and away from 0: the multiplier is never a weak one.
                    multiplier: random.hash_one(0x6d75_6c74_u64) | (1 << 63) | 1,
                }
            };
        }
        KEYS.with(|keys| *keys)
    }
}

impl BuildHasher for RequestKeys {
    type Hasher = RequestHasher;

    fn build_hasher(&self) -> RequestHasher {
        RequestHasher {
            state: self.seed,
            multiplier: self.multiplier,
        }
    }
}

struct RequestHasher {
    state: u64,
    multiplier: u64,
}

fn folded_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Hasher for RequestHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, word: u64) {
        self.state = folded_multiply(self.state ^ word, self.multiplier);
    }

    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64);
    }

    fn finish(&self) -> u64 {
        folded_multiply(self.state, self.multiplier.rotate_left(32))
    }
}

/// A reusable buffer that lower-cases one requested name at a time: names up to 64 bytes (every
/// name a browser sends) on the stack, longer ones in a vector reused for the rest of the list.
pub struct Lowercase {
    short: [u8; 64],
    long: Vec<u8>,
}

impl Lowercase {
    pub fn new() -> Self {
        Lowercase {
            short: [0; 64],
            long: Vec::new(),
        }
    }

    /// `name` in ASCII lower case, valid until the next call.
    ///
    /// Called once per element of a request header list: the short path is small enough to be
    /// inlined into that loop, and the rare long name goes through a call.
    #[inline]
    pub fn of(&mut self, name: &[u8]) -> &[u8] {
        match self.short.get_mut(..name.len()) {
            Some(buffer) => {
                for (to, from) in buffer.iter_mut().zip(name) {
                    *to = from.to_ascii_lowercase();
                }
                buffer
            }
            None => Self::long(&mut self.long, name),
        }
    }

    #[cold]
    fn long<'b>(buffer: &'b mut Vec<u8>, name: &[u8]) -> &'b [u8] {
        buffer.clear();
        buffer.extend(name.iter().map(u8::to_ascii_lowercase));
        buffer
    }
}

impl Default for Lowercase {
    fn default() -> Self {
        Lowercase::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_hasher_separates_similar_keys_and_sets_find_exactly_their_members() {
        let keys: Vec<Box<[u8]>> = (0..10_000)
            .map(|i| {
                format!("https://app-{i:05}.example.com")
                    .into_bytes()
                    .into()
            })
            .collect();
        let build = BuildHasherDefault::<KeyHasher>::default();
        let hashes: HashSet<u64> = keys.iter().map(|k| build.hash_one(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        // The low 14 bits (what a 16k-bucket table indexes with) are spread too.
        let low: HashSet<u64> = hashes.iter().map(|h| h & 0x3fff).collect();
        assert!(low.len() > 5_000, "{} distinct low-bit patterns", low.len());

        let set: KeySet = keys.iter().cloned().collect();
        assert!(keys.iter().all(|k| set.contains(k.as_ref())));
        for absent in [
            &b"https://app-10000.example.com"[..],
            b"https://app-0000.example.com",
            b"",
            b"https://app-00001.example.co",
        ] {
            assert!(!set.contains(absent));
        }
        // Same bytes, different split into `write` calls of a slice: the length prefix differs.
        assert_ne!(build.hash_one(&b"ab"[..]), build.hash_one(&b"abc"[..]));
    }
}
