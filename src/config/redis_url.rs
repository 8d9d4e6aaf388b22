//! Redis URLs as kombu and redis-py read them: `redis://[user:pass@]host[:port][/db]`,
//! `redis+socket:///path/to.sock[?virtual_host=db]`, and `rediss://…` (TLS) with redis-py's
//! query options `ssl_cert_reqs` (`required` by default, `optional`, `none`), `ssl_ca_certs`,
//! `ssl_certfile`, `ssl_keyfile`.

use std::fmt;

/// Where and how to connect.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RedisUrl {
    /// Where the server listens.
    pub addr: RedisAddr,
    /// The ACL user, if any.
    pub username: Option<String>,
    /// The password, if any (never printed: see `redacted`).
    pub password: Option<String>,
    /// The database number (`/N` or `?virtual_host=N`).
    pub db: u32,
    /// `Some` for `rediss://`.
    pub tls: Option<TlsOptions>,
}

/// TLS settings of a `rediss://` URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// Verify the server certificate (`ssl_cert_reqs=required`, the default). `none` turns
    /// verification off: for test set-ups only.
    pub verify: bool,
    /// PEM file of trusted CAs; the system's roots when absent.
    pub ca_certs: Option<String>,
    /// Client certificate and key (PEM), for servers that require client authentication.
    pub certfile: Option<String>,
    /// The client key (`ssl_keyfile`), with `ssl_certfile`.
    pub keyfile: Option<String>,
}

/// TCP host and port, or a Unix socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RedisAddr {
    /// A TCP host and port.
    Tcp(String, u16),
    /// A Unix socket path.
    Unix(String),
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `host[:port]` or `[v6 address][:port]`: the host and the port text, if any.
pub(super) fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>), String> {
    Ok(match hostport.strip_prefix('[') {
        Some(h) => {
            let (h, p) = h.split_once(']').ok_or("unclosed [ in an IPv6 host")?;
            (h, p.strip_prefix(':'))
        }
        None => match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        },
    })
}

/// redis-py's TLS query options (kombu reads the same names on `amqps://`).
pub(super) fn tls_options(query: &str) -> Result<TlsOptions, String> {
    let mut t = TlsOptions { verify: true, ..TlsOptions::default() };
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = pct_decode(v);
        match k {
            "ssl_cert_reqs" => {
                t.verify = match v.to_ascii_lowercase().as_str() {
                    "required" | "cert_required" | "optional" | "cert_optional" => true,
                    "none" | "cert_none" => false,
                    other => return Err(format!("ssl_cert_reqs={other:?}: use required, optional or none")),
                }
            }
            "ssl_ca_certs" => t.ca_certs = Some(v),
            "ssl_certfile" => t.certfile = Some(v),
            "ssl_keyfile" => t.keyfile = Some(v),
            _ => {}
        }
    }
    if t.certfile.is_some() != t.keyfile.is_some() {
        return Err("ssl_certfile and ssl_keyfile go together".into());
    }
    Ok(t)
}

