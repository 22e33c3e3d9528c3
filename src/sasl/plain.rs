//! SASL PLAIN (RFC 4616), offered only on encrypted streams.

use super::{SaslFailure, ScramCredentials, ScramHash, Step};

/// A PLAIN exchange: one message, then a password check against stored SCRAM keys.
pub(super) struct Plain {
    pending: Option<(String, Option<String>, String)>,
}

impl Plain {
    pub(super) fn new() -> Self {
        Plain { pending: None }
    }

    /// `[authzid] NUL authcid NUL passwd`
    pub(super) fn step(&mut self, input: &[u8]) -> Step {
        if self.pending.is_some() || input.len() > 1024 {
            return Step::Failure(SaslFailure::MalformedRequest);
        }
        let Ok(text) = std::str::from_utf8(input) else { return Step::Failure(SaslFailure::MalformedRequest) };
        let mut parts = text.split('\0');
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Step::Failure(SaslFailure::MalformedRequest);
        };
        let Ok(username) = stringprep::saslprep(authcid) else { return Step::Failure(SaslFailure::MalformedRequest) };
        if username.is_empty() || password.is_empty() {
            return Step::Failure(SaslFailure::MalformedRequest);
        }
        let username = username.into_owned();
        let authzid = (!authzid.is_empty()).then(|| authzid.to_owned());
        self.pending = Some((username.clone(), authzid, password.to_owned()));
        // Every account has SHA-1 keys (they are made for every password, and upgrade
        // tasks only add others), so the password can always be checked against them.
        Step::NeedCredentials { username, hash: ScramHash::Sha1 }
    }

    pub(super) fn credentials(&mut self, creds: Option<ScramCredentials>) -> Step {
        let Some((username, authzid, password)) = self.pending.take() else {
            return Step::Failure(SaslFailure::MalformedRequest);
        };
        match creds {
            Some(creds) if creds.verify_password(&password) => {
                Step::Success { username, authzid, additional_data: None }
            }
            _ => Step::Failure(SaslFailure::NotAuthorized),
        }
    }
}
