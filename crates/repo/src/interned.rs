//! Values made once per process and kept for its life: a statement type's
//! SQL on tokio-postgres, its shape for the N+1 guard. There is one per
//! query type the program contains, so they are never freed, and whoever
//! holds one holds a plain `&'static`, with no reference count.

use std::hash::Hash;
use std::sync::{OnceLock, PoisonError, RwLock};

/// A process-wide table of such values by key. Hashed with foldhash: its
/// keys are type ids, not client input.
pub(crate) struct Interned<K, V: ?Sized + 'static> {
    map: OnceLock<RwLock<foldhash::HashMap<K, &'static V>>>,
}

impl<K: Eq + Hash + Copy, V: ?Sized> Interned<K, V> {
    /// An empty table, for a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            map: OnceLock::new(),
        }
    }

    fn map(&self) -> &RwLock<foldhash::HashMap<K, &'static V>> {
        self.map.get_or_init(Default::default)
    }

    /// The value for `key`, if it was made.
    pub(crate) fn get(&self, key: K) -> Option<&'static V> {
        // Nothing panics while holding the lock, so poisoning cannot leave
        // the map half-written.
        self.map()
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .copied()
    }

    /// The value for `key`, made by `make` the first time. When two threads
    /// make one at once, the first stored stays, so every caller of a key
    /// meets the same value.
    pub(crate) fn get_or_make<E>(
        &self,
        key: K,
        make: impl FnOnce() -> Result<Box<V>, E>,
    ) -> Result<&'static V, E> {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let made = make()?;
        Ok(*self
            .map()
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_insert_with(|| Box::leak(made)))
    }
}

/// One value of an [`Interned`] table kept where it is used (a `static` at
/// a `run!` call site), so that the next use finds it without the table's
/// lock and hash. It keeps the first key it is asked for; other keys (a
/// call site in a generic function sends several query types) go to the
/// table.
pub(crate) struct Remembered<K, V: ?Sized + 'static> {
    kept: OnceLock<(K, &'static V)>,
}

impl<K: Eq + Hash + Copy, V: ?Sized> Remembered<K, V> {
    /// Nothing kept yet, for a `static`.
    pub(crate) const fn new() -> Self {
        Self {
            kept: OnceLock::new(),
        }
    }

    /// The value for `key`: the one kept here, else `table`'s (made by
    /// `make` the first time), which is then kept here if nothing is.
    pub(crate) fn get_or_make<E>(
        &self,
        key: K,
        table: &Interned<K, V>,
        make: impl FnOnce() -> Result<Box<V>, E>,
    ) -> Result<&'static V, E> {
        if let Some(&(kept, value)) = self.kept.get()
            && kept == key
        {
            return Ok(value);
        }
        let value = table.get_or_make(key, make)?;
        let _ = self.kept.set((key, value));
        Ok(value)
    }
}
