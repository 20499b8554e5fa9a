//! Request bodies and their field rules (API.md, "Resources"). Bodies are
//! deserialized strictly (unknown fields are a `400`), then validated once
//! here into `422` details; past this module every value is known to be valid.

use serde::Deserialize;
use utoipa::ToSchema;
use validator::{Validate, ValidationError, ValidationErrors};

use crate::error::{ApiError, FieldErrors};

/// Most characters a URL may have.
const MAX_URL_LEN: usize = 2048;

/// What a `422` says of a position out of range.
const POSITION_RULE: &str = "must be an integer from 0 to 2147483647";

/// `POST /users`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    #[validate(custom(function = "username_rule"))]
    #[schema(pattern = "^[a-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: String,
    #[validate(custom(function = "email_rule"))]
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    #[validate(custom(function = "password_rule"))]
    #[schema(min_length = 8, max_length = 128, format = "password")]
    pub password: String,
    #[validate(custom(function = "name_rule"))]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[validate(custom(function = "bio_rule"))]
    #[schema(max_length = 500)]
    pub bio: Option<String>,
    #[validate(custom(function = "url_rule"))]
    #[schema(format = "uri", max_length = 2048, nullable)]
    pub avatar_url: Option<String>,
}

/// `PATCH /users/{id}`: every field optional; `avatar_url: null` clears the avatar.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchInput {
    #[validate(custom(function = "username_rule"))]
    #[schema(pattern = "^[a-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: Option<String>,
    #[validate(custom(function = "email_rule"))]
    #[schema(format = "email", max_length = 254)]
    pub email: Option<String>,
    #[validate(custom(function = "password_rule"))]
    #[schema(min_length = 8, max_length = 128, format = "password")]
    pub password: Option<String>,
    #[validate(custom(function = "name_rule"))]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[validate(custom(function = "bio_rule"))]
    #[schema(max_length = 500)]
    pub bio: Option<String>,
    /// Absent: unchanged; `null`: removed; a string: replaced.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>, format = "uri", max_length = 2048, nullable)]
    pub avatar_url: Option<Option<String>>,
    /// The password as it is now: needed to change one's own `password` or
    /// `email` (not for an admin changing another user's).
    #[validate(custom(function = "no_nul"))]
    #[schema(format = "password")]
    pub current_password: Option<String>,
}

/// `POST /auth/login`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// Username or email.
    #[validate(custom(function = "no_nul"))]
    pub login: String,
    #[validate(custom(function = "no_nul"))]
    pub password: String,
}

/// `POST /users/{id}/links`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLinkInput {
    #[validate(custom(function = "title_rule"))]
    #[schema(min_length = 1, max_length = 100)]
    pub title: String,
    #[validate(custom(function = "url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// Default: after the user's last link.
    #[validate(custom(function = "position_rule"))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub position: Option<i64>,
}

/// `PATCH /links/{id}`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPatchInput {
    #[validate(custom(function = "title_rule"))]
    #[schema(min_length = 1, max_length = 100)]
    pub title: Option<String>,
    #[validate(custom(function = "url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: Option<String>,
    #[validate(custom(function = "position_rule"))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub position: Option<i64>,
}

/// `POST /users/{id}/socials`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSocialInput {
    #[validate(custom(function = "platform_rule"))]
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", min_length = 1, max_length = 32)]
    pub platform: String,
    #[validate(custom(function = "url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

/// `PATCH /socials/{id}`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SocialPatchInput {
    #[validate(custom(function = "platform_rule"))]
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", min_length = 1, max_length = 32)]
    pub platform: Option<String>,
    #[validate(custom(function = "url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: Option<String>,
}

/// Longest accepted search term, in characters.
const MAX_SEARCH_CHARS: usize = 100;

