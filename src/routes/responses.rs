//! The sets of answers many operations share (`500`/`503`, a JSON body's
//! own errors, an owner-only write's `401`/`403`, a cached read's `304`),
//! and the envelope of each resource (`{"data": Link}` and the like), listed
//! by name in the handlers' OpenAPI annotations. They sit below every handler
//! and name none, so the handlers and `openapi.rs`, which names every
//! handler, both point down here.
//!
//! # Why the envelopes are spelled out
//! Handlers answer with the generic
//! [`DataBody`](crate::domain::resources::DataBody),
//! [`MessageBody`](crate::domain::resources::MessageBody) and
//! [`Page`](crate::domain::resources::Page). utoipa inlines a generic type's
//! parameter, so a document made from them gave every envelope its own copy
//! of the resource's schema, and a generated client one class per copy
//! (`Link`, `DataBodyLinkData`, `MessageBodyLinkData` for one link). The
//! document names the envelopes below instead: one concrete type per
//! envelope and resource, under the component name the generic one had
//! (`DataBody_Link`), whose `data` is a `$ref` to the resource. They are
//! never built; the test below keeps their fields those of the generic types
//! that are.

use crate::domain::clicks::ClickDay;
use crate::domain::resources::{
    Link, LoginView, PageMeta, PrivateUser, Profile, PublicUser, Social,
};
use crate::error::ErrorBody;

/// Declares the envelopes of the document: `Rust name as component name`,
/// and what its `data` holds.
macro_rules! envelopes {
    (
        data { $($data_name:ident as $data_wire:ident: $data_ty:ty;)* }
        message { $($message_name:ident as $message_wire:ident: $message_ty:ty;)* }
        page { $($page_name:ident as $page_wire:ident: $page_ty:ty;)* }
    ) => {
        $(
            /// A single resource: `{"data": ...}`.
            #[derive(utoipa::ToSchema)]
            #[schema(as = $data_wire)]
            pub struct $data_name {
                pub data: $data_ty,
            }
        )*
        $(
            /// The answer to a create or an update: `{"message": ..., "data": ...}`.
            #[derive(utoipa::ToSchema)]
            #[schema(as = $message_wire)]
            pub struct $message_name {
                pub message: String,
                pub data: $message_ty,
            }
        )*
        $(
            /// One page of a list.
            #[derive(utoipa::ToSchema)]
            #[schema(as = $page_wire)]
            pub struct $page_name {
                pub data: Vec<$page_ty>,
                pub meta: PageMeta,
            }
        )*
    };
}

envelopes! {
    data {
        LinkData as DataBody_Link: Link;
        SocialData as DataBody_Social: Social;
        SocialsData as DataBody_Vec_Social: Vec<Social>;
        PublicUserData as DataBody_PublicUser: PublicUser;
        PrivateUserData as DataBody_PrivateUser: PrivateUser;
        ProfileData as DataBody_Profile: Profile;
        LoginData as DataBody_LoginView: LoginView;
        ClickDaysData as DataBody_Vec_ClickDay: Vec<ClickDay>;
    }
    message {
        LinkMessage as MessageBody_Link: Link;
        SocialMessage as MessageBody_Social: Social;
        PrivateUserMessage as MessageBody_PrivateUser: PrivateUser;
    }
    page {
        LinkPage as Page_Link: Link;
        PublicUserPage as Page_PublicUser: PublicUser;
    }
}

/// `500` and `503`: what every operation that uses PostgreSQL may answer
/// besides its own statuses (a cached read too, on a miss).
#[derive(utoipa::IntoResponses)]
pub enum ServerErrors {
    #[response(
        status = 500,
        description = "Anything else; the message leaks no internals"
    )]
    Internal(ErrorBody),
    #[response(status = 503, description = "PostgreSQL unreachable")]
    Unavailable(ErrorBody),
}

/// Listed after [`ServerErrors`] by an operation that hashes a password: its
/// `503` then also says that the hashing queue is full, with `Retry-After`.
#[derive(utoipa::IntoResponses)]
pub enum HashingBusy {
    #[response(
        status = 503,
        description = "PostgreSQL unreachable, or password hashing busy",
        headers(("Retry-After" = u64, description = "Seconds to wait, when hashing is busy"))
    )]
    Unavailable(ErrorBody),
}

/// What an operation with a JSON body answers for the body itself, before
/// its field rules: it does not parse or fit (`400`), is over
/// [`MAX_BODY_BYTES`](super::MAX_BODY_BYTES) (`413`), or is not JSON (`415`).
#[derive(utoipa::IntoResponses)]
pub enum BodyErrors {
    #[response(status = 400, description = "Malformed body")]
    Malformed(ErrorBody),
    #[response(status = 413, description = "Body over 64 KiB")]
    TooLarge(ErrorBody),
    #[response(status = 415, description = "Body is not JSON")]
    NotJson(ErrorBody),
    #[response(
        status = 408,
        description = "Body not received within HTTP_CLIENT_BODY_TIMEOUT_MS"
    )]
    TooSlow(ErrorBody),
}

/// The authorization of a write to a user or what it owns: no or an invalid
/// token (`401`, checked first), someone else's and not an admin (`403`).
#[derive(utoipa::IntoResponses)]
pub enum OwnerOnly {
    #[response(status = 401, description = "No or invalid token")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "Not the owner")]
    Forbidden(ErrorBody),
}

/// `304` of a cached read whose `ETag` matches `If-None-Match`.
#[derive(utoipa::IntoResponses)]
pub enum CachedRead {
    #[response(status = 304, description = "Not modified")]
    NotModified,
}

#[cfg(test)]
mod tests {
    use serde::Serialize;
    use serde_json::Value;
    use utoipa::PartialSchema;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;

    use super::*;
    use crate::domain::resources::{DataBody, MessageBody, Page};

    /// The property names of a documented envelope.
    fn documented<T: PartialSchema>() -> Vec<String> {
        match T::schema() {
            RefOr::T(Schema::Object(object)) => {
                let mut keys: Vec<String> = object.properties.keys().cloned().collect();
                keys.sort();
                keys
            }
            _ => panic!("an envelope is an object schema"),
        }
    }

    /// The keys of what the generic envelope serializes to.
    fn sent(body: impl Serialize) -> Vec<String> {
        match serde_json::to_value(body) {
            Ok(Value::Object(map)) => {
                let mut keys: Vec<String> = map.keys().cloned().collect();
                keys.sort();
                keys
            }
            other => panic!("an envelope serializes to an object, not {other:?}"),
        }
    }

    #[test]
    fn documented_envelopes_have_the_fields_that_are_sent() {
        let meta = PageMeta {
            page: Some(1),
            after: None,
            limit: 10,
            total: 0,
            total_pages: Some(0),
            total_exact: true,
            next_after: None,
        };
        assert_eq!(documented::<LinkData>(), sent(DataBody { data: 0 }));
        assert_eq!(
            documented::<LinkMessage>(),
            sent(MessageBody {
                message: "ok",
                data: 0
            })
        );
        assert_eq!(
            documented::<LinkPage>(),
            sent(Page::<u8> { data: vec![], meta })
        );
    }
}
