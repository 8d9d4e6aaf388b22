//! Locking a `std::sync::Mutex` whose holders only swap whole values, so a poisoned lock's data
//! is as good as any (the waiter lists, the heartbeat registry, the client timer).

/// Locks `m`, taking the data of a poisoned lock as it is.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
