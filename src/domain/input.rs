//! Request bodies as clients send them, and [`Valid`], the only way past
//! this module. A body is deserialized strictly (unknown fields are a
//! `400`), then [`Valid::parse`] runs every rule of its type at once: the
//! field rules of its `#[validate]` attributes (`rules.rs`) and the checks
//! no attribute can express, into one `422` ([`InputError::Fields`]). The
//! database writes take a `Valid<_>`, so no service can skip a rule, and past
//! this module every value is known to be valid.

use std::ops::Deref;

use serde::Deserialize;
use utoipa::ToSchema;
use validator::Validate;

use super::error::{FieldErrors, InputError};
use super::rules;
pub use super::rules::is_valid_username;

/// `POST /users`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    #[validate(custom(function = "rules::username_rule"))]
    #[schema(pattern = "^[a-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: String,
    #[validate(custom(function = "rules::email_rule"))]
    #[schema(format = "email", max_length = 254)]
    pub email: String,
    #[validate(custom(function = "rules::password_rule"))]
    #[schema(min_length = 8, max_length = 128, format = "password")]
    pub password: String,
    #[validate(custom(function = "rules::name_rule"))]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[validate(custom(function = "rules::bio_rule"))]
    #[schema(max_length = 500)]
    pub bio: Option<String>,
    #[validate(custom(function = "rules::url_rule"))]
    #[schema(format = "uri", max_length = 2048, nullable)]
    pub avatar_url: Option<String>,
}

/// `PATCH /users/{id}`: every field optional; `avatar_url: null` clears the avatar.
#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatchInput {
    #[validate(custom(function = "rules::username_rule"))]
    #[schema(pattern = "^[a-z0-9_]{3,32}$", min_length = 3, max_length = 32)]
    pub username: Option<String>,
    #[validate(custom(function = "rules::email_rule"))]
    #[schema(format = "email", max_length = 254)]
    pub email: Option<String>,
    #[validate(custom(function = "rules::password_rule"))]
    #[schema(min_length = 8, max_length = 128, format = "password")]
    pub password: Option<String>,
    #[validate(custom(function = "rules::name_rule"))]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    #[validate(custom(function = "rules::bio_rule"))]
    #[schema(max_length = 500)]
    pub bio: Option<String>,
    /// Absent: unchanged; `null`: removed; a string: replaced.
    #[serde(default, deserialize_with = "present_or_null")]
    #[schema(value_type = Option<String>, format = "uri", max_length = 2048, nullable)]
    pub avatar_url: Option<Option<String>>,
    /// The password as it is now: needed to change one's own `password` or
    /// `email` (not for an admin changing another user's).
    #[validate(custom(function = "rules::no_nul"))]
    #[schema(format = "password")]
    pub current_password: Option<String>,
}

/// `POST /auth/login`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// Username or email.
    #[validate(custom(function = "rules::no_nul"))]
    pub login: String,
    #[validate(custom(function = "rules::no_nul"))]
    pub password: String,
}

/// `POST /users/{id}/links`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLinkInput {
    #[validate(custom(function = "rules::title_rule"))]
    #[schema(min_length = 1, max_length = 100)]
    pub title: String,
    #[validate(custom(function = "rules::url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
    /// Default: after the user's last link.
    #[validate(custom(function = "rules::position_rule"))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub position: Option<i64>,
}

/// `PATCH /links/{id}`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPatchInput {
    #[validate(custom(function = "rules::title_rule"))]
    #[schema(min_length = 1, max_length = 100)]
    pub title: Option<String>,
    #[validate(custom(function = "rules::url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: Option<String>,
    #[validate(custom(function = "rules::position_rule"))]
    #[schema(minimum = 0, maximum = 2147483647)]
    pub position: Option<i64>,
}

/// `POST /users/{id}/socials`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSocialInput {
    #[validate(custom(function = "rules::platform_rule"))]
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", min_length = 1, max_length = 32)]
    pub platform: String,
    #[validate(custom(function = "rules::url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: String,
}

