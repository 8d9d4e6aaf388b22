//! Checks made at start, before a worker says it is ready: does the server answer, and are the
//! TLS files of a `rediss://` URL usable.

use super::{blocking, RedisUrl};
use crate::transport::tls;

/// Why a Redis server cannot be used, at a worker's start: `Err(true)` with a reason when
/// retrying cannot help (a refused password, a missing database), `Err(false)` when it may
/// (refused connection, loading data).
pub fn check(url: &RedisUrl) -> Result<(), (bool, String)> {
    blocking::ping(url).map_err(|e| {
        let why = e.to_string();
        let fatal = ["WRONGPASS", "NOAUTH", "NOPERM", "invalid password", "invalid username", "DB index"]
            .iter()
            .any(|m| why.contains(m));
        (fatal, why)
    })
}

/// Checks a `rediss://` URL's TLS files at start, so a wrong path fails `build()` instead of the
/// first connection.
pub fn check_tls(url: &RedisUrl) -> Result<(), String> {
    match &url.tls {
        Some(t) => tls::client_config(t).map(|_| ()),
        None => Ok(()),
    }
}
