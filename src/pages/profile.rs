//! The public profile page (`/@{username}`) and the page of an unknown name.
//! It shows what `GET /api/v1/profiles/{username}` returns — name, bio,
//! avatar, the links in their order, the socials — readable with JavaScript
//! off, and with the OpenGraph and Twitter card tags that make a shared link
//! preview well.
//!
//! Links go through `/l/{id}`, the redirect that counts a click; only a
//! link whose URL passes today's URL rule gets one (the redirect follows no
//! other), the rest are shown as text. Socials link straight to their URL.
//!
//! No `og:url`: the only source of the page's own address would be the
//! request's `Host`, which any client can set, and the page is rendered once
//! and served to everyone from the cache. A canonical URL needs a configured
//! public origin first.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{EXTERNAL_LINK_REL, STYLESHEET};
use crate::domain::clicks::redirect_target;
use crate::domain::resources::{Link, Profile};

/// A preview's description is cut to this many characters (not bytes), about
/// what the card of a chat app or a search result shows.
const DESCRIPTION_CHARS: usize = 200;

/// The profile page, rendered. Every user string is escaped by maud.
pub fn profile_page(profile: &Profile) -> Vec<u8> {
    let user = &profile.user;
    let title = format!("{} (@{})", user.name, user.username);
    let description = if user.bio.trim().is_empty() {
        format!("The links of {} on linkhub.", user.name)
    } else {
        cut(&user.bio, DESCRIPTION_CHARS)
    };
    let avatar = user.avatar_url.as_deref().filter(|url| is_web_url(url));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (common_head())
                title { (title) " · linkhub" }
                meta name="description" content=(description);
                meta property="og:type" content="profile";
                meta property="og:site_name" content="linkhub";
                meta property="og:title" content=(title);
                meta property="og:description" content=(description);
                meta property="profile:username" content=(user.username);
                @if let Some(avatar) = avatar {
                    meta property="og:image" content=(avatar);
                    meta property="og:image:alt" content=(format!("Avatar of {}", user.name));
                }
                meta name="twitter:card" content="summary";
                meta name="twitter:title" content=(title);
                meta name="twitter:description" content=(description);
                @if let Some(avatar) = avatar {
                    meta name="twitter:image" content=(avatar);
                }
            }
            body {
                main {
                    @if let Some(avatar) = avatar {
                        img.avatar src=(avatar) alt=(format!("Avatar of {}", user.name))
                            width="96" height="96" referrerpolicy="no-referrer";
                    }
                    h1 { (user.name) }
                    p.handle { "@" (user.username) }
                    @if !user.bio.trim().is_empty() {
                        p.bio { (user.bio) }
                    }
                    @if profile.links.is_empty() {
                        p.empty { "No links yet." }
                    } @else {
                        ul.links {
                            @for link in &profile.links {
                                li { (counted_link(link)) }
                            }
                        }
                    }
                    @if !profile.socials.is_empty() {
                        ul.socials aria-label="Elsewhere" {
                            @for social in &profile.socials {
                                li { (external_link(&social.url, &social.platform)) }
                            }
                        }
                    }
                    footer { "linkhub" }
                }
            }
        }
    };
    page.into_string().into_bytes()
}

/// The page of a name nobody has. It does not repeat the name asked for:
/// a page that prints whatever the address says lends linkhub's name to any
/// text someone puts in a link.
pub fn not_found_page() -> Vec<u8> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (common_head())
                title { "No such profile · linkhub" }
                meta name="robots" content="noindex";
            }
            body {
                main {
                    h1 { "No such profile" }
                    p.bio { "Nobody on linkhub has this name. Check the address you followed." }
                    footer { "linkhub" }
                }
            }
        }
    };
    page.into_string().into_bytes()
}

/// The page of `/l/{id}` for a link that does not exist (or whose URL the
/// redirect will not follow): like [`not_found_page`], it repeats nothing
/// of the address.
pub fn missing_link_page() -> Vec<u8> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                (common_head())
                title { "No such link · linkhub" }
                meta name="robots" content="noindex";
            }
            body {
                main {
                    h1 { "No such link" }
                    p.bio { "This link does not exist, or no longer does." }
                    footer { "linkhub" }
                }
            }
        }
    };
    page.into_string().into_bytes()
}

