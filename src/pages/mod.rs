//! The HTML pages linkhub serves to people (not apps): today the public profile
//! page and its 404, and the 404 of a link's redirect (`/l/{id}`). Rendering
//! is pure — domain data in, bytes out — so a page
//! can be rendered once per cache version and stored like the JSON reads.
//!
//! Templates are `maud` macros: checked at compile time, and every value
//! interpolated into them is HTML-escaped unless wrapped in `PreEscaped`,
//! which this module uses only for its own constant stylesheet.
//!
//! Styles are one small inline `<style>` whose SHA-256 the
//! [`CONTENT_SECURITY_POLICY`] allows, rather than a stylesheet at a hashed
//! URL: a profile is mostly opened once, from a link in another app, where a
//! second request (and a second route to cache) buys nothing; and the page
//! stays one self-contained response. The policy allows no script at all.

mod profile;

pub use profile::{missing_link_page, not_found_page, profile_page};

/// The source of the page templates: what a cached page holds follows from
/// it, so the cache's entry format digests it (`startup::entry_format`).
pub const TEMPLATE_SOURCES: [&str; 2] = [include_str!("mod.rs"), include_str!("profile.rs")];

/// The stylesheet of every page, inlined. Changing it changes its hash: the
/// test `the_policy_allows_exactly_the_inline_stylesheet` then names the new one.
pub const STYLESHEET: &str = "\
:root{color-scheme:light dark;--fg:#1b1b1f;--bg:#f6f6f8;--card:#fff;--muted:#5b5b66;--accent:#3451b2}\
@media (prefers-color-scheme:dark){:root{--fg:#ececf1;--bg:#16161a;--card:#232329;--muted:#a0a0ab;--accent:#8ea2ff}}\
*{box-sizing:border-box}\
body{margin:0;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif;color:var(--fg);background:var(--bg)}\
main{max-width:36rem;margin:0 auto;padding:2.5rem 1rem 3rem;text-align:center}\
.avatar{width:96px;height:96px;border-radius:50%;object-fit:cover;background:var(--card)}\
h1{font-size:1.5rem;margin:.75rem 0 .25rem;overflow-wrap:anywhere}\
.handle{color:var(--muted);margin:0}\
.bio{margin:.75rem 0 1.5rem;white-space:pre-line;overflow-wrap:anywhere}\
ul{list-style:none;margin:0;padding:0}\
.links li{margin:.75rem 0}\
.links a{display:block;padding:.9rem 1rem;border-radius:.75rem;background:var(--card);color:var(--fg);text-decoration:none;font-weight:600;box-shadow:0 1px 3px rgba(0,0,0,.12);overflow-wrap:anywhere}\
.links a:hover,.links a:focus{outline:2px solid var(--accent)}\
.socials{display:flex;flex-wrap:wrap;gap:.5rem 1rem;justify-content:center;margin-top:2rem}\
.socials a{color:var(--accent)}\
footer{margin-top:2.5rem;color:var(--muted);font-size:.85rem}";

/// The `Content-Security-Policy` of every page response (and only of pages:
/// the API's JSON needs none of it). No script of any kind, styles only the
/// inline stylesheet by hash, images from anywhere on the web (avatars are
/// user-given URLs), nothing framed, posted or re-based.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'sha256-7Vf1r4gaCvNFpKmcUKxp3j3nvaSOm97EmzCTscavJns='; img-src https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `rel` of every link to another site: no `window.opener` for it, no search
/// ranking passed on, and marked as user-generated content.
pub const EXTERNAL_LINK_REL: &str = "noopener nofollow ugc";

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sha2::Digest;

    #[test]
    fn the_policy_allows_exactly_the_inline_stylesheet() {
        let digest = sha2::Sha256::digest(STYLESHEET.as_bytes());
        let hash = base64::engine::general_purpose::STANDARD.encode(digest);
        let source = format!("style-src 'sha256-{hash}';");
        assert!(
            CONTENT_SECURITY_POLICY.contains(&source),
            "update CONTENT_SECURITY_POLICY to {source}"
        );
    }

    #[test]
    fn the_policy_allows_no_script() {
        assert!(CONTENT_SECURITY_POLICY.starts_with("default-src 'none';"));
        assert!(!CONTENT_SECURITY_POLICY.contains("script-src"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
