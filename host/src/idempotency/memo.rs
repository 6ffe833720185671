//! Recorded pure outcomes, kept in memory as well.
//!
//! A pure outcome never changes once recorded (its key covers the input,
//! the build and the grants), so replaying it from memory is replaying it
//! from the database without the round trip. Bounded, oldest out first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::store::CallRecord;

/// How many pure outcomes the memo keeps.
pub const MEMO_CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct Memo {
    inner: Mutex<(HashMap<String, CallRecord>, VecDeque<String>)>,
}

impl Memo {
    pub(crate) fn get(&self, key: &str) -> Option<CallRecord> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.0.get(key).cloned()
    }

    pub(crate) fn put(&self, row: &CallRecord) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (map, order) = &mut *inner;
        if map.insert(row.key.clone(), row.clone()).is_none() {
            order.push_back(row.key.clone());
        }
        while order.len() > MEMO_CAPACITY {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}
