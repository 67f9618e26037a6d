//! State kept per Tokio runtime, shared by the Redis and RabbitMQ transports.
//!
//! A connection of either client is driven by tasks of the runtime that made it, and dies with
//! that runtime; so each runtime that uses a transport (the CLI uses several current-thread
//! runtimes) gets connection state of its own, made on first use. [`PerRuntime`] keeps that
//! state for a bounded number of runtimes and knows nothing of either backend: what a backend
//! keeps per runtime, and how it closes what is evicted, is its own business.

use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::runtime::{Handle, Id as RuntimeId};

/// What [`PerRuntime`] needs to know of the state it keeps.
pub(crate) trait CacheSlot {
    /// Whether this state is worth nothing any more (its connection is dead, most likely
    /// because its runtime ended): such state is evicted before the oldest.
    fn is_stale(&self) -> bool {
        false
    }
}

/// State kept per Tokio runtime, for at most `max` runtimes. Beyond that, making room evicts
/// the first [stale](CacheSlot::is_stale) state, else the state of the runtime that came
/// first.
pub(crate) struct PerRuntime<S> {
    max: usize,
    /// In the order the runtimes came.
    slots: Mutex<Vec<(RuntimeId, S)>>,
}

impl<S: CacheSlot> PerRuntime<S> {
    pub(crate) fn new(max: usize) -> Self {
        assert!(max > 0, "a runtime cache must hold at least one runtime");
        PerRuntime {
            max,
            slots: Mutex::new(Vec::new()),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<(RuntimeId, S)>> {
        // Nothing here can panic half-way through an update (the `f` of the backends'
        // `with_current` calls only take or put back connections and counters).
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `f` on the state of the current runtime, made by `make` (given the runtime's handle)
    /// if the runtime has none yet. Returns `f`'s value and the state evicted to make room,
    /// if any, for the caller to close — outside the lock, which is held while `make` and `f`
    /// run (keep them short). `None` outside a Tokio runtime.
    pub(crate) fn with_current<T>(
        &self,
        make: impl FnOnce(Handle) -> S,
        f: impl FnOnce(&mut S) -> T,
    ) -> Option<(T, Option<S>)> {
        let handle = Handle::try_current().ok()?;
        let runtime = handle.id();
        let mut slots = self.slots();
        let mut evicted = None;
        let index = match slots.iter().position(|(id, _)| *id == runtime) {
            Some(index) => index,
            None => {
                if slots.len() >= self.max {
                    let victim = slots
                        .iter()
                        .position(|(_, state)| state.is_stale())
                        .unwrap_or(0);
                    evicted = Some(slots.remove(victim).1);
                }
                slots.push((runtime, make(handle)));
                slots.len() - 1
            }
        };
        Some((f(&mut slots[index].1), evicted))
    }

    /// Takes the state of every runtime out of the cache, oldest first (for a dropped
    /// transport to close its connections).
    pub(crate) fn drain(&mut self) -> Vec<S> {
        let slots = self.slots.get_mut().unwrap_or_else(PoisonError::into_inner);
        slots.drain(..).map(|(_, state)| state).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct State {
        name: &'static str,
        stale: bool,
    }

    impl CacheSlot for State {
        fn is_stale(&self) -> bool {
            self.stale
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    /// Names the current runtime's state `name` if it is new; returns its name and the
    /// evicted state's.
    fn visit(
        cache: &PerRuntime<State>,
        rt: &tokio::runtime::Runtime,
        name: &'static str,
    ) -> (&'static str, Option<&'static str>) {
        let _entered = rt.enter();
        let (seen, evicted) = cache
            .with_current(
                |handle| {
                    assert_eq!(handle.id(), rt.handle().id(), "made with its own runtime");
                    State { name, stale: false }
                },
                |state| state.name,
            )
            .expect("inside a runtime");
        (seen, evicted.map(|state| state.name))
    }

    #[test]
    fn each_runtime_has_its_own_state() {
        let cache = PerRuntime::new(2);
        let (a, b) = (runtime(), runtime());
        assert_eq!(visit(&cache, &a, "a"), ("a", None));
        assert_eq!(visit(&cache, &b, "b"), ("b", None));
        // Known runtimes keep their state: `make` is not called again.
        assert_eq!(visit(&cache, &a, "a2"), ("a", None));
        assert_eq!(visit(&cache, &b, "b2"), ("b", None));
    }

    #[test]
    fn a_full_cache_evicts_the_oldest_and_returns_it() {
        let cache = PerRuntime::new(2);
        let (a, b, c) = (runtime(), runtime(), runtime());
        visit(&cache, &a, "a");
        visit(&cache, &b, "b");
        // Using `a` again does not make it younger: age is the order of arrival.
        visit(&cache, &a, "a");
        assert_eq!(visit(&cache, &c, "c"), ("c", Some("a")));
        // `a` starts afresh, evicting `b`, now the oldest.
        assert_eq!(visit(&cache, &a, "a2"), ("a2", Some("b")));
        assert_eq!(visit(&cache, &c, "c2"), ("c", None));
    }

    #[test]
    fn a_stale_state_is_evicted_before_the_oldest() {
        let cache = PerRuntime::new(2);
        let (a, b, c) = (runtime(), runtime(), runtime());
        visit(&cache, &a, "a");
        visit(&cache, &b, "b");
        {
            let _entered = b.enter();
            cache.with_current(|_| unreachable!(), |state| state.stale = true);
        }
        assert_eq!(visit(&cache, &c, "c"), ("c", Some("b")));
        assert_eq!(visit(&cache, &a, "a2"), ("a", None));
    }

    #[test]
    fn nothing_is_kept_outside_a_runtime() {
        let mut cache = PerRuntime::new(2);
        let made = cache.with_current(
            |_| State {
                name: "none",
                stale: false,
            },
            |state| state.name,
        );
        assert!(made.is_none());
        assert!(cache.drain().is_empty());
    }

    #[test]
    fn drain_takes_every_state_oldest_first() {
        let mut cache = PerRuntime::new(3);
        let (a, b) = (runtime(), runtime());
        visit(&cache, &a, "a");
        visit(&cache, &b, "b");
        let names: Vec<_> = cache.drain().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert!(cache.drain().is_empty());
        // The cache is usable again afterwards.
        assert_eq!(visit(&cache, &a, "a2"), ("a2", None));
    }
}
