//! A fleet-wide bulkhead: at most `slots` holders at once across every instance and process
//! sharing the store. Slots are leases: a holder that dies stops renewing, its lease expires and
//! another caller may take the slot.
//!
//! The state is one JSON record at `bulkhead/{name}/slots`, changed only by compare-and-swap.
//! Every change bumps its generation, so a stored value never repeats (compare-and-swap compares
//! by value), and a slot taken at generation `g` gets `g` as its holder's token: tokens are unique
//! fleet-wide, and a late [`Bulkhead::renew`] or [`Bulkhead::leave`] by a holder whose slot was
//! retaken finds another token there and changes nothing.
//!
//! Seeding follows the breaker's (see the crate docs): the caller that gets 1 from incrementing
//! `bulkhead/{name}/seeded` writes the record, and so does every 1000th caller that finds it
//! missing. A record seeded by the `n`-th sighting starts at generation `n << 32`, so a record
//! reseeded after a lost seeding never hands out a token the lost one could have. (A seeder that
//! writes very late overwrites the record it finds, as the breaker's would: the store has no
//! compare-and-swap on a missing key to prevent it.)

use crate::clock::Clock;
use crate::kv::KvStore;
use crate::settings::SettingError;
use serde::{Deserialize, Serialize};

/// How many times a lost compare-and-swap is retried before giving up for now.
const MAX_CAS_ATTEMPTS: u32 = 16;

/// A record still missing after this many callers found it missing is seeded again: whoever
/// was to seed it failed between claiming the seeding and writing.
const RESEED_EVERY: i64 = 1_000;

/// The most slots a bulkhead may have (the record lists every one).
const MAX_SLOTS: u32 = 1_000;

/// How many may hold the bulkhead at once, and for how long a slot is held without renewal.
/// Validate with [`BulkheadPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkheadPolicy {
    /// Holders allowed at once, fleet-wide (1 to 1000).
    pub slots: u32,
    /// How long a lease lasts from its taking or last renewal, in ms (at least 1).
    pub lease_ms: u64,
}

impl BulkheadPolicy {
    /// Checks every field; an error names the field.
    pub fn validate(&self) -> Result<(), SettingError> {
        if !(1..=MAX_SLOTS).contains(&self.slots) {
            return Err(SettingError::invalid(
                "slots",
                self.slots,
                format!("must be between 1 and {MAX_SLOTS}"),
            ));
        }
        if self.lease_ms == 0 {
            return Err(SettingError::invalid(
                "lease_ms",
                self.lease_ms,
                "must be at least 1",
            ));
        }
        Ok(())
    }
}

/// A slot taken with [`Bulkhead::try_enter`]: keep it alive with [`Bulkhead::renew`] and give
/// it back with [`Bulkhead::leave`].
#[derive(Debug, PartialEq, Eq)]
pub struct BulkheadPermit {
    slot: u32,
    token: u64,
}

impl BulkheadPermit {
    /// The slot's index.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The holder's token: the record's generation when the slot was taken, unique fleet-wide.
    pub fn token(&self) -> u64 {
        self.token
    }
}

/// What can go wrong running the bulkhead.
#[derive(Debug, thiserror::Error)]
pub enum BulkheadError {
    /// The key-value store failed.
    #[error("the key-value store failed")]
    Store(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
    /// The stored record is not a bulkhead record.
    #[error("the bulkhead record at {key:?} is not valid")]
    Corrupt {
        /// The record's key.
        key: String,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// Other instances kept changing the record; try again later.
    #[error("the bulkhead record at {key:?} kept changing: gave up after {attempts} attempts")]
    Contended {
        /// The record's key.
        key: String,
        /// Compare-and-swap attempts made.
        attempts: u32,
    },
}

fn store_error<E: std::error::Error + Send + Sync + 'static>(error: E) -> BulkheadError {
    BulkheadError::Store(Box::new(error))
}

/// One slot as stored: its holder's token (none once freed) and when the lease ends. An
/// expired slot keeps its token until it is retaken, so its holder may still renew it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    token: Option<u64>,
    expires_ms: u64,
}

impl Slot {
    const FREE: Slot = Slot {
        token: None,
        expires_ms: 0,
    };

    fn is_live(&self, now_ms: u64) -> bool {
        self.token.is_some() && self.expires_ms > now_ms
    }
}

