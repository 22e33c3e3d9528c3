//! The platforms' push services: Firebase Cloud Messaging's HTTP v1 API (an OAuth 2
//! access token from a service account, RFC 7523 JWT bearer grant signed RS256) and
//! Apple's APNs HTTP/2 API (a provider token, a JWT signed ES256 with the `.p8` key).
//! Tokens are cached: Google's until shortly before they expire, Apple's for 50
//! minutes (Apple refuses tokens older than an hour and refreshes more often than
//! every 20 minutes).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

use crate::http::{self, Version};

/// How a delivery went.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the platform.
    Sent,
    /// The device token is no longer valid (app uninstalled): forget the device.
    Unregistered,
    /// Failed for now (the platform, the network, the credentials).
    Failed(String),
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `header.claims.signature`, each part base64url without padding (RFC 7515 compact).
fn jwt(
    header: &serde_json::Value,
    claims: &serde_json::Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, String>,
) -> Result<String, String> {
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = sign(input.as_bytes())?;
    Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    match PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("private key: {e}"))? {
        PrivateKeyDer::Pkcs8(der) => Ok(der.secret_pkcs8_der().to_vec()),
        _ => Err("the private key is not PKCS#8 (BEGIN PRIVATE KEY)".into()),
    }
}

/// A Google service account file (the JSON the Firebase console downloads).
#[derive(Deserialize)]
struct ServiceAccount {
    client_email: String,
    private_key: String,
    token_uri: String,
}

/// FCM HTTP v1.
pub struct Fcm {
    project_id: String,
    endpoint: String,
    client_email: String,
    token_uri: String,
    key: RsaKeyPair,
    timeout: Duration,
    access: Mutex<Option<(String, u64)>>,
}

impl Fcm {
    /// Reads the service account; `token_uri` overrides the file's (tests, proxies).
    pub fn new(
        project_id: &str,
        service_account_file: &Path,
        endpoint: &str,
        token_uri: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let text = std::fs::read_to_string(service_account_file)
            .map_err(|e| format!("{}: {e}", service_account_file.display()))?;
        let account: ServiceAccount =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", service_account_file.display()))?;
        let key =
            RsaKeyPair::from_pkcs8(&pkcs8_from_pem(&account.private_key)?).map_err(|e| format!("RSA key: {e}"))?;
        Ok(Fcm {
            project_id: project_id.to_owned(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            client_email: account.client_email,
            token_uri: token_uri.unwrap_or(&account.token_uri).to_owned(),
            key,
            timeout,
            access: Mutex::new(None),
        })
    }

    async fn access_token(&self) -> Result<String, String> {
        let now = now_secs();
        if let Some((token, expires)) = self.access.lock().unwrap_or_else(|e| e.into_inner()).clone()
            && expires > now + 60
        {
            return Ok(token);
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": "https://www.googleapis.com/auth/firebase.messaging",
            "aud": self.token_uri,
            "iat": now,
            "exp": now + 3600,
        });
        let assertion = jwt(&serde_json::json!({"alg": "RS256", "typ": "JWT"}), &claims, |input| {
            let mut signature = vec![0; self.key.public().modulus_len()];
            self.key
                .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input, &mut signature)
                .map_err(|_| "RSA signing failed".to_owned())?;
            Ok(signature)
        })?;
        let body = format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}");
        let request = Request::post(&self.token_uri)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", host_of(&self.token_uri))
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = http::send(request, Version::Http1, self.timeout).await?;
        if response.status != 200 {
            return Err(format!("token endpoint answered {}", response.status));
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
            expires_in: u64,
        }
        let token: Token = serde_json::from_slice(&response.body).map_err(|e| format!("token endpoint: {e}"))?;
        *self.access.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((token.access_token.clone(), now + token.expires_in));
        Ok(token.access_token)
    }

    /// A data message (the app fetches the messages itself) with high priority, which
    /// wakes the app even in Doze.
    pub async fn send(&self, device_token: &str, message_count: u32) -> Delivery {
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(err) => return Delivery::Failed(err),
        };
        let url = format!("{}/v1/projects/{}/messages:send", self.endpoint, self.project_id);
        let body = serde_json::json!({"message": {
            "token": device_token,
            "android": {"priority": "high"},
            "data": {"message-count": message_count.to_string()},
        }});
        let request = match Request::post(&url)
            .header("authorization", format!("Bearer {access}"))
            .header("content-type", "application/json")
            .header("host", host_of(&url))
            .body(Full::new(Bytes::from(body.to_string())))
        {
            Ok(request) => request,
            Err(err) => return Delivery::Failed(err.to_string()),
        };
        match http::send(request, Version::Http1, self.timeout).await {
            Ok(response) if response.status == 200 => Delivery::Sent,
            // UNREGISTERED (404) and a token of another project (403 SENDER_ID_MISMATCH
            // is also the answer for an invalid token format: 400 INVALID_ARGUMENT).
            Ok(response) if response.status == 404 => Delivery::Unregistered,
            Ok(response) => Delivery::Failed(format!("FCM answered {}", response.status)),
            Err(err) => Delivery::Failed(err),
        }
    }
}

