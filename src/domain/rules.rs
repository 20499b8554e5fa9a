//! The field rules of request bodies (API.md, "Resources"): one function per
//! rule, named in the bodies' `#[validate]` attributes (`input.rs`), and how
//! a `validator` failure becomes the messages of a `422`.

use validator::{ValidationError, ValidationErrors};

use super::error::FieldErrors;

/// Most characters a URL may have.
const MAX_URL_LEN: usize = 2048;

/// What a `422` says of a position out of range.
const POSITION_RULE: &str = "must be an integer from 0 to 2147483647";

/// Field → messages of every rule a body's derive found broken.
pub(super) fn field_errors(errors: &ValidationErrors) -> FieldErrors {
    errors
        .field_errors()
        .into_iter()
        .map(|(field, errs)| (field.to_string(), errs.iter().map(message_of).collect()))
        .collect()
}

/// A rule's message; the code when it has none.
pub(super) fn message_of(error: &ValidationError) -> String {
    error
        .message
        .as_ref()
        .map_or_else(|| error.code.to_string(), |m| m.to_string())
}

fn rule(message: &'static str) -> ValidationError {
    ValidationError::new("invalid").with_message(message.into())
}

/// A NUL character is refused in every string: PostgreSQL cannot store it in TEXT.
pub(super) fn no_nul(value: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        Err(rule("must not contain a NUL character"))
    } else {
        Ok(())
    }
}

/// The rule of a free-text field: no NUL, and a length in characters (not
/// bytes) within `chars`.
fn length_rule(
    value: &str,
    chars: std::ops::RangeInclusive<usize>,
    message: &'static str,
) -> Result<(), ValidationError> {
    no_nul(value)?;
    if chars.contains(&value.chars().count()) {
        Ok(())
    } else {
        Err(rule(message))
    }
}

pub(super) fn username_rule(value: &str) -> Result<(), ValidationError> {
    no_nul(value)?;
    if is_valid_username(value) {
        Ok(())
    } else {
        Err(rule("must be 3 to 32 characters of a-z, 0-9 and _"))
    }
}

/// The username rule, shared with lookups that must not touch the database or
/// the cache for names that cannot exist.
pub fn is_valid_username(value: &str) -> bool {
    (3..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub(super) fn email_rule(value: &str) -> Result<(), ValidationError> {
    no_nul(value)?;
    if value.chars().count() > 254 {
        return Err(rule("must be at most 254 characters"));
    }
    if validator::ValidateEmail::validate_email(&value) {
        Ok(())
    } else {
        Err(rule("must be a valid email address"))
    }
}

pub(super) fn password_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 8..=128, "must be 8 to 128 characters")
}

pub(super) fn name_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 0..=100, "must be at most 100 characters")
}

pub(super) fn bio_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 0..=500, "must be at most 500 characters")
}

pub(super) fn title_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 1..=100, "must be 1 to 100 characters")
}

pub(super) fn platform_rule(value: &str) -> Result<(), ValidationError> {
    no_nul(value)?;
    let ok = (1..=32).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(rule("must be 1 to 32 characters of a-z, 0-9, _ and -"))
    }
}

/// A link position fits the column (`i32`) and is not negative.
pub(super) fn position_rule(value: i64) -> Result<(), ValidationError> {
    if (0..=i64::from(i32::MAX)).contains(&value) {
        Ok(())
    } else {
        Err(rule(POSITION_RULE))
    }
}

/// Absolute http(s) URLs only: `javascript:`, `data:` and every other scheme
/// would turn a profile link into script or content injection.
pub(super) fn url_rule(value: &str) -> Result<(), ValidationError> {
    no_nul(value)?;
    if value.chars().count() > MAX_URL_LEN {
        return Err(rule("must be at most 2048 characters"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(rule("must be an absolute http or https URL"));
    }
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(rule("must be an absolute http or https URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_rule_refuses_script_and_data_schemes() {
        assert!(url_rule("https://example.com/a?b=c").is_ok());
        assert!(url_rule("http://localhost:8080").is_ok());
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:text/html,<script>",
            "ftp://example.com",
            "/relative",
            "https://",
            "https://exa mple.com",
            "http://example.com/\0",
        ] {
            assert!(url_rule(bad).is_err(), "{bad} accepted");
        }
        assert!(url_rule(&format!("https://e.com/{}", "a".repeat(2048))).is_err());
    }

    #[test]
    fn username_and_platform_rules() {
        assert!(username_rule("abc_123").is_ok());
        for bad in ["ab", "ABC", "a-b-c", &"a".repeat(33), "ümlaut"] {
            assert!(username_rule(bad).is_err(), "{bad} accepted");
        }
        assert!(platform_rule("x").is_ok());
        assert!(platform_rule("mastodon-social_2").is_ok());
        assert!(platform_rule("").is_err());
        assert!(platform_rule("X").is_err());
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(title_rule(&"é".repeat(100)).is_ok());
        assert!(title_rule(&"é".repeat(101)).is_err());
        assert!(password_rule("ééééééé").is_err());
        assert!(password_rule("éééééééé").is_ok());
    }
}
