//! Hiding the password of a connection URL before it reaches a message. Start-up
//! errors and logs name the URL they are about so an operator can see which
//! host or database is wrong; the password must never travel with it, not even
//! when the URL is so broken that it does not parse.
//!
//! A leaf: configuration, the SQL layer and the cache all use it.

/// `url` with its password replaced by `***`. A URL that does not parse is
/// redacted by its shape: anything between `scheme://user:` and the last `@`
/// of the authority is taken to be a password.
pub fn redact_url_password(url: &str) -> String {
    if let Ok(mut parsed) = url::Url::parse(url) {
        if parsed.password().is_some() && parsed.set_password(Some("***")).is_ok() {
            return parsed.to_string();
        }
        if parsed.password().is_none() {
            return parsed.to_string();
        }
    }
    redact_by_shape(url)
}

fn redact_by_shape(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(at) => url.split_at(at + 3),
        None => ("", url),
    };
    // The authority ends at the first '/', '?' or '#' after the last '@'; a
    // password may itself hold any of those, so the last '@' decides.
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    match userinfo.find(':') {
        Some(colon) => format!("{scheme}{}:***{}", &userinfo[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url_password;

    #[test]
    fn a_password_is_replaced() {
        let shown = redact_url_password("postgres://app:s3cr%40t@db.example.com:5432/linkhub");
        assert_eq!(shown, "postgres://app:***@db.example.com:5432/linkhub");
        let shown = redact_url_password("rediss://:hunter2@cache.example.com:6380");
        assert_eq!(shown, "rediss://:***@cache.example.com:6380");
    }

    #[test]
    fn a_url_without_password_is_unchanged() {
        let url = "postgres://postgres@127.0.0.1:5432/linkhub?sslmode=require";
        assert_eq!(redact_url_password(url), url);
    }

    #[test]
    fn an_unparseable_url_loses_its_password_too() {
        for (url, secret) in [
            ("postgres://app:pa/ss@wo?rd@[::1:5432/db", "pa/ss@wo?rd"),
            ("redis://u:hunter2@host:notaport", "hunter2"),
            ("mysql//u:topsecret@host", "topsecret"),
        ] {
            let shown = redact_url_password(url);
            assert!(!shown.contains(secret), "{url} shown as {shown}");
            assert!(shown.contains("***"), "{shown}");
        }
    }
}
