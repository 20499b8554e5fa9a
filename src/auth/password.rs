//! Argon2id password hashes (PHC strings). Hashing is deliberately slow, so
//! it runs on the blocking pool, never on an actix worker — and at most one
//! hash per core at a time: each takes ~19 MiB and a core for tens of
//! milliseconds, so a burst of registrations or logins queues here instead of
//! starting hundreds of blocking threads that hold gigabytes between them.

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::ApiError;

pub async fn hash(password: String) -> Result<String, ApiError> {
    blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("hashing a password failed: {e}")))
    })
    .await
}

/// `false` for a wrong password or an unreadable stored hash.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    blocking(move || {
        let Ok(parsed) = argon2::PasswordHash::new(&stored) else {
            tracing::error!("a stored password hash is not a PHC string");
            return Ok(false);
        };
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
}

/// A hash to verify against when the login is unknown, so an unknown login
/// takes as long as a wrong password (no user enumeration by timing).
pub async fn dummy_verify(password: String) -> Result<(), ApiError> {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let stored = match DUMMY.get() {
        Some(h) => h.clone(),
        None => {
            let h = hash("linkhub-timing-equalizer".to_owned()).await?;
            DUMMY.get_or_init(|| h).clone()
        }
    };
    verify(password, stored).await.map(drop)
}

/// Admits one hash per core.
static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> = std::sync::LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    tokio::sync::Semaphore::new(cores)
});

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|e| ApiError::internal(format!("password hashing is shut down: {e}")))?;
    // The blocking thread logs under the span of the request that hashes.
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(|e| ApiError::internal(format!("password task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let h = super::hash("correct horse".into()).await.expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(
            super::verify("correct horse".into(), h.clone())
                .await
                .expect("verifies")
        );
        assert!(
            !super::verify("wrong horse".into(), h)
                .await
                .expect("verifies")
        );
    }
}