/// The bulkhead as stored at `bulkhead/{name}/slots`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SlotsRecord {
    /// Bumped on every change.
    generation: u64,
    slots: Vec<Slot>,
}

impl SlotsRecord {
    fn live(&self, now_ms: u64) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.is_live(now_ms))
            .count()
    }

    fn next(&self) -> Self {
        Self {
            generation: self.generation.saturating_add(1),
            slots: self.slots.clone(),
        }
    }

    /// The record with a free or expired slot taken until `now_ms + lease_ms`, and the permit;
    /// `None` when `slots` leases are live. Only slots below `slots` are taken (a record written
    /// under a larger policy keeps its live leases beyond that, and they count).
    fn enter(&self, policy: &BulkheadPolicy, now_ms: u64) -> Option<(Self, BulkheadPermit)> {
        let limit = policy.slots as usize;
        if self.live(now_ms) >= limit {
            return None;
        }
        let index = (0..limit).find(|index| {
            self.slots
                .get(*index)
                .is_none_or(|slot| !slot.is_live(now_ms))
        })?;
        let mut next = self.next();
        if next.slots.len() <= index {
            next.slots.resize(index + 1, Slot::FREE);
        }
        next.slots[index] = Slot {
            token: Some(next.generation),
            expires_ms: now_ms.saturating_add(policy.lease_ms),
        };
        while next.slots.len() > limit && next.slots.last().is_some_and(|s| !s.is_live(now_ms)) {
            next.slots.pop();
        }
        let permit = BulkheadPermit {
            slot: u32::try_from(index).ok()?,
            token: next.generation,
        };
        Some((next, permit))
    }

    fn holds(&self, permit: &BulkheadPermit) -> bool {
        self.slots
            .get(permit.slot as usize)
            .is_some_and(|slot| slot.token == Some(permit.token))
    }

    /// The record with `permit`'s lease extended to `now_ms + lease_ms` (never shortened).
    fn renew(&self, permit: &BulkheadPermit, lease_ms: u64, now_ms: u64) -> Self {
        let mut next = self.next();
        let slot = &mut next.slots[permit.slot as usize];
        slot.expires_ms = slot.expires_ms.max(now_ms.saturating_add(lease_ms));
        next
    }

    /// The record with `permit`'s slot free.
    fn leave(&self, permit: &BulkheadPermit) -> Self {
        let mut next = self.next();
        next.slots[permit.slot as usize] = Slot::FREE;
        next
    }
}

/// The stored record with the exact bytes it was read from (the compare-and-swap expects those
/// bytes). No bytes: the record is not in the store yet and must not be compare-and-swapped.
struct Snapshot {
    record: SlotsRecord,
    raw: Option<Vec<u8>>,
}

/// A concurrency limit shared fleet-wide through the store under `bulkhead/{name}/`.
pub struct Bulkhead<'a, S: KvStore, C: Clock> {
    store: &'a S,
    clock: &'a C,
    policy: BulkheadPolicy,
    prefix: String,
}

impl<'a, S: KvStore, C: Clock> Bulkhead<'a, S, C> {
    /// The bulkhead named `name` (validate `policy` first; every instance should use the same).
    pub fn new(store: &'a S, clock: &'a C, name: &str, policy: BulkheadPolicy) -> Self {
        Self {
            store,
            clock,
            policy,
            prefix: format!("bulkhead/{name}"),
        }
    }

