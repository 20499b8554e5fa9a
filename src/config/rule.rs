//! How one variable's text becomes its typed value: what an unset or blank
//! variable means (the default), which text is accepted, and the bound the
//! value must keep. The settings table in `mod.rs` gives each variable one
//! [`Rule`]; this file is that table's vocabulary, so a new setting is one
//! line there and, only for a new kind of value, a constructor here.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::{ConfigError, Secret};

/// What the refusal of a value that must not be zero says.
const GREATER_THAN_ZERO: &str = "a value greater than 0";

/// The URL schemes of PostgreSQL.
pub const POSTGRES: &[&str] = &["postgres", "postgresql"];
/// The URL schemes of Redis (`rediss` is Redis over TLS).
pub const REDIS: &[&str] = &["redis", "rediss"];
/// The URL schemes of an HTTP endpoint (an OTLP collector).
pub const HTTP: &[&str] = &["http", "https"];

/// The (non-blank) text of a variable to its value, or to the text its
/// refusal shows (a URL's password masked, a list whole).
type Parse<T> = Box<dyn Fn(&str) -> Result<T, String>>;

/// How one variable becomes a `T`. Built by a constructor per kind of value
/// ([`Rule::number`], [`Rule::seconds`], [`Rule::url`], ...), then read once
/// by [`Rule::read`].
pub struct Rule<T> {
    /// The value of an unset or blank variable.
    default: T,
    parse: Parse<T>,
    /// What the refusal asks for instead.
    expected: &'static str,
    /// Set by [`Rule::positive`]: sizes, timeouts and windows of 0 make no sense.
    is_zero: Option<fn(&T) -> bool>,
}

impl<T> Rule<T> {
    fn new(
        default: T,
        expected: &'static str,
        parse: impl Fn(&str) -> Result<T, String> + 'static,
    ) -> Self {
        Self {
            default,
            parse: Box::new(parse),
            expected,
            is_zero: None,
        }
    }

    /// Asks for `expected` in the refusal, instead of the kind's own words.
    pub fn expecting(mut self, expected: &'static str) -> Self {
        self.expected = expected;
        self
    }

    /// Refuses 0 (the default included: a rule is checked whole).
    pub fn positive(mut self) -> Self
    where
        T: Zero,
    {
        self.is_zero = Some(T::is_zero);
        self
    }

    /// The value of variable `name` whose text is `raw`: the default when it
    /// is unset or blank, else its parse. A text that does not parse, or a
    /// value out of bounds, is refused with `name`, so the operator knows
    /// which variable to fix.
    pub fn read(self, name: &'static str, raw: Option<String>) -> Result<T, ConfigError> {
        let value = match raw.filter(|v| !v.trim().is_empty()) {
            None => self.default,
            Some(raw) => (self.parse)(&raw).map_err(|value| ConfigError {
                name,
                value,
                expected: self.expected,
            })?,
        };
        if self.is_zero.is_some_and(|is_zero| is_zero(&value)) {
            return Err(ConfigError {
                name,
                value: "0".to_owned(),
                expected: GREATER_THAN_ZERO,
            });
        }
        Ok(value)
    }
}

impl<T: FromStr + 'static> Rule<T> {
    /// A number, surrounding blanks aside.
    pub fn number(default: T, expected: &'static str) -> Self {
        Self::new(default, expected, parse_trimmed)
    }

    /// One word of a closed set (`T`'s `FromStr` knows which), surrounding
    /// blanks aside.
    pub fn word(default: T, expected: &'static str) -> Self {
        Self::new(default, expected, parse_trimmed)
    }
}

impl Rule<Duration> {
    /// A duration counted in whole seconds.
    pub fn seconds(default: u64) -> Self {
        Self::new(Duration::from_secs(default), "seconds", |raw| {
            parse_trimmed(raw).map(Duration::from_secs)
        })
    }

    /// A duration counted in milliseconds.
    pub fn millis(default: u64) -> Self {
        Self::new(Duration::from_millis(default), "milliseconds", |raw| {
            parse_trimmed(raw).map(Duration::from_millis)
        })
    }

    /// Refuses a value above `max`, asking for `expected` instead (the
    /// default is the table's own, not checked).
    pub fn at_most(mut self, max: Duration, expected: &'static str) -> Self {
        let parse = self.parse;
        self.parse = Box::new(move |raw| {
            parse(raw).and_then(|value| {
                if value <= max {
                    Ok(value)
                } else {
                    Err(raw.to_owned())
                }
            })
        });
        self.expected = expected;
        self
    }
}

impl Rule<f64> {
    /// A share, from 0 to 1 inclusive (`0.01` is one in a hundred).
    pub fn fraction(default: f64) -> Self {
        Self::new(default, "a number from 0 to 1", |raw| {
            parse_trimmed::<f64>(raw)
                .ok()
                .filter(|share| (0.0..=1.0).contains(share))
                .ok_or_else(|| raw.to_owned())
        })
    }
}

impl Rule<bool> {
    /// `true`, `1`, `yes`, `on` or `false`, `0`, `no`, `off`, in any case.
    pub fn flag(default: bool) -> Self {
        Self::new(default, "true or false", |raw| {
            let word = raw.trim().to_ascii_lowercase();
            match word.as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(word),
            }
        })
    }
}

