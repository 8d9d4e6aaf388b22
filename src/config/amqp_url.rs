//! AMQP URLs as kombu reads them: `amqp://[user[:password]@]host[:port][/vhost][?options]`, with
//! `pyamqp://` and `librabbitmq://` as aliases of `amqp://` and `amqps://` for TLS. kombu's
//! defaults: `guest`/`guest` on `localhost:5672` (5671 with TLS), virtual host `/`. The path
//! after the first `/` is the vhost, percent-decoded (`amqp://h//` and `amqp://h/%2F` both name
//! `/`; `amqp://h/` and `amqp://h` name `/` too, as in kombu). Options: `heartbeat` (seconds),
//! `frame_max`, `channel_max`, `connection_timeout`.

use std::fmt;
use std::time::Duration;

/// Where and how to reach RabbitMQ.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AmqpUrl {
    /// TLS (`amqps://`, or `broker_use_ssl`): how the server certificate is checked, from the
    /// query's `ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` (redis-py's names).
    pub tls: Option<super::TlsOptions>,
    /// The host name or address.
    pub host: String,
    /// The port (5672, or 5671 with TLS, when absent).
    pub port: u16,
    /// The user (`guest` when absent).
    pub user: String,
    /// The password (`guest` when absent; never printed: see `redacted`).
    pub password: String,
    /// The virtual host.
    pub vhost: String,
    /// The heartbeat interval asked for in seconds (`broker_heartbeat`, 120 by default; 0: off).
    pub heartbeat: u16,
    /// The largest frame asked for (131072 by default, RabbitMQ's own).
    pub frame_max: u32,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl fmt::Debug for AmqpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn pct_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(|| format!("bad percent escape in {s:?}"))?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad percent escape %{hex} in {s:?}"))?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

impl AmqpUrl {
    /// Parses `amqp://`, `amqps://`, `pyamqp://` or `librabbitmq://`.
    pub fn parse(url: &str) -> Result<AmqpUrl, String> {
        let (scheme, rest) = url.split_once("://").ok_or("expected amqp://…")?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let tls = match scheme {
            "amqp" | "pyamqp" | "librabbitmq" => None,
            "amqps" => Some(super::redis_url::tls_options(query)?),
            other => return Err(format!("{other}:// is not an AMQP scheme")),
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = authority.rsplit_once('@').unwrap_or(("", authority));
        let (user, password) = match userinfo.split_once(':') {
            Some((u, p)) => (pct_decode(u)?, pct_decode(p)?),
            None if userinfo.is_empty() => ("guest".to_owned(), "guest".to_owned()),
            None => (pct_decode(userinfo)?, "guest".to_owned()),
        };
        let default_port = if tls.is_some() { 5671 } else { 5672 };
        let (host, port) = super::redis_url::split_host_port(hostport)?;
        let port = match port {
            None | Some("") => default_port,
            Some(p) => p.parse().map_err(|_| format!("port {p:?} is not a number"))?,
        };
        let host = if host.is_empty() { "localhost".to_owned() } else { pct_decode(host)? };
        let vhost = if path.is_empty() { "/".to_owned() } else { pct_decode(path)? };
        let mut u = AmqpUrl {
            tls,
            host,
            port,
            user,
            password,
            vhost,
            heartbeat: 120,
            frame_max: 131_072,
            connect_timeout: Duration::from_secs(4),
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let bad = || format!("option {k}={v:?} is not a number");
            match k {
                "heartbeat" => u.heartbeat = v.parse::<f64>().map_err(|_| bad())?.round() as u16,
                "frame_max" => u.frame_max = v.parse().map_err(|_| bad())?,
                "connection_timeout" | "connect_timeout" => {
                    u.connect_timeout = Duration::from_secs_f64(v.parse().map_err(|_| bad())?)
                }
                // kombu's TLS and client options celeriac does not act on are accepted, as kombu
                // accepts unknown ones.
                _ => {}
            }
        }
        Ok(u)
    }

    /// The URL with the password hidden, for logs and errors.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls.is_some() { "amqps" } else { "amqp" };
        let vhost = if self.vhost == "/" { "/".to_owned() } else { self.vhost.replace('/', "%2F") };
        format!("{scheme}://{}:**@{}:{}/{vhost}", self.user, self.host, self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kombu_defaults_and_vhosts() {
        let u = AmqpUrl::parse("amqp://").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_str(), u.password.as_str()),
            ("localhost", 5672, "guest", "guest")
        );
        assert_eq!(u.vhost, "/");
        assert_eq!(AmqpUrl::parse("pyamqp://u:p%40ss@h:1234//").unwrap().vhost, "/");
        let u = AmqpUrl::parse("amqps://u:p%40ss@h/prod?heartbeat=10").unwrap();
        assert_eq!(
            (u.tls.is_some(), u.port, u.password.as_str(), u.vhost.as_str(), u.heartbeat),
            (true, 5671, "p@ss", "prod", 10)
        );
        let t = AmqpUrl::parse("amqps://h/?ssl_cert_reqs=none&ssl_ca_certs=%2Fca.pem").unwrap().tls.unwrap();
        assert_eq!((t.verify, t.ca_certs.as_deref()), (false, Some("/ca.pem")));
        assert_eq!(AmqpUrl::parse("amqp://h/%2Fa").unwrap().vhost, "/a");
        assert_eq!(AmqpUrl::parse("librabbitmq://[::1]:5673/").unwrap().host, "::1");
        assert!(!u.redacted().contains("p@ss"));
        assert!(AmqpUrl::parse("amqp://h:x/").unwrap_err().contains("not a number"));
    }
}