/// APNs.
pub struct Apns {
    endpoint: String,
    key_id: String,
    team_id: String,
    topic: String,
    key: EcdsaKeyPair,
    timeout: Duration,
    provider_token: Mutex<Option<(String, u64)>>,
}

impl Apns {
    /// Reads the `.p8` key.
    pub fn new(
        key_file: &Path,
        key_id: &str,
        team_id: &str,
        topic: &str,
        endpoint: &str,
        timeout: Duration,
    ) -> Result<Self, String> {
        let pem = std::fs::read_to_string(key_file).map_err(|e| format!("{}: {e}", key_file.display()))?;
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8_from_pem(&pem)?, &SystemRandom::new())
                .map_err(|e| format!("{}: {e}", key_file.display()))?;
        Ok(Apns {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            key_id: key_id.to_owned(),
            team_id: team_id.to_owned(),
            topic: topic.to_owned(),
            key,
            timeout,
            provider_token: Mutex::new(None),
        })
    }

    fn provider_token(&self) -> Result<String, String> {
        let now = now_secs();
        let mut cached = self.provider_token.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, issued)) = cached.as_ref()
            && now < issued + 50 * 60
        {
            return Ok(token.clone());
        }
        let token = jwt(
            &serde_json::json!({"alg": "ES256", "kid": self.key_id}),
            &serde_json::json!({"iss": self.team_id, "iat": now}),
            |input| {
                self.key
                    .sign(&SystemRandom::new(), input)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| "ECDSA signing failed".to_owned())
            },
        )?;
        *cached = Some((token.clone(), now));
        Ok(token)
    }

    /// An alert the app's notification service extension replaces with the real
    /// message (`mutable-content`), as Monal and Siskin do.
    pub async fn send(&self, device_token: &str, message_count: u32) -> Delivery {
        let token = match self.provider_token() {
            Ok(token) => token,
            Err(err) => return Delivery::Failed(err),
        };
        let url = format!("{}/3/device/{device_token}", self.endpoint);
        let body = serde_json::json!({
            "aps": {"alert": {"title": "New message"}, "mutable-content": 1},
            "message-count": message_count,
        });
        let request = match Request::post(&url)
            .header("authorization", format!("bearer {token}"))
            .header("apns-topic", &self.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .body(Full::new(Bytes::from(body.to_string())))
        {
            Ok(request) => request,
            Err(err) => return Delivery::Failed(err.to_string()),
        };
        match http::send(request, Version::Http2, self.timeout).await {
            Ok(response) if response.status == 200 => Delivery::Sent,
            // 410 Unregistered; 400 BadDeviceToken.
            Ok(response) if response.status == 410 || bad_device_token(&response) => Delivery::Unregistered,
            Ok(response) => Delivery::Failed(format!("APNs answered {}", response.status)),
            Err(err) => Delivery::Failed(err),
        }
    }
}

fn bad_device_token(response: &http::Response) -> bool {
    response.status == 400
        && serde_json::from_slice::<serde_json::Value>(&response.body)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(|r| r == "BadDeviceToken"))
            .unwrap_or(false)
}

/// `host[:port]` of an absolute URL, for the Host header of HTTP/1.1.
fn host_of(url: &str) -> String {
    url.parse::<hyper::Uri>().ok().and_then(|u| u.authority().map(|a| a.to_string())).unwrap_or_default()
}
