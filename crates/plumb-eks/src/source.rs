//! Token sources: credentials + cluster + clock, with a cache that re-mints before expiry.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_smithy_types::error::display::DisplayErrorContext;

use crate::error::{Error, Result};
use crate::token::{EksToken, TOKEN_REFRESH_AFTER, mint_token};

/// A source of the current time; injectable so tests can move time forward.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to (for tests and benchmarks).
#[derive(Debug)]
pub struct ManualClock(StdMutex<SystemTime>);

impl ManualClock {
    /// A clock standing at `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(StdMutex::new(now))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }

    /// Sets the clock to `now`.
    pub fn set(&self, now: SystemTime) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a token is cached by: the cluster, the signing region and the assumed role.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenKey {
    /// The EKS cluster name (the `x-k8s-aws-id` header).
    pub cluster: String,
    /// The region of the STS endpoint the token is signed for.
    pub region: String,
    /// The role assumed before signing, if any.
    pub role_arn: Option<String>,
}

/// Credentials are reused until this long before they expire.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(5 * 60);

#[derive(Default)]
struct State {
    token: Option<EksToken>,
    credentials: Option<Credentials>,
}

/// Mints and caches tokens for one [`TokenKey`]. A token is reused until it is
/// [`TOKEN_REFRESH_AFTER`] old (10 minutes of its 15-minute validity), then re-minted; the
/// credentials behind it are reused until 5 minutes before they expire.
pub struct TokenSource {
    key: TokenKey,
    credentials: SharedCredentialsProvider,
    sts_endpoint: String,
    clock: Arc<dyn Clock>,
    state: tokio::sync::Mutex<State>,
    mints: AtomicU64,
    credential_loads: AtomicU64,
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource")
            .field("key", &self.key)
            .field("sts_endpoint", &self.sts_endpoint)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    /// A token source signing with `credentials` against `sts_endpoint` (see
    /// [`crate::sts_endpoint`]).
    pub fn new(
        key: TokenKey,
        credentials: SharedCredentialsProvider,
        sts_endpoint: impl Into<String>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            key,
            credentials,
            sts_endpoint: sts_endpoint.into(),
            clock,
            state: tokio::sync::Mutex::new(State::default()),
            mints: AtomicU64::new(0),
            credential_loads: AtomicU64::new(0),
        }
    }

    /// The cache key of this source.
    pub fn key(&self) -> &TokenKey {
        &self.key
    }

    /// How many tokens this source has minted (cache misses).
    pub fn mint_count(&self) -> u64 {
        self.mints.load(Ordering::Relaxed)
    }

    /// How many times credentials were loaded from the provider.
    pub fn credential_load_count(&self) -> u64 {
        self.credential_loads.load(Ordering::Relaxed)
    }

    /// Drops the cached token and credentials (e.g. after the API server answered 401).
    pub async fn invalidate(&self) {
        *self.state.lock().await = State::default();
    }

    /// The current token: the cached one while it is younger than [`TOKEN_REFRESH_AFTER`],
    /// a freshly minted one otherwise.
    pub async fn token(&self) -> Result<EksToken> {
        let mut state = self.state.lock().await;
        let now = self.clock.now();
        if let Some(token) = &state.token
            && let Ok(age) = now.duration_since(token.issued_at())
            && age < TOKEN_REFRESH_AFTER
        {
            return Ok(token.clone());
        }
        let fresh_enough = |c: &Credentials| match c.expiry() {
            None => true,
            Some(expiry) => expiry > now + CREDENTIALS_MARGIN,
        };
        let credentials = match state.credentials.take().filter(fresh_enough) {
            Some(c) => c,
            None => {
                self.credential_loads.fetch_add(1, Ordering::Relaxed);
                self.credentials
                    .provide_credentials()
                    .await
                    .map_err(|e| credentials_error(&self.key.cluster, &e))?
            }
        };
        let token = mint_token(
            &credentials,
            &self.key.cluster,
            &self.key.region,
            &self.sts_endpoint,
            now,
        )?;
        self.mints.fetch_add(1, Ordering::Relaxed);
        state.credentials = Some(credentials);
        state.token = Some(token.clone());
        Ok(token)
    }
}

/// Maps a credentials-provider failure to [`Error::Credentials`] with a short code.
pub(crate) fn credentials_error(cluster: &str, err: &CredentialsError) -> Error {
    let code = match err {
        CredentialsError::CredentialsNotLoaded(_) => "CredentialsNotLoaded",
        CredentialsError::ProviderTimedOut(_) => "ProviderTimedOut",
        CredentialsError::InvalidConfiguration(_) => "InvalidConfiguration",
        CredentialsError::ProviderError(_) => "ProviderError",
        _ => "CredentialsError",
    };
    Error::Credentials {
        cluster: cluster.to_string(),
        code: code.to_string(),
        message: DisplayErrorContext(err).to_string(),
    }
}