    /// Takes a free or expired slot, leased until now + `lease_ms`. `None` when every slot holds
    /// a live lease (or, rarely, when other instances kept winning the record meanwhile).
    pub fn try_enter(&self) -> Result<Option<BulkheadPermit>, BulkheadError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let snapshot = self.load()?;
            let Some((record, permit)) = snapshot.record.enter(&self.policy, now_ms) else {
                return Ok(None);
            };
            if self.commit(&snapshot, &record)? {
                return Ok(Some(permit));
            }
        }
        Ok(None)
    }

    /// Extends `permit`'s lease to now + `lease_ms` if it still holds its slot (an expired lease
    /// nobody retook still counts). False if the slot was lost: taken by another holder.
    pub fn renew(&self, permit: &BulkheadPermit) -> Result<bool, BulkheadError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let now_ms = self.clock.now_ms();
            let Some(snapshot) = self.read()? else {
                return Ok(false);
            };
            if !snapshot.record.holds(permit) {
                return Ok(false);
            }
            let record = snapshot.record.renew(permit, self.policy.lease_ms, now_ms);
            if self.commit(&snapshot, &record)? {
                return Ok(true);
            }
        }
        Err(self.contended())
    }

    /// Frees `permit`'s slot if it still holds it; a no-op if the slot was lost.
    pub fn leave(&self, permit: BulkheadPermit) -> Result<(), BulkheadError> {
        for _ in 0..MAX_CAS_ATTEMPTS {
            let Some(snapshot) = self.read()? else {
                return Ok(());
            };
            if !snapshot.record.holds(&permit) {
                return Ok(());
            }
            if self.commit(&snapshot, &snapshot.record.leave(&permit))? {
                return Ok(());
            }
        }
        Err(self.contended())
    }

    /// Live leases now (one read, no write; 0 before the first use).
    pub fn occupied(&self) -> Result<u32, BulkheadError> {
        let live = match self.read()? {
            Some(snapshot) => snapshot.record.live(self.clock.now_ms()),
            None => 0,
        };
        Ok(u32::try_from(live).unwrap_or(u32::MAX))
    }

    /// Reads the record, if stored.
    fn read(&self) -> Result<Option<Snapshot>, BulkheadError> {
        let key = self.slots_key();
        let Some(raw) = self.store.get(&key).map_err(store_error)? else {
            return Ok(None);
        };
        let record = serde_json::from_slice(&raw)
            .map_err(|source| BulkheadError::Corrupt { key, source })?;
        Ok(Some(Snapshot {
            record,
            raw: Some(raw),
        }))
    }

    /// Reads the record, seeding it when absent: the caller that claims the seeding writes every
    /// slot free; others get an unstored record with every slot free.
    fn load(&self) -> Result<Snapshot, BulkheadError> {
        if let Some(snapshot) = self.read()? {
            return Ok(snapshot);
        }
        let sightings = self
            .store
            .increment(&format!("{}/seeded", self.prefix), 1)
            .map_err(store_error)?;
        let free = vec![Slot::FREE; self.policy.slots as usize];
        if sightings == 1 || sightings % RESEED_EVERY == 0 {
            let epoch = u64::try_from(sightings).unwrap_or(0);
            let record = SlotsRecord {
                generation: epoch.saturating_mul(1 << 32),
                slots: free,
            };
            let raw = encode(&record);
            self.store
                .set(&self.slots_key(), &raw)
                .map_err(store_error)?;
            return Ok(Snapshot {
                record,
                raw: Some(raw),
            });
        }
        Ok(Snapshot {
            record: SlotsRecord {
                generation: 0,
                slots: free,
            },
            raw: None,
        })
    }

    /// Replaces `current` with `next` if nobody changed it meanwhile; true if this caller won.
    fn commit(&self, current: &Snapshot, next: &SlotsRecord) -> Result<bool, BulkheadError> {
        let Some(expected) = &current.raw else {
            return Ok(false);
        };
        self.store
            .compare_and_swap(&self.slots_key(), expected, &encode(next))
            .map_err(store_error)
    }

    fn contended(&self) -> BulkheadError {
        BulkheadError::Contended {
            key: self.slots_key(),
            attempts: MAX_CAS_ATTEMPTS,
        }
    }

    fn slots_key(&self) -> String {
        format!("{}/slots", self.prefix)
    }
}

