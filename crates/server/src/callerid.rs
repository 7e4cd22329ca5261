//! Caller identification (SPEC §5): a number is normalised and matched
//! against the profile's local contacts, then the global contacts. Lookups
//! come from this in-memory index, kept in step with the database by the
//! change pipeline (`hub`), never from a query per call.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;

use openturret_domain::number::NumberPlan;
use openturret_domain::{GlobalContactId, LocalContactId, ProfileId};
use openturret_store::{GlobalContactQuery, Store};

/// Numbers to names for one set of contacts. Several contacts may share a
/// number; the one with the lowest id wins, so answers are stable.
struct Index<I> {
    by_key: HashMap<Box<str>, Vec<(I, Box<str>)>>,
    key_of: HashMap<I, Box<str>>,
}

impl<I> Default for Index<I> {
    fn default() -> Self {
        Index {
            by_key: HashMap::new(),
            key_of: HashMap::new(),
        }
    }
}

impl<I: Copy + Ord + Hash + Eq> Index<I> {
    fn upsert(&mut self, id: I, key: String, name: &str) {
        self.remove(id);
        if key.is_empty() {
            return;
        }
        let key: Box<str> = key.into();
        let v = self.by_key.entry(key.clone()).or_default();
        v.push((id, name.into()));
        v.sort_by_key(|(i, _)| *i);
        self.key_of.insert(id, key);
    }

    fn remove(&mut self, id: I) {
        if let Some(key) = self.key_of.remove(&id)
            && let Some(v) = self.by_key.get_mut(&key)
        {
            v.retain(|(i, _)| *i != id);
            if v.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.by_key
            .get(key)
            .and_then(|v| v.first())
            .map(|(_, n)| &**n)
    }

    fn len(&self) -> usize {
        self.key_of.len()
    }
}

pub struct CallerId {
    plan: NumberPlan,
    global: RwLock<Index<GlobalContactId>>,
    local: RwLock<HashMap<ProfileId, Index<LocalContactId>>>,
}

impl CallerId {
    pub fn new(plan: NumberPlan) -> Self {
        CallerId {
            plan,
            global: RwLock::new(Index::default()),
            local: RwLock::new(HashMap::new()),
        }
    }

    /// The name for `number` as `profile` sees it: its local contacts first,
    /// then the global ones.
    pub fn lookup(&self, profile: ProfileId, number: &str) -> Option<String> {
        let key = self.plan.key(number);
        if key.is_empty() {
            return None;
        }
        if let Some(n) = read(&self.local).get(&profile).and_then(|i| i.get(&key)) {
            return Some(n.to_string());
        }
        read(&self.global).get(&key).map(str::to_string)
    }

    /// The name of a global contact with this number (no profile's own
    /// contacts: for the CTI interface).
    pub fn lookup_global(&self, number: &str) -> Option<String> {
        let key = self.plan.key(number);
        if key.is_empty() {
            return None;
        }
        read(&self.global).get(&key).map(str::to_string)
    }

    /// Loads every contact from the store.
    pub async fn load(&self, store: &dyn Store) -> anyhow::Result<()> {
        self.reload_global(store).await?;
        let mut local: HashMap<ProfileId, Index<LocalContactId>> = HashMap::new();
        for c in store.list_all_local_contacts().await? {
            local.entry(c.profile_id).or_default().upsert(
                c.id,
                self.plan.key(&c.fields.number),
                &c.fields.name,
            );
        }
        *write(&self.local) = local;
        Ok(())
    }

    /// Rebuilds the global index (after a bulk import).
    pub async fn reload_global(&self, store: &dyn Store) -> anyhow::Result<()> {
        let mut index = Index::default();
        let mut q = GlobalContactQuery {
            limit: 10_000,
            ..Default::default()
        };
        loop {
            let page = store.search_global_contacts(&q).await?;
            for c in &page {
                index.upsert(c.id, self.plan.key(&c.fields.number), &c.fields.name);
            }
            match page.last() {
                Some(last) if page.len() as i64 == q.limit => q.after = Some(last.id),
                _ => break,
            }
        }
        *write(&self.global) = index;
        Ok(())
    }

    pub fn upsert_global(&self, id: GlobalContactId, number: &str, name: &str) {
        write(&self.global).upsert(id, self.plan.key(number), name);
    }

    pub fn remove_global(&self, id: GlobalContactId) {
        write(&self.global).remove(id);
    }

    pub fn upsert_local(&self, profile: ProfileId, id: LocalContactId, number: &str, name: &str) {
        write(&self.local)
            .entry(profile)
            .or_default()
            .upsert(id, self.plan.key(number), name);
    }

    pub fn remove_local(&self, profile: ProfileId, id: LocalContactId) {
        if let Some(i) = write(&self.local).get_mut(&profile) {
            i.remove(id);
        }
    }

    pub fn drop_profile(&self, profile: ProfileId) {
        write(&self.local).remove(&profile);
    }

    /// How many global contacts are indexed.
    pub fn global_len(&self) -> usize {
        read(&self.global).len()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_contacts_win_over_global_and_numbers_match_in_any_form() {
        let c = CallerId::new(NumberPlan {
            country_code: Some("44".into()),
        });
        c.upsert_global(GlobalContactId(1), "+44 20 7946 0001", "Global Bob");
        c.upsert_local(ProfileId(7), LocalContactId(1), "020 7946 0001", "My Bob");
        assert_eq!(
            c.lookup(ProfileId(7), "0044 20 7946 0001").as_deref(),
            Some("My Bob")
        );
        assert_eq!(
            c.lookup(ProfileId(8), "020-7946-0001").as_deref(),
            Some("Global Bob")
        );
        assert_eq!(c.lookup(ProfileId(8), "+1 555"), None);
        c.remove_global(GlobalContactId(1));
        assert_eq!(c.lookup(ProfileId(8), "020 7946 0001"), None);
        c.drop_profile(ProfileId(7));
        assert_eq!(c.lookup(ProfileId(7), "020 7946 0001"), None);
    }

    #[test]
    fn a_shared_number_keeps_the_lowest_id_and_falls_back_on_removal() {
        let c = CallerId::new(NumberPlan::default());
        c.upsert_global(GlobalContactId(5), "100", "Five");
        c.upsert_global(GlobalContactId(2), "100", "Two");
        assert_eq!(c.lookup(ProfileId(1), "100").as_deref(), Some("Two"));
        c.remove_global(GlobalContactId(2));
        assert_eq!(c.lookup(ProfileId(1), "100").as_deref(), Some("Five"));
        c.upsert_global(GlobalContactId(5), "200", "Five moved");
        assert_eq!(c.lookup(ProfileId(1), "100"), None);
    }
}
