//! The open handles: tokens handed to C mapped to their shared state. A token is a counter
//! value, never an address, so a stale or made-up token is simply not found.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// Tokens to entries; token 0 (NULL) is never issued.
pub struct Registry<T> {
    inner: Mutex<Inner<T>>,
}

struct Inner<T> {
    /// The last token issued.
    last: usize,
    open: BTreeMap<usize, Arc<T>>,
}

impl<T> Registry<T> {
    /// An empty registry.
    pub const fn new() -> Self {
        Registry {
            inner: Mutex::new(Inner {
                last: 0,
                open: BTreeMap::new(),
            }),
        }
    }

    /// Registers `entry` under a fresh token (never 0, never one in use) and returns it.
    pub fn insert(&self, entry: Arc<T>) -> usize {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let mut token = inner.last;
        loop {
            token = token.wrapping_add(1);
            if token != 0 && !inner.open.contains_key(&token) {
                break;
            }
        }
        inner.last = token;
        inner.open.insert(token, entry);
        token
    }

    /// The entry of `token`, if open (no allocation).
    pub fn get(&self, token: usize) -> Option<Arc<T>> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.open.get(&token).cloned()
    }

    /// Unregisters `token` and returns its entry, if it was open.
    pub fn remove(&self, token: usize) -> Option<Arc<T>> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.open.remove(&token)
    }
}