/// `PATCH /socials/{id}`
#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SocialPatchInput {
    #[validate(custom(function = "rules::platform_rule"))]
    #[schema(pattern = "^[a-z0-9_-]{1,32}$", min_length = 1, max_length = 32)]
    pub platform: Option<String>,
    #[validate(custom(function = "rules::url_rule"))]
    #[schema(format = "uri", max_length = 2048)]
    pub url: Option<String>,
}

/// A request body that passed every rule of its type. [`Valid::parse`] is
/// the only way to make one; its fields are read through `Deref`.
#[derive(Debug)]
pub struct Valid<T>(T);

impl<T: Rules> Valid<T> {
    /// Runs every rule of `T` and collects the messages of every field that
    /// breaks one, so a client learns all it has to fix at once.
    pub fn parse(input: T) -> Result<Self, InputError> {
        let mut fields = match input.validate() {
            Ok(()) => FieldErrors::new(),
            Err(e) => rules::field_errors(&e),
        };
        input.check_beyond_fields(&mut fields);
        if fields.is_empty() {
            Ok(Self(input))
        } else {
            Err(InputError::Fields(fields))
        }
    }
}

impl<T> Valid<T> {
    /// The body itself, for a write that takes its fields apart.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Valid<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The rules of a body type: its `#[validate]` attributes, plus the checks
/// they cannot express. Sealed: only the bodies of this module have rules,
/// so a [`Valid`] never holds anything else.
pub trait Rules: Validate + sealed::Sealed {
    /// Adds the messages of the rules beyond the field attributes that
    /// `self` breaks. Most bodies have none.
    fn check_beyond_fields(&self, _fields: &mut FieldErrors) {}
}

mod sealed {
    pub trait Sealed {}
}

/// The bodies whose `#[validate]` attributes are all their rules.
macro_rules! field_rules_only {
    ($($body:ty),*) => {$(
        impl sealed::Sealed for $body {}
        impl Rules for $body {}
    )*};
}

field_rules_only!(
    NewUserInput,
    LoginInput,
    NewLinkInput,
    LinkPatchInput,
    NewSocialInput,
    SocialPatchInput
);

impl sealed::Sealed for UserPatchInput {}

impl Rules for UserPatchInput {
    /// The avatar rule is checked by hand: `validator` has no notion of
    /// "present but null".
    fn check_beyond_fields(&self, fields: &mut FieldErrors) {
        if let Some(Some(url)) = &self.avatar_url
            && let Err(e) = rules::url_rule(url)
        {
            fields
                .entry("avatar_url".to_owned())
                .or_default()
                .push(rules::message_of(&e));
        }
    }
}

impl Valid<NewLinkInput> {
    /// The position as the column's type; `None`: after the user's last link.
    pub fn position(&self) -> Option<i32> {
        self.0.position.map(column_position)
    }
}

impl Valid<LinkPatchInput> {
    /// The new position as the column's type; `None`: unchanged.
    pub fn position(&self) -> Option<i32> {
        self.0.position.map(column_position)
    }
}

/// A position the position rule accepted (`0..=i32::MAX`) as the column's
/// type. The rule ran in [`Valid::parse`], so this never saturates.
fn column_position(value: i64) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// Longest accepted search term, in characters.
const MAX_SEARCH_CHARS: usize = 100;

/// Letters or digits in a row a search term must hold: a trigram index can
/// only narrow a substring search that holds one, so a shorter or
/// punctuation-only term (`--`: a scan of every user) is refused.
const MIN_SEARCH_RUN: usize = 3;

/// A search term of the users list: 3 letters or digits in a row (Unicode
/// letters count) and at most 100 characters, no NUL. Every character is
/// literal; the SQL layer escapes it for `LIKE` and the cache hashes it for a
/// key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchTerm(String);

impl SearchTerm {
    /// A `?search=` as a client sent it; an empty one is no search (`None`).
    pub fn parse(raw: String) -> Result<Option<Self>, InputError> {
        if raw.is_empty() {
            return Ok(None);
        }
        if raw.chars().count() > MAX_SEARCH_CHARS {
            return Err(InputError::parameter(
                "search must be at most 100 characters",
            ));
        }
        if raw.contains('\0') {
            return Err(InputError::parameter(
                "search must not contain a NUL character",
            ));
        }
        if longest_alphanumeric_run(&raw) < MIN_SEARCH_RUN {
            return Err(InputError::parameter(
                "search must hold at least 3 letters or digits in a row",
            ));
        }
        Ok(Some(Self(raw)))
    }