impl RedisUrl {
    /// Parses a URL; the error says what is wrong in words.
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) = url.split_once("://").ok_or("expected redis://host[:port][/db]")?;
        match scheme {
            "redis" => {}
            "redis+socket" | "unix" => {
                let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
                if path.is_empty() {
                    return Err("redis+socket:// needs a socket path, e.g. redis+socket:///run/redis.sock".into());
                }
                let mut db = 0;
                for kv in query.split('&').filter(|s| !s.is_empty()) {
                    if let Some(v) = kv.strip_prefix("virtual_host=").or_else(|| kv.strip_prefix("db=")) {
                        db = v.parse().map_err(|_| format!("database {v:?} is not a number"))?;
                    }
                }
                return Ok(RedisUrl {
                    addr: RedisAddr::Unix(path.to_owned()),
                    username: None,
                    password: None,
                    db,
                    tls: None,
                });
            }
            "rediss" => {}
            other => return Err(format!("not a Redis URL scheme: {other:?}")),
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let rest = rest.split('#').next().unwrap_or("");
        let tls = if scheme == "rediss" { Some(tls_options(query)?) } else { None };
        let (auth, hostpart) = match rest.rsplit_once('@') {
            Some((a, h)) => (Some(a), h),
            None => (None, rest),
        };
        let (hostport, db) = match hostpart.split_once('/') {
            Some((hp, db)) if !db.is_empty() => {
                (hp, db.parse::<u32>().map_err(|_| format!("database {db:?} is not a number (redis://host:port/DB)"))?)
            }
            Some((hp, _)) => (hp, 0),
            None => (hostpart, 0),
        };
        let (host, port) = split_host_port(hostport)?;
        let host = host.to_owned();
        let port = match port {
            Some(p) if !p.is_empty() => {
                p.parse::<u16>().map_err(|_| format!("port {p:?} is not a number from 1 to 65535"))?
            }
            _ => 6379,
        };
        let host = if host.is_empty() { "localhost".to_owned() } else { host };
        let (username, password) = match auth {
            None => (None, None),
            Some(a) => match a.split_once(':') {
                Some((u, p)) => ((!u.is_empty()).then(|| pct_decode(u)), Some(pct_decode(p))),
                None => (None, Some(pct_decode(a))),
            },
        };
        Ok(RedisUrl { addr: RedisAddr::Tcp(host, port), username, password, db, tls })
    }

    /// The URL with the password hidden, for banners and logs.
    pub fn redacted(&self) -> String {
        let auth = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:**@"),
            (None, Some(_)) => ":**@".to_owned(),
            _ => String::new(),
        };
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        match &self.addr {
            RedisAddr::Tcp(h, p) => format!("{scheme}://{auth}{h}:{p}/{}", self.db),
            RedisAddr::Unix(path) => format!("redis+socket://{path}?virtual_host={}", self.db),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kombu_accepts() {
        let u = RedisUrl::parse("redis://127.0.0.1:6380/15").unwrap();
        assert_eq!((u.addr.clone(), u.db), (RedisAddr::Tcp("127.0.0.1".into(), 6380), 15));
        let u = RedisUrl::parse("redis://:s%40cret@host").unwrap();
        assert_eq!((u.password.as_deref(), u.username.as_deref(), u.db), (Some("s@cret"), None, 0));
        assert_eq!(u.addr, RedisAddr::Tcp("host".into(), 6379));
        let u = RedisUrl::parse("redis://user:pw@[::1]:7000/2").unwrap();
        assert_eq!((u.addr, u.username.as_deref(), u.db), (RedisAddr::Tcp("::1".into(), 7000), Some("user"), 2));
        let u = RedisUrl::parse("redis+socket:///tmp/r.sock?virtual_host=3").unwrap();
        assert_eq!((u.addr, u.db), (RedisAddr::Unix("/tmp/r.sock".into()), 3));
        assert!(RedisUrl::parse("redis://localhost:port").unwrap_err().contains("port"));
        assert!(RedisUrl::parse("redis://localhost/x").unwrap_err().contains("database"));
        let t = RedisUrl::parse("rediss://h:6380/1?ssl_cert_reqs=none&ssl_ca_certs=%2Fca.pem").unwrap();
        assert_eq!(
            t.tls,
            Some(TlsOptions { verify: false, ca_certs: Some("/ca.pem".into()), certfile: None, keyfile: None })
        );
        assert!(RedisUrl::parse("rediss://h").unwrap().tls.unwrap().verify);
        assert!(RedisUrl::parse("rediss://h?ssl_cert_reqs=maybe").unwrap_err().contains("ssl_cert_reqs"));
        assert!(RedisUrl::parse("rediss://h?ssl_certfile=a").unwrap_err().contains("together"));
        assert_eq!(RedisUrl::parse("redis://u:pw@h:1/2").unwrap().redacted(), "redis://u:**@h:1/2");
    }
}
