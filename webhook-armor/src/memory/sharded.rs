//! A string-keyed map split into shards, so growing it never rehashes every
//! entry at once.
//!
//! A single `HashMap` doubles its table when full and rehashes every entry
//! while the caller holds the store's lock. With a million remembered ids that
//! took tens of milliseconds, long enough to show in the p99 of every request
//! waiting on the lock (measured with `loadgen --half-peak`). With 64 shards
//! each resize moves a sixty-fourth of the entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

const SHARDS: usize = 64;

#[derive(Debug)]
pub(crate) struct ShardedMap<V> {
    router: RandomState,
    shards: Box<[HashMap<String, V>]>,
    len: usize,
}

impl<V> Default for ShardedMap<V> {
    fn default() -> Self {
        Self {
            router: RandomState::new(),
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }
}

impl<V> ShardedMap<V> {
    fn shard(&self, key: &str) -> usize {
        // Each shard's table hashes with its own random keys, so routing on
        // this hash leaves no pattern inside a shard.
        (self.router.hash_one(key) % SHARDS as u64) as usize
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, key: &str) -> Option<&V> {
        self.shards[self.shard(key)].get(key)
    }

    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let shard = self.shard(key);
        self.shards[shard].get_mut(key)
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub(crate) fn insert(&mut self, key: String, value: V) -> Option<V> {
        let shard = self.shard(&key);
        let previous = self.shards[shard].insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    pub(crate) fn remove(&mut self, key: &str) -> Option<V> {
        let shard = self.shard(key);
        let removed = self.shards[shard].remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_and_spreads_over_the_shards() {
        let mut map = ShardedMap::default();
        for i in 0..10_000 {
            assert!(map.insert(format!("id-{i}"), i).is_none());
        }
        assert_eq!(map.insert("id-7".into(), 70), Some(7));
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get("id-7"), Some(&70));
        *map.get_mut("id-8").unwrap() += 1;
        assert_eq!(map.get("id-8"), Some(&9));
        assert_eq!(map.remove("id-9"), Some(9));
        assert_eq!(map.remove("id-9"), None);
        assert!(!map.contains_key("id-9"));
        assert_eq!(map.len(), 9_999);
        // Every shard holds a fair share (expected 156 each).
        assert!(
            map.shards
                .iter()
                .all(|shard| (80..240).contains(&shard.len()))
        );
    }
}