impl Rule<String> {
    /// Any text, as given.
    pub fn text(default: &str) -> Self {
        Self::new(default.to_owned(), "", |raw| Ok(raw.to_owned()))
    }

    /// A URL of one of `schemes`, as given; a refused one is shown without its password.
    pub fn url(default: &str, schemes: &'static [&'static str]) -> Self {
        Self::new(default.to_owned(), URL_EXPECTED, move |raw| {
            checked_url(raw, schemes).map(str::to_owned)
        })
    }

    /// The prefix of every Redis key: letters, digits, `_` and `-` only,
    /// because it becomes part of SCAN patterns (a `*` would match other
    /// prefixes' keys).
    pub fn key_prefix(default: &str) -> Self {
        Self::new(
            default.to_owned(),
            "letters, digits, '_' or '-' (it becomes part of SCAN patterns)",
            |raw| {
                let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
                if raw.bytes().all(allowed) {
                    Ok(raw.to_owned())
                } else {
                    Err(raw.to_owned())
                }
            },
        )
    }
}

impl Rule<Option<String>> {
    /// Any text, surrounding blanks aside; unset means none.
    pub fn optional_text() -> Self {
        Self::new(None, "", |raw| Ok(Some(raw.trim().to_owned())))
    }

    /// A URL of one of `schemes`, as given; unset means none.
    pub fn optional_url(schemes: &'static [&'static str]) -> Self {
        Self::new(None, "an http:// or https:// URL", move |raw| {
            checked_url(raw.trim(), schemes).map(|url| Some(url.to_owned()))
        })
    }
}

impl Rule<Option<Secret>> {
    /// A secret, as given (a blank one is unset); never shown, not even when
    /// refused (it is not refused).
    pub fn secret() -> Self {
        Self::new(None, "", |raw| Ok(Some(Secret(raw.to_owned()))))
    }
}

impl Rule<Option<PathBuf>> {
    /// A file path, surrounding blanks aside; unset means none.
    pub fn path() -> Self {
        Self::new(None, "", |raw| Ok(Some(PathBuf::from(raw.trim()))))
    }
}

impl Rule<Vec<String>> {
    /// Comma-separated URLs of `schemes`; unset means none.
    pub fn urls(schemes: &'static [&'static str]) -> Self {
        Self::new(Vec::new(), URL_EXPECTED, move |raw| {
            list(raw)
                .map(|url| checked_url(url, schemes).map(str::to_owned))
                .collect()
        })
    }

    /// Comma-separated bare origins (`scheme://host[:port]`, http or https,
    /// no path): exactly what a browser sends in `Origin`. A trailing `/` is
    /// forgiven.
    pub fn origins() -> Self {
        Self::new(
            Vec::new(),
            "comma-separated origins such as https://app.example.com (scheme, host and port only)",
            |raw| {
                list(raw)
                    .map(|origin| {
                        let origin = origin.trim_end_matches('/');
                        let bare = url::Url::parse(origin).is_ok_and(|u| {
                            matches!(u.scheme(), "http" | "https")
                                && u.origin().ascii_serialization() == origin
                        });
                        bare.then(|| origin.to_owned())
                            .ok_or_else(|| raw.to_owned())
                    })
                    .collect()
            },
        )
    }
}

impl Rule<Vec<ipnet::IpNet>> {
    /// Comma-separated IP addresses or CIDR networks (`10.0.0.0/8, 192.0.2.7,
    /// ::1`); a bare address is a network of one. Unset means none.
    pub fn networks() -> Self {
        Self::new(
            Vec::new(),
            "comma-separated IP addresses or CIDR networks such as 10.0.0.0/8,192.0.2.7",
            |raw| {
                list(raw)
                    .map(|entry| {
                        entry
                            .parse::<ipnet::IpNet>()
                            .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                            .map_err(|_| raw.to_owned())
                    })
                    .collect()
            },
        )
    }
}

/// A value a [`Rule::positive`] can refuse.
pub trait Zero {
    /// Whether the value is 0.
    fn is_zero(&self) -> bool;
}

impl Zero for Duration {
    fn is_zero(&self) -> bool {
        Duration::is_zero(self)
    }
}

impl Zero for u32 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl Zero for u64 {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

impl Zero for usize {
    fn is_zero(&self) -> bool {
        *self == 0
    }
}

const URL_EXPECTED: &str = "a URL such as postgres://user@host:5432/db or redis://host:6379";

/// `raw`, surrounding blanks aside, as a `T`; refused, `raw` as given.
fn parse_trimmed<T: FromStr>(raw: &str) -> Result<T, String> {
    raw.trim().parse().map_err(|_| raw.to_owned())
}

/// The entries of a comma-separated list, blanks and empty entries aside.
fn list(raw: &str) -> impl Iterator<Item = &str> {
    raw.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
}

/// `url` when it parses with one of `schemes`; refused, the URL without its password.
fn checked_url<'a>(url: &'a str, schemes: &[&str]) -> Result<&'a str, String> {
    if url::Url::parse(url).is_ok_and(|u| schemes.contains(&u.scheme())) {
        Ok(url)
    } else {
        Err(crate::redact::redact_url_password(url))
    }
}