fn encode(record: &SlotsRecord) -> Vec<u8> {
    // Plain structs with string keys: serializing to JSON cannot fail.
    serde_json::to_vec(record).expect("a bulkhead record always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::kv::MemoryStore;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex};

    const NAME: &str = "drain";
    const KEY: &str = "bulkhead/drain/slots";
    const SEEDED: &str = "bulkhead/drain/seeded";

    fn policy(slots: u32) -> BulkheadPolicy {
        BulkheadPolicy {
            slots,
            lease_ms: 1_000,
        }
    }

    fn bulkhead<'a>(
        store: &'a MemoryStore,
        clock: &'a ManualClock,
        slots: u32,
    ) -> Bulkhead<'a, MemoryStore, ManualClock> {
        Bulkhead::new(store, clock, NAME, policy(slots))
    }

    fn stored(store: &MemoryStore) -> Option<SlotsRecord> {
        store
            .get(KEY)
            .unwrap()
            .map(|raw| serde_json::from_slice(&raw).unwrap())
    }

    #[test]
    fn validate_names_the_field() {
        policy(1).validate().unwrap();
        policy(MAX_SLOTS).validate().unwrap();
        let name = |policy: BulkheadPolicy| match policy.validate() {
            Err(SettingError::Invalid { name, .. }) => name,
            Ok(()) => panic!("{policy:?} should be invalid"),
        };
        assert_eq!(name(policy(0)), "slots");
        assert_eq!(name(policy(MAX_SLOTS + 1)), "slots");
        assert_eq!(
            name(BulkheadPolicy {
                slots: 1,
                lease_ms: 0
            }),
            "lease_ms"
        );
    }

    #[test]
    fn the_first_use_seeds_the_record() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 2);
        assert_eq!(bulkhead.occupied().unwrap(), 0);
        assert_eq!(stored(&store), None, "occupied writes nothing");
        assert_eq!(store.counter(SEEDED).unwrap(), 0);
        let permit = bulkhead.try_enter().unwrap().unwrap();
        assert_eq!(store.counter(SEEDED).unwrap(), 1);
        assert_eq!(permit.slot(), 0);
        assert_eq!(permit.token(), (1 << 32) + 1);
        assert_eq!(
            stored(&store).unwrap(),
            SlotsRecord {
                generation: (1 << 32) + 1,
                slots: vec![
                    Slot {
                        token: Some(permit.token()),
                        expires_ms: 2_000
                    },
                    Slot::FREE
                ],
            }
        );
        bulkhead.try_enter().unwrap().unwrap();
        assert_eq!(store.counter(SEEDED).unwrap(), 1, "seeded once");
    }

    #[test]
    fn a_lost_seeding_is_redone_by_the_thousandth_sighting() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        // The seeder claimed the seeding and died before writing.
        store.increment(SEEDED, 1).unwrap();
        store.increment(SEEDED, RESEED_EVERY - 1 - 17).unwrap();
        // Nobody compare-and-swaps a missing record: 16 more sightings and no slot.
        assert!(bulkhead.try_enter().unwrap().is_none());
        assert_eq!(stored(&store), None);
        let permit = bulkhead.try_enter().unwrap().expect("the 1000th seeds");
        assert_eq!(permit.token(), (1_000 << 32) + 1);
    }

    #[test]
    fn k_permits_then_none_and_leave_frees_one() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 3);
        let permits: Vec<_> = (0..3)
            .map(|_| bulkhead.try_enter().unwrap().unwrap())
            .collect();
        assert_eq!(
            permits.iter().map(BulkheadPermit::slot).collect::<Vec<_>>(),
            vec![0, 1, 2]
        );
        assert_eq!(bulkhead.occupied().unwrap(), 3);
        let before = store.get(KEY).unwrap();
        assert_eq!(bulkhead.try_enter().unwrap(), None);
        assert_eq!(
            store.get(KEY).unwrap(),
            before,
            "a full bulkhead writes nothing"
        );
        let mut permits = permits.into_iter();
        let _first = permits.next().unwrap();
        bulkhead.leave(permits.next().unwrap()).unwrap();
        assert_eq!(bulkhead.occupied().unwrap(), 2);
        let again = bulkhead.try_enter().unwrap().unwrap();
        assert_eq!(again.slot(), 1);
        assert_eq!(bulkhead.try_enter().unwrap(), None);
    }

    #[test]
    fn renew_extends_a_held_lease() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        let permit = bulkhead.try_enter().unwrap().unwrap();
        clock.advance(900);
        assert!(bulkhead.renew(&permit).unwrap());
        clock.advance(900);
        assert_eq!(bulkhead.occupied().unwrap(), 1);
        assert_eq!(bulkhead.try_enter().unwrap(), None);
        // Expired but not retaken: still its own.
        clock.advance(200);
        assert_eq!(bulkhead.occupied().unwrap(), 0);
        assert!(bulkhead.renew(&permit).unwrap());
        assert_eq!(bulkhead.occupied().unwrap(), 1);
    }

    #[test]
    fn an_expired_lease_is_retaken_and_its_old_holder_changes_nothing() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        let old = bulkhead.try_enter().unwrap().unwrap();
        clock.advance(999);
        assert_eq!(bulkhead.try_enter().unwrap(), None);
        clock.advance(1);
        let new = bulkhead.try_enter().unwrap().expect("the lease expired");
        assert_eq!(new.slot(), old.slot());
        assert_ne!(new.token(), old.token());
        let before = store.get(KEY).unwrap();
        assert!(!bulkhead.renew(&old).unwrap());
        bulkhead.leave(old).unwrap();
        assert_eq!(store.get(KEY).unwrap(), before);
        assert_eq!(bulkhead.occupied().unwrap(), 1);
        assert!(bulkhead.renew(&new).unwrap());
    }

    #[test]
    fn occupied_counts_only_live_leases() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 3);
        let _a = bulkhead.try_enter().unwrap().unwrap();
        clock.advance(500);
        let b = bulkhead.try_enter().unwrap().unwrap();
        let _c = bulkhead.try_enter().unwrap().unwrap();
        bulkhead.leave(b).unwrap();
        assert_eq!(bulkhead.occupied().unwrap(), 2);
        clock.advance(500);
        assert_eq!(bulkhead.occupied().unwrap(), 1);
        clock.advance(500);
        assert_eq!(bulkhead.occupied().unwrap(), 0);
        let generation = stored(&store).unwrap().generation;
        bulkhead.occupied().unwrap();
        assert_eq!(stored(&store).unwrap().generation, generation);
    }

    #[test]
    fn leave_and_renew_without_a_record_change_nothing() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        let permit = bulkhead.try_enter().unwrap().unwrap();
        store.delete_many(&[KEY.into()]).unwrap();
        assert!(!bulkhead.renew(&permit).unwrap());
        bulkhead.leave(permit).unwrap();
        assert_eq!(stored(&store), None);
    }

    /// Queues another instance taking a slot between the caller's read and its swap.
    fn race_enter(store: &MemoryStore, now_ms: u64, slots: u32) -> Arc<Mutex<Option<u64>>> {
        let taken: Arc<Mutex<Option<u64>>> = Arc::default();
        let out = taken.clone();
        store.before_next_compare_and_swap(move |store| {
            let clock = ManualClock::new(now_ms);
            let other = Bulkhead::new(store, &clock, NAME, policy(slots));
            let permit = other.try_enter().unwrap().expect("a free slot");
            *out.lock().unwrap() = Some(u64::from(permit.slot()));
        });
        taken
    }

    #[test]
    fn a_racer_taking_the_last_slot_wins_it_alone() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        bulkhead.occupied().unwrap();
        // Seed first, so the racer runs in the caller's first swap.
        bulkhead
            .leave(bulkhead.try_enter().unwrap().unwrap())
            .unwrap();
        let raced = race_enter(&store, clock.now_ms(), 1);
        assert_eq!(bulkhead.try_enter().unwrap(), None);
        assert_eq!(*raced.lock().unwrap(), Some(0));
        assert_eq!(bulkhead.occupied().unwrap(), 1);
    }

    #[test]
    fn a_racer_never_shares_a_slot() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 2);
        bulkhead
            .leave(bulkhead.try_enter().unwrap().unwrap())
            .unwrap();
        let raced = race_enter(&store, clock.now_ms(), 2);
        let mine = bulkhead.try_enter().unwrap().expect("the other slot");
        assert_eq!(*raced.lock().unwrap(), Some(0));
        assert_eq!(mine.slot(), 1);
        assert_eq!(bulkhead.occupied().unwrap(), 2);
        let record = stored(&store).unwrap();
        assert_eq!(record.slots[1].token, Some(mine.token()));
        assert_ne!(record.slots[0].token, Some(mine.token()));
    }

    #[test]
    fn a_racer_retaking_an_expired_lease_defeats_its_renewal() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 1);
        let permit = bulkhead.try_enter().unwrap().unwrap();
        clock.advance(1_000);
        let raced = race_enter(&store, clock.now_ms(), 1);
        assert!(!bulkhead.renew(&permit).unwrap());
        assert_eq!(*raced.lock().unwrap(), Some(0));
        assert_eq!(bulkhead.occupied().unwrap(), 1);
    }

    #[test]
    fn endless_racers_make_leave_contended() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let bulkhead = bulkhead(&store, &clock, 2);
        let permit = bulkhead.try_enter().unwrap().unwrap();
        for _ in 0..MAX_CAS_ATTEMPTS {
            // Each racer changes the record (as another holder's renewal would).
            store.before_next_compare_and_swap(|store| {
                let mut record = stored(store).unwrap();
                record.generation += 1;
                store.set(KEY, &encode(&record)).unwrap();
            });
        }
        assert!(matches!(
            bulkhead.leave(permit),
            Err(BulkheadError::Contended { attempts: 16, .. })
        ));
    }

    #[test]
    fn a_corrupt_record_is_reported() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        store.set(KEY, b"not json").unwrap();
        let bulkhead = bulkhead(&store, &clock, 1);
        assert!(matches!(
            bulkhead.try_enter(),
            Err(BulkheadError::Corrupt { key, .. }) if key == KEY
        ));
        assert!(matches!(
            bulkhead.occupied(),
            Err(BulkheadError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_record_from_a_larger_policy_keeps_its_live_leases() {
        let (store, clock) = (MemoryStore::new(), ManualClock::new(1_000));
        let wide = bulkhead(&store, &clock, 4);
        let permits: Vec<_> = (0..4).map(|_| wide.try_enter().unwrap().unwrap()).collect();
        let narrow = bulkhead(&store, &clock, 2);
        assert_eq!(narrow.try_enter().unwrap(), None);
        let mut permits = permits.into_iter();
        let (a, b) = (permits.next().unwrap(), permits.next().unwrap());
        wide.leave(a).unwrap();
        wide.leave(b).unwrap();
        assert_eq!(narrow.try_enter().unwrap(), None, "two live leases remain");
        clock.advance(1_000);
        let permit = narrow.try_enter().unwrap().unwrap();
        assert_eq!(permit.slot(), 0);
        // Slots beyond the policy's are dropped once no live lease is left in them.
        assert_eq!(stored(&store).unwrap().slots.len(), 2);
    }

    /// One step of the simulated fleet.
    #[derive(Debug, Clone)]
    enum Step {
        /// Time passes.
        Advance(u64),
        /// A new worker tries to enter while `racers` other workers enter between its read and
        /// its write (a racer queued on a full bulkhead runs at some later write instead).
        Enter { racers: usize },
        /// A holder renews its lease (possibly long after it expired).
        Renew(usize),
        /// A holder leaves (possibly long after its lease expired).
        Leave(usize),
        /// A holder dies: it never renews nor leaves.
        Die(usize),
    }

    fn steps() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (1u64..150).prop_map(Step::Advance),
            4 => (0usize..3).prop_map(|racers| Step::Enter { racers }),
            3 => any::<usize>().prop_map(Step::Renew),
            2 => any::<usize>().prop_map(Step::Leave),
            1 => any::<usize>().prop_map(Step::Die),
        ]
    }

    /// A worker holding a permit, and when it believes its lease ends.
    #[derive(Debug)]
    struct Holder {
        permit: BulkheadPermit,
        expires_ms: u64,
        dead: bool,
    }

    /// Checks that `permit`'s token was never handed out before.
    fn fresh_token(
        tokens: &mut HashSet<u64>,
        permit: BulkheadPermit,
    ) -> Result<BulkheadPermit, TestCaseError> {
        prop_assert!(
            tokens.insert(permit.token()),
            "token {} reissued",
            permit.token()
        );
        Ok(permit)
    }

    /// Holder `index` renews (and leaves if it lost its slot) or leaves.
    fn renew_or_leave(
        bulkhead: &Bulkhead<'_, MemoryStore, ManualClock>,
        holders: &mut Vec<Holder>,
        index: usize,
        renew: bool,
    ) -> Result<(), TestCaseError> {
        let now_ms = bulkhead.clock.now_ms();
        let before = bulkhead.store.get(KEY).unwrap();
        let held = stored(bulkhead.store)
            .unwrap()
            .holds(&holders[index].permit);
        if renew {
            let renewed = bulkhead.renew(&holders[index].permit).unwrap();
            if holders[index].expires_ms > now_ms {
                prop_assert!(renewed, "a live lease was lost");
            }
            if renewed {
                holders[index].expires_ms = now_ms + bulkhead.policy.lease_ms;
                return Ok(());
            }
            if !held {
                prop_assert_eq!(&bulkhead.store.get(KEY).unwrap(), &before);
            }
        }
        // Left, or lost (and it leaves anyway, which must change nothing).
        let holder = holders.remove(index);
        bulkhead.leave(holder.permit).unwrap();
        if !held {
            prop_assert_eq!(bulkhead.store.get(KEY).unwrap(), before);
        }
        Ok(())
    }

    fn run_fleet(policy: &BulkheadPolicy, steps: &[Step]) -> Result<(), TestCaseError> {
        let store = MemoryStore::new();
        let clock = ManualClock::new(1_000_000);
        let bulkhead = Bulkhead::new(&store, &clock, NAME, policy.clone());
        let raced: Arc<Mutex<Vec<Holder>>> = Arc::default();
        let queued = Arc::new(Mutex::new(0_usize));
        let mut holders: Vec<Holder> = Vec::new();
        let mut tokens: HashSet<u64> = HashSet::new();

        for step in steps {
            let now_ms = clock.now_ms();
            match step {
                Step::Advance(ms) => clock.advance(*ms),
                Step::Enter { racers } => {
                    let idle = *queued.lock().unwrap() == 0 && *racers == 0;
                    for _ in 0..*racers {
                        *queued.lock().unwrap() += 1;
                        let (policy, raced, queued) =
                            (policy.clone(), raced.clone(), queued.clone());
                        store.before_next_compare_and_swap(move |store| {
                            *queued.lock().unwrap() -= 1;
                            // Another worker, with the clock as it was when it started.
                            let clock = ManualClock::new(now_ms);
                            let other = Bulkhead::new(store, &clock, NAME, policy.clone());
                            if let Some(permit) = other.try_enter().unwrap() {
                                raced.lock().unwrap().push(Holder {
                                    permit,
                                    expires_ms: now_ms + policy.lease_ms,
                                    dead: false,
                                });
                            }
                        });
                    }
                    match bulkhead.try_enter().unwrap() {
                        Some(permit) => holders.push(Holder {
                            permit: fresh_token(&mut tokens, permit)?,
                            expires_ms: now_ms + policy.lease_ms,
                            dead: false,
                        }),
                        None if idle => {
                            // Refused without contention: every slot held a live lease.
                            let live = holders.iter().filter(|h| h.expires_ms > now_ms).count();
                            prop_assert_eq!(live, policy.slots as usize);
                        }
                        None => {}
                    }
                }
                Step::Renew(pick) | Step::Leave(pick) => {
                    let alive: Vec<usize> =
                        (0..holders.len()).filter(|i| !holders[*i].dead).collect();
                    if !alive.is_empty() {
                        let index = alive[pick % alive.len()];
                        let renew = matches!(step, Step::Renew(_));
                        renew_or_leave(&bulkhead, &mut holders, index, renew)?;
                    }
                }
                Step::Die(pick) => {
                    if !holders.is_empty() {
                        let index = pick % holders.len();
                        holders[index].dead = true;
                    }
                }
            }
            for holder in std::mem::take(&mut *raced.lock().unwrap()) {
                holders.push(Holder {
                    permit: fresh_token(&mut tokens, holder.permit)?,
                    ..holder
                });
            }

            // At most `slots` live leases believed held, never two on one slot, and the store
            // agrees: its live leases are exactly those.
            let now_ms = clock.now_ms();
            let believed: Vec<&Holder> = holders.iter().filter(|h| h.expires_ms > now_ms).collect();
            prop_assert!(
                believed.len() <= policy.slots as usize,
                "{} live",
                believed.len()
            );
            let slots: HashSet<u32> = believed.iter().map(|h| h.permit.slot()).collect();
            prop_assert_eq!(slots.len(), believed.len(), "two holders on one slot");
            prop_assert_eq!(bulkhead.occupied().unwrap() as usize, believed.len());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn the_fleet_never_exceeds_the_slots(
            slots in 1u32..=3,
            lease_ms in 20u64..300,
            steps in proptest::collection::vec(steps(), 1..150),
        ) {
            run_fleet(&BulkheadPolicy { slots, lease_ms }, &steps)?;
        }
    }
}