    /// The text as it was accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The most letters or digits (Unicode's) that follow each other in `text`.
fn longest_alphanumeric_run(text: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in text.chars() {
        run = if c.is_alphanumeric() { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
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

    /// The text as it was accepted.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `avatar_url` as PATCH means it: absent stays `None` (the field's
/// default), `null` becomes `Some(None)` (clear it).
fn present_or_null<'de, D>(deserializer: D) -> Result<Option<Option<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Option::<String>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_are_bounded_and_nul_free() {
        assert!(SearchTerm::parse("é".repeat(100)).is_ok());
        assert!(SearchTerm::parse("é".repeat(101)).is_err());
        assert!(SearchTerm::parse("abc\0".to_owned()).is_err());
    }

    #[test]
    fn search_terms_hold_three_letters_or_digits_in_a_row() {
        for ok in [
            "ada",
            "lit%",
            "x_ray9",
            "_ab1_",
            "åsa",
            "日本語",
            "١٢٣",
            "--abc--",
        ] {
            assert!(
                matches!(SearchTerm::parse(ok.to_owned()), Ok(Some(_))),
                "{ok:?}"
            );
        }
        for refused in [
            "ab",
            "a",
            "--",
            "a_b_c",
            "ab%cd",
            "a b c",
            "%%%",
            "ab\u{301}",
        ] {
            assert!(
                SearchTerm::parse(refused.to_owned()).is_err(),
                "{refused:?}"
            );
        }
        assert_eq!(SearchTerm::parse(String::new()).ok(), Some(None));
    }

    fn link_at(position: i64) -> NewLinkInput {
        NewLinkInput {
            title: "a link".to_owned(),
            url: "https://example.com".to_owned(),
            position: Some(position),
        }
    }

    #[test]
    fn positions_beyond_the_column_are_refused_and_the_rest_convert() {
        let Err(InputError::Fields(fields)) = Valid::parse(link_at(i64::from(i32::MAX) + 1)) else {
            panic!("a position beyond i32 accepted");
        };
        assert_eq!(
            fields.get("position"),
            Some(&vec!["must be an integer from 0 to 2147483647".to_owned()])
        );
        assert!(Valid::parse(link_at(-1)).is_err());
        let valid = Valid::parse(link_at(7)).expect("in range");
        assert_eq!(valid.position(), Some(7));
        let top = Valid::parse(link_at(i64::from(i32::MAX))).expect("in range");
        assert_eq!(top.position(), Some(i32::MAX));
    }

    #[test]
    fn every_broken_rule_of_a_body_is_reported_at_once() {
        let patch = UserPatchInput {
            username: Some("X".to_owned()),
            avatar_url: Some(Some("javascript:alert(1)".to_owned())),
            ..UserPatchInput::default()
        };
        let Err(InputError::Fields(fields)) = Valid::parse(patch) else {
            panic!("a broken patch accepted");
        };
        assert_eq!(
            fields.keys().collect::<Vec<_>>(),
            ["avatar_url", "username"]
        );
        let cleared = UserPatchInput {
            avatar_url: Some(None),
            ..UserPatchInput::default()
        };
        assert!(Valid::parse(cleared).is_ok(), "null clears the avatar");
    }
}