fn common_head() -> Markup {
    html! {
        meta charset="utf-8";
        meta name="viewport" content="width=device-width, initial-scale=1";
        style { (PreEscaped(STYLESHEET)) }
    }
}

/// A link off-site. Stored URLs are checked to be http(s) when written; a row
/// that is not (older data, a manual fix in SQL) is shown as text, never as
/// an `href` a browser would follow.
fn external_link(url: &str, text: &str) -> Markup {
    html! {
        @if is_web_url(url) {
            a href=(url) rel=(EXTERNAL_LINK_REL) { (text) }
        } @else {
            span { (text) }
        }
    }
}

/// A profile link, through the redirect that counts its clicks.
fn counted_link(link: &Link) -> Markup {
    html! {
        @if redirect_target(&link.url).is_some() {
            a href=(format!("/l/{}", link.id)) rel=(EXTERNAL_LINK_REL) { (link.title) }
        } @else {
            span { (link.title) }
        }
    }
}

fn is_web_url(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

/// The first `max` characters of `text` on one line, with `…` when cut.
fn cut(text: &str, max: usize) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= max {
        return line;
    }
    let mut short: String = line.chars().take(max - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::resources::{Link, PublicUser, Social};
    use chrono::Utc;

    const HOSTILE: &str = "\"><img src=x onerror=alert(1)><script>alert('x')</script>&amp;";

    fn user(name: &str, bio: &str, avatar: Option<&str>) -> PublicUser {
        PublicUser {
            id: 1,
            username: "ada_l".to_owned(),
            name: name.to_owned(),
            bio: bio.to_owned(),
            avatar_url: avatar.map(str::to_owned),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn link(id: i64, title: &str, url: &str) -> Link {
        Link {
            id,
            user_id: 1,
            title: title.to_owned(),
            url: url.to_owned(),
            position: id as i32,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn social(platform: &str, url: &str) -> Social {
        Social {
            id: 1,
            user_id: 1,
            platform: platform.to_owned(),
            url: url.to_owned(),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn render(profile: &Profile) -> String {
        String::from_utf8(profile_page(profile)).expect("pages are UTF-8")
    }

    /// No tag, attribute or entity of the hostile string survives unescaped.
    fn assert_inert(page: &str) {
        assert!(!page.contains("<script"), "{page}");
        assert!(!page.contains("<img src=x"), "{page}");
        assert!(!page.contains("\"><img"), "{page}");
        assert!(!page.contains("onerror=alert(1)>"), "{page}");
        assert_eq!(
            page.matches("<img").count(),
            page.matches("class=\"avatar\"").count()
        );
    }

    #[test]
    fn hostile_names_bios_titles_and_urls_are_escaped() {
        let hostile_url = format!("https://example.com/?q={HOSTILE}");
        let profile = Profile {
            user: user(HOSTILE, HOSTILE, Some(&hostile_url)),
            links: vec![link(1, HOSTILE, &hostile_url)],
            socials: vec![social(HOSTILE, &hostile_url)],
        };
        let page = render(&profile);
        assert_inert(&page);
        assert!(page.contains("&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;"));
        assert!(
            page.contains("&amp;amp;"),
            "an entity in input is shown, not decoded"
        );
        // In attributes too: og:title, og:image, href and alt.
        assert!(page.contains("property=\"og:title\" content=\"&quot;&gt;&lt;img"));
        assert!(page.contains("href=\"https://example.com/?q=&quot;&gt;&lt;img"));
    }

    #[test]
    fn quotes_cannot_leave_an_attribute() {
        let profile = Profile {
            user: user("a\" onmouseover=\"alert(1)", "b' onfocus='x", None),
            links: vec![link(
                1,
                "t",
                "https://e.com/\" autofocus onfocus=\"alert(1)",
            )],
            socials: vec![],
        };
        let page = render(&profile);
        assert!(!page.contains("\" onmouseover=\""), "{page}");
        assert!(!page.contains("\" autofocus"), "{page}");
        assert!(page.contains("a&quot; onmouseover=&quot;alert(1)"));
    }

    #[test]
    fn only_web_urls_become_links_or_images() {
        let profile = Profile {
            user: user("n", "", Some("javascript:alert(1)")),
            links: vec![
                link(1, "script", "javascript:alert(1)"),
                link(2, "data", "data:text/html,<script>alert(1)</script>"),
            ],
            socials: vec![social("x", "vbscript:msgbox")],
        };
        let page = render(&profile);
        assert!(!page.contains("href=\"javascript"), "{page}");
        assert!(!page.contains("href=\"data"), "{page}");
        assert!(!page.contains("href=\"vbscript"), "{page}");
        assert!(!page.contains("og:image"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("<span>script</span>"));
    }

    #[test]
    fn unicode_is_kept_as_written() {
        let name = "Zoë 🚀 \u{202e}evil\u{202c} 名前";
        let profile = Profile {
            user: user(name, "Привет, мир\n\nsecond line", None),
            links: vec![link(1, "Ünïcödé ✓", "https://例え.jp/パス")],
            socials: vec![],
        };
        let page = render(&profile);
        assert!(page.contains(name));
        assert!(page.contains("Ünïcödé ✓"));
        assert!(page.contains("<meta charset=\"utf-8\">"));
        assert!(
            page.contains("content=\"Привет, мир second line\""),
            "one-line description"
        );
    }

    #[test]
    fn the_page_has_what_people_and_previews_need() {
        let profile = Profile {
            user: user(
                "Ada",
                "Math & engines",
                Some("https://img.example.com/a.png"),
            ),
            links: vec![
                link(3, "First", "https://one.example.com/"),
                link(1, "Second", "https://two.example.com/"),
                link(2, "Third", "http://three.example.com/"),
            ],
            socials: vec![social("github", "https://github.com/ada")],
        };
        let page = render(&profile);
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert!(page.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
        assert!(page.contains("property=\"og:title\" content=\"Ada (@ada_l)\""));
        assert!(page.contains("property=\"og:description\" content=\"Math &amp; engines\""));
        assert!(page.contains("property=\"og:image\" content=\"https://img.example.com/a.png\""));
        assert!(page.contains("name=\"twitter:card\" content=\"summary\""));
        assert!(!page.contains("og:url"));
        assert!(!page.contains("<script"));
        assert!(
            !page.contains(" style="),
            "no inline style attribute: CSP would drop it"
        );
        // In the order given (the SQL layer orders them), each with rel.
        let order: Vec<usize> = ["First", "Second", "Third", ">github<"]
            .iter()
            .map(|t| page.find(t).expect("rendered"))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert_eq!(
            page.matches("rel=\"noopener nofollow ugc\"").count(),
            4,
            "{page}"
        );
    }

    #[test]
    fn links_go_through_the_counting_redirect_and_only_those_it_follows() {
        let profile = Profile {
            user: user("n", "", None),
            links: vec![
                link(7, "Site", "https://example.com/a"),
                link(8, "Relative", "/not/absolute"),
                link(9, "Spaced", "https://exa mple.com/"),
            ],
            socials: vec![social("github", "https://github.com/ada")],
        };
        let page = render(&profile);
        assert!(
            page.contains(r#"<a href="/l/7" rel="noopener nofollow ugc">Site</a>"#),
            "{page}"
        );
        assert!(!page.contains("https://example.com/a"), "{page}");
        assert!(page.contains("<span>Relative</span>"), "{page}");
        assert!(page.contains("<span>Spaced</span>"), "{page}");
        assert!(!page.contains("/l/8") && !page.contains("/l/9"), "{page}");
        assert!(page.contains(r#"href="https://github.com/ada""#), "{page}");
    }

    #[test]
    fn a_long_bio_is_cut_for_previews_only() {
        let bio = "é".repeat(500);
        let profile = Profile {
            user: user("n", &bio, None),
            links: vec![],
            socials: vec![],
        };
        let page = render(&profile);
        let cut = format!("{}…", "é".repeat(199));
        assert!(page.contains(&format!("og:description\" content=\"{cut}\"")));
        assert!(page.contains(&format!("<p class=\"bio\">{bio}</p>")));
        assert!(page.contains("No links yet."));
    }

    #[test]
    fn the_not_found_page_is_a_page() {
        let page = String::from_utf8(not_found_page()).expect("UTF-8");
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert!(page.contains("No such profile"));
        assert!(page.contains("noindex"));
        assert!(!page.contains("<script"));
        let page = String::from_utf8(missing_link_page()).expect("UTF-8");
        assert!(page.starts_with("<!DOCTYPE html><html lang=\"en\">"));
        assert!(page.contains("No such link"));
        assert!(page.contains("noindex"));
    }
}
