//! The values of link clicks: the days an analytics request asks for
//! ([`DayRange`], parsed once), the row it answers ([`ClickDay`]), and
//! whether a stored URL may be redirected to ([`redirect_target`]).

use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::InputError;

/// Days one analytics request may span, both ends counted (a leap year).
pub const MAX_RANGE_DAYS: i64 = 366;
/// Days the range spans when `from` is not given, ending with `to`.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// Clicks and visitors of one link on one UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ClickDay {
    pub link_id: i64,
    /// The UTC day, `YYYY-MM-DD`.
    #[schema(value_type = String, format = Date, example = "2026-12-07")]
    pub day: NaiveDate,
    /// Redirects answered for the link that day, each counted once.
    pub clicks: i64,
    /// Distinct visitors (client address and user agent), estimated within 2 %.
    pub visitors: i64,
}

/// `from`..=`to`, UTC days, at most [`MAX_RANGE_DAYS`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DayRange {
    /// The range of `?from=&to=` (`YYYY-MM-DD`): `to` defaults to `today`,
    /// `from` to the [`DEFAULT_RANGE_DAYS`] that end with `to`.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        today: NaiveDate,
    ) -> Result<Self, InputError> {
        let to = match to {
            Some(text) => day("to", text)?,
            None => today,
        };
        let from = match from {
            Some(text) => day("from", text)?,
            None => to
                .checked_sub_days(chrono::Days::new(DEFAULT_RANGE_DAYS as u64 - 1))
                .unwrap_or(NaiveDate::MIN),
        };
        if from > to {
            return Err(InputError::parameter("from must not be after to"));
        }
        if (to - from).num_days() + 1 > MAX_RANGE_DAYS {
            return Err(InputError::parameter(format!(
                "from and to may span at most {MAX_RANGE_DAYS} days"
            )));
        }
        Ok(Self { from, to })
    }
}

/// A `YYYY-MM-DD` parameter, exactly: chrono's `%Y` also takes signs and
/// years of five digits, which no client means.
fn day(name: &str, text: &str) -> Result<NaiveDate, InputError> {
    let refused = || InputError::parameter(format!("{name} must be a date as YYYY-MM-DD"));
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shaped {
        return Err(refused());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| refused())
}

/// The URL a redirect may send a browser to, as a `Location` header holds
/// it (ASCII: the host in punycode, the rest percent-encoded): only one that
/// passes today's URL rule. Rows written before the rule, or by SQL, may
/// hold anything (`javascript:`, a relative path); those are never
/// redirected to.
pub fn redirect_target(url: &str) -> Option<String> {
    super::rules::url_rule(url).ok()?;
    url::Url::parse(url).ok().map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
    }

    #[test]
    fn the_default_range_is_the_last_thirty_days() {
        let today = date("2026-12-07");
        let range = DayRange::parse(None, None, today).expect("valid");
        assert_eq!(range.to, today);
        assert_eq!(range.from, date("2026-11-08"));
        let range = DayRange::parse(None, Some("2026-01-10"), today).expect("valid");
        assert_eq!(range.from, date("2025-12-12"));
    }

    #[test]
    fn ranges_of_366_days_pass_and_longer_ones_do_not() {
        let today = date("2026-12-07");
        assert!(DayRange::parse(Some("2024-01-01"), Some("2024-12-31"), today).is_ok());
        assert!(DayRange::parse(Some("2023-01-01"), Some("2024-01-01"), today).is_ok());
        assert!(DayRange::parse(Some("2023-01-01"), Some("2024-01-02"), today).is_err());
        assert!(DayRange::parse(Some("2026-12-08"), Some("2026-12-07"), today).is_err());
        assert!(DayRange::parse(Some("2026-12-07"), Some("2026-12-07"), today).is_ok());
    }

    #[test]
    fn only_dates_as_yyyy_mm_dd_are_taken() {
        let today = date("2026-12-07");
        for bad in [
            "",
            "2026-2-01",
            "2026-02-30",
            "+2026-02-01",
            "20260201",
            "2026-02-01T00:00:00Z",
            "abcd-ef-gh",
            "12026-02-01",
            "2026-02-01 ",
        ] {
            assert!(DayRange::parse(Some(bad), None, today).is_err(), "{bad:?}");
            assert!(DayRange::parse(None, Some(bad), today).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn only_urls_that_pass_the_rule_are_redirect_targets() {
        assert_eq!(
            redirect_target("https://example.com/a").as_deref(),
            Some("https://example.com/a")
        );
        assert_eq!(
            redirect_target("https://bücher.example/ü?q=ä").as_deref(),
            Some("https://xn--bcher-kva.example/%C3%BC?q=%C3%A4")
        );
        for bad in [
            "javascript:alert(1)",
            "data:text/html,x",
            "/relative",
            "https://",
            "ftp://example.com/",
            "https://exa mple.com/",
            "",
        ] {
            assert_eq!(redirect_target(bad), None, "{bad:?}");
        }
    }
}
