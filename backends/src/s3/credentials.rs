//! AWS credentials from `aws-config`'s default chain, handed to object_store.
//!
//! object_store alone reads only environment keys, web identity, ECS and IMDS; the AWS SDK chain
//! also reads the shared config/credentials files, named profiles, SSO, `credential_process` and
//! assume-role profiles. The chain is built on first use (so opening a target makes no request)
//! and its credentials are cached until five minutes before they expire.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_config::Region;
use aws_credential_types::provider::ProvideCredentials;
use object_store::aws::AwsCredential;
use object_store::CredentialProvider;
use tokio::sync::{Mutex, OnceCell};

/// The AWS chain found no credentials (the chain's error is the source).
#[derive(Debug, thiserror::Error)]
#[error(
    "no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or \
     storage.access_key_id/secret_access_key)"
)]
struct NoCredentials(#[source] aws_credential_types::provider::error::CredentialsError);

/// Credentials are renewed this long before they expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// An object_store [`CredentialProvider`] over the AWS SDK's default credential chain.
#[derive(Debug)]
pub struct AwsChainCredentials {
    profile: Option<String>,
    region: String,
    chain: OnceCell<DefaultCredentialsChain>,
    cached: Mutex<Option<Cached>>,
}

#[derive(Debug)]
struct Cached {
    credential: Arc<AwsCredential>,
    expires: Option<SystemTime>,
}

impl AwsChainCredentials {
    /// The chain for `profile` (else `AWS_PROFILE`, else `default`); `region` is used for STS
    /// and SSO calls, so that the chain never asks IMDS for one.
    pub fn new(profile: Option<String>, region: String) -> Self {
        AwsChainCredentials {
            profile,
            region,
            chain: OnceCell::new(),
            cached: Mutex::new(None),
        }
    }

    async fn chain(&self) -> &DefaultCredentialsChain {
        self.chain
            .get_or_init(|| async {
                let mut builder =
                    DefaultCredentialsChain::builder().region(Region::new(self.region.clone()));
                if let Some(p) = &self.profile {
                    builder = builder.profile_name(p);
                }
                builder.build().await
            })
            .await
    }
}

#[async_trait]
impl CredentialProvider for AwsChainCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        // One caller refreshes at a time; the others wait and reuse its result.
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            let fresh = c
                .expires
                .is_none_or(|at| SystemTime::now() + REFRESH_MARGIN < at);
            if fresh {
                return Ok(c.credential.clone());
            }
        }
        let creds = self
            .chain()
            .await
            .provide_credentials()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: "S3",
                source: Box::new(NoCredentials(e)),
            })?;
        let credential = Arc::new(AwsCredential {
            key_id: creds.access_key_id().to_string(),
            secret_key: creds.secret_access_key().to_string(),
            token: creds.session_token().map(str::to_string),
        });
        *cached = Some(Cached {
            credential: credential.clone(),
            expires: creds.expiry(),
        });
        Ok(credential)
    }
}