/// A search term of the users list: at most 100 characters, no NUL. Every
/// character is literal; the SQL layer escapes it for `LIKE` and the cache
/// hashes it for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    pub fn parse(raw: String) -> Result<Self, ApiError> {
        if raw.chars().count() > MAX_SEARCH_CHARS {
            return Err(ApiError::bad_request(
                "search must be at most 100 characters",
            ));
        }
        if raw.contains('\0') {
            return Err(ApiError::bad_request(
                "search must not contain a NUL character",
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name that passed the username rule; only such a name may become part
/// of a cache key or reach the database as a profile lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// `None` for a name that breaks the rule (no such user can exist).
    pub fn parse(raw: String) -> Option<Self> {
        is_valid_username(&raw).then_some(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A link position as the column's type; the field rule already bounds it
/// to `0..=i32::MAX`, this keeps the conversion from ever truncating.
pub fn link_position(value: Option<i64>) -> Result<Option<i32>, ApiError> {
    value
        .map(|p| i32::try_from(p).map_err(|_| ApiError::invalid_field("position", POSITION_RULE)))
        .transpose()
}

/// Runs the field rules of a body; a failure is a `422` whose `details` maps
/// each field to its messages.
pub fn validate<T: Validate>(input: &T) -> Result<(), ApiError> {
    input
        .validate()
        .map_err(|e| ApiError::Validation(field_errors(&e)))
}

impl UserPatchInput {
    /// The avatar rule is checked by hand: `validator` has no notion of
    /// "present but null".
    pub fn validate_all(&self) -> Result<(), ApiError> {
        let mut fields = match self.validate() {
            Ok(()) => FieldErrors::new(),
            Err(e) => field_errors(&e),
        };
        if let Some(Some(url)) = &self.avatar_url
            && let Err(e) = url_rule(url)
        {
            fields
                .entry("avatar_url".to_owned())
                .or_default()
                .push(message_of(&e));
        }
        if fields.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(fields))
        }
    }
}

fn field_errors(errors: &ValidationErrors) -> FieldErrors {
    errors
        .field_errors()
        .into_iter()
        .map(|(field, errs)| (field.to_string(), errs.iter().map(message_of).collect()))
        .collect()
}

fn message_of(error: &ValidationError) -> String {
    error
        .message
        .as_ref()
        .map_or_else(|| error.code.to_string(), |m| m.to_string())
}

fn present_or_null<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
}

fn rule(message: &'static str) -> ValidationError {
    ValidationError::new("invalid").with_message(message.into())
}

/// A NUL character is refused in every string: PostgreSQL cannot store it in TEXT.
fn no_nul(value: &str) -> Result<(), ValidationError> {
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

fn username_rule(value: &str) -> Result<(), ValidationError> {
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

fn email_rule(value: &str) -> Result<(), ValidationError> {
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

fn password_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 8..=128, "must be 8 to 128 characters")
}

fn name_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 0..=100, "must be at most 100 characters")
}

fn bio_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 0..=500, "must be at most 500 characters")
}

fn title_rule(value: &str) -> Result<(), ValidationError> {
    length_rule(value, 1..=100, "must be 1 to 100 characters")
}

fn platform_rule(value: &str) -> Result<(), ValidationError> {
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
fn position_rule(value: i64) -> Result<(), ValidationError> {
    if (0..=i64::from(i32::MAX)).contains(&value) {
        Ok(())
    } else {
        Err(rule(POSITION_RULE))
    }
}

/// Absolute http(s) URLs only: `javascript:`, `data:` and every other scheme
/// would turn a profile link into script or content injection.
fn url_rule(value: &str) -> Result<(), ValidationError> {
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
    fn search_terms_are_bounded_and_nul_free() {
        assert!(SearchTerm::parse("é".repeat(100)).is_ok());
        assert!(SearchTerm::parse("é".repeat(101)).is_err());
        assert!(SearchTerm::parse("a\0b".to_owned()).is_err());
        assert!(link_position(Some(i64::from(i32::MAX) + 1)).is_err());
        assert_eq!(link_position(Some(7)).expect("in range"), Some(7));
    }

    #[test]
    fn lengths_count_characters_not_bytes() {
        assert!(title_rule(&"é".repeat(100)).is_ok());
        assert!(title_rule(&"é".repeat(101)).is_err());
        assert!(password_rule("ééééééé").is_err());
        assert!(password_rule("éééééééé").is_ok());
    }
}
