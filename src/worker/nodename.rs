//! Node names as Celery expands them (`-n w1@%h`): `%h` host name, `%n` its first label, `%d`
//! the domain, `%%` a percent sign. A name without `@` gets `@<host>` appended.

/// Expands `%h`, `%n`, `%d` in `pattern` for `host`.
pub fn expand_nodename(pattern: &str, host: &str) -> String {
    let (short, domain) = host.split_once('.').unwrap_or((host, ""));
    let mut out = String::with_capacity(pattern.len() + host.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('h') => out.push_str(host),
            Some('n') => out.push_str(short),
            Some('d') => out.push_str(domain),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    if !out.contains('@') {
        out = format!("{out}@{host}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_like_celery() {
        assert_eq!(expand_nodename("w1@%h", "box.example.com"), "w1@box.example.com");
        assert_eq!(expand_nodename("w1@%n", "box.example.com"), "w1@box");
        assert_eq!(expand_nodename("%n@%d", "box.example.com"), "box@example.com");
        assert_eq!(expand_nodename("worker", "box"), "worker@box");
        assert_eq!(expand_nodename("a%%b@%h", "box"), "a%b@box");
    }
}
