//! Cache namespaces: the sets of cached reads that one version counter
//! invalidates together, and the rule of which namespaces each write touches.
//!
//! This is vocabulary shared by the SQL layer (a write records the namespaces
//! it changed in the outbox, inside its transaction) and the cache (which
//! bumps and purges them), so it sits below both and knows neither.

use std::fmt;
use std::str::FromStr;

use crate::domain::input::is_valid_username;

/// A set of cached reads that one version counter invalidates together.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Namespace {
    /// The users list and its searches.
    Users,
    /// One user's public record, links list and socials list.
    User(i64),
    /// One profile, by username (a rename touches the old and the new name).
    Profile(String),
    /// One link by id.
    Link(i64),
    /// One social account by id.
    Social(i64),
}

impl Namespace {
    /// The metric label: the namespace's kind, never its id (bounded cardinality).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::User(_) => "user",
            Self::Profile(_) => "profile",
            Self::Link(_) => "link",
            Self::Social(_) => "social",
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Users => f.write_str("users"),
            Self::User(id) => write!(f, "user:{id}"),
            Self::Profile(name) => write!(f, "profile:{name}"),
            Self::Link(id) => write!(f, "link:{id}"),
            Self::Social(id) => write!(f, "social:{id}"),
        }
    }
}

impl FromStr for Namespace {
    type Err = ();

    /// Parses the `Display` form back (outbox rows, SCANned keys).
    fn from_str(s: &str) -> Result<Self, ()> {
        let id = |v: &str| v.parse::<i64>().map_err(|_| ());
        match s.split_once(':') {
            None if s == "users" => Ok(Self::Users),
            Some(("user", v)) => id(v).map(Self::User),
            Some(("link", v)) => id(v).map(Self::Link),
            Some(("social", v)) => id(v).map(Self::Social),
            Some(("profile", v)) if is_valid_username(v) => Ok(Self::Profile(v.to_owned())),
            _ => Err(()),
        }
    }
}

/// What a user's row shows up in: the users list, the user's own reads and
/// the profile under `username`. Registration and every change to the row
/// touch these.
pub fn touched_by_user_write(id: i64, username: &str) -> Vec<Namespace> {
    vec![
        Namespace::Users,
        Namespace::User(id),
        Namespace::Profile(username.to_owned()),
    ]
}

/// An update may rename the user: the profile under the old name and the
/// one under the new name both change.
pub fn touched_by_user_update(id: i64, old_username: &str, new_username: &str) -> Vec<Namespace> {
    let mut namespaces = touched_by_user_write(id, old_username);
    namespaces.push(Namespace::Profile(new_username.to_owned()));
    namespaces
}

/// A deletion takes the user's links and socials with it (ON DELETE
/// CASCADE), so their own reads change too.
pub fn touched_by_user_delete(
    id: i64,
    username: &str,
    link_ids: impl IntoIterator<Item = i64>,
    social_ids: impl IntoIterator<Item = i64>,
) -> Vec<Namespace> {
    let mut namespaces = touched_by_user_write(id, username);
    namespaces.extend(link_ids.into_iter().map(Namespace::Link));
    namespaces.extend(social_ids.into_iter().map(Namespace::Social));
    namespaces
}

/// A link's create, update or delete: the link itself, and the owner's
/// links list and profile (the users list does not show links).
pub fn touched_by_link_write(owner_id: i64, owner_username: &str, link_id: i64) -> Vec<Namespace> {
    let mut namespaces = owned_by(owner_id, owner_username);
    namespaces.push(Namespace::Link(link_id));
    namespaces
}

/// A social account's create, update or delete: as for a link.
pub fn touched_by_social_write(
    owner_id: i64,
    owner_username: &str,
    social_id: i64,
) -> Vec<Namespace> {
    let mut namespaces = owned_by(owner_id, owner_username);
    namespaces.push(Namespace::Social(social_id));
    namespaces
}

/// The namespaces that show what a user owns.
fn owned_by(owner_id: i64, owner_username: &str) -> Vec<Namespace> {
    vec![
        Namespace::User(owner_id),
        Namespace::Profile(owner_username.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_round_trip_through_their_text() {
        for ns in [
            Namespace::Users,
            Namespace::User(42),
            Namespace::Profile("alice_1".into()),
            Namespace::Link(7),
            Namespace::Social(3),
        ] {
            assert_eq!(ns.to_string().parse::<Namespace>(), Ok(ns));
        }
        assert!("profile:Bad*".parse::<Namespace>().is_err());
        assert!("user:x".parse::<Namespace>().is_err());
    }

    #[test]
    fn a_rename_touches_both_profiles_and_a_link_write_not_the_users_list() {
        let renamed = touched_by_user_update(1, "old", "new");
        assert!(renamed.contains(&Namespace::Profile("old".into())));
        assert!(renamed.contains(&Namespace::Profile("new".into())));
        assert!(renamed.contains(&Namespace::Users));
        let link = touched_by_link_write(1, "bob", 9);
        assert_eq!(
            link,
            vec![
                Namespace::User(1),
                Namespace::Profile("bob".into()),
                Namespace::Link(9)
            ]
        );
        let deleted = touched_by_user_delete(1, "bob", [2], [3]);
        assert!(deleted.contains(&Namespace::Link(2)) && deleted.contains(&Namespace::Social(3)));
    }
}
