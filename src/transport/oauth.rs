//! OAuth 2.1 resource server: the Protected Resource Metadata (RFC 9728)
//! this server publishes, and the validation of JWT access tokens against
//! the issuer's JWKS.
//!
//! At start the issuer's metadata is discovered (RFC 8414, then OpenID
//! Connect discovery) and its JWKS fetched; a start with an unreachable
//! issuer fails. Keys are cached; a token naming an unknown `kid` refetches
//! the JWKS at most once per [`REFRESH_FLOOR`], and a cache older than
//! [`MAX_KEY_AGE`] is refreshed on the next token. Every fetch is bounded in
//! time ([`FETCH_TIMEOUT`]) and size ([`MAX_DOCUMENT`]).
//!
//! A token is accepted when its header names an allowed asymmetric
//! algorithm (never `none`, never HMAC), its signature verifies with a key
//! of the issuer of the matching type, and its claims carry the issuer,
//! an audience naming this server, `exp`/`nbf` within [`LEEWAY_SECS`], a
//! subject, and every required scope. Tokens are never logged.
//!
//! Opaque access tokens are checked by introspection (RFC 7662) when the
//! issuer's metadata has an `introspection_endpoint` and this server has
//! client credentials there (`HEYGEN_OAUTH_CLIENT_ID`,
//! `HEYGEN_OAUTH_CLIENT_SECRET`): a token that is not a JWT (every token, if
//! the issuer publishes no JWKS) is posted to the endpoint with HTTP Basic
//! client authentication, and an active answer must meet the same rules as
//! a JWT's claims. An accepted answer is remembered for at most
//! [`INTROSPECTION_CACHE`] (never past the token's `exp`), by the token's
//! SHA-256, never the token itself.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse},
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use url::Url;

use crate::{
    tools::Principal,
    transport::settings::{ClientSecret, OAuthSettings},
};

/// Signature algorithms a token may use.
pub const ALLOWED_ALGS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];
/// Clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 60;
/// Shortest gap between two JWKS fetches caused by unknown key ids.
pub const REFRESH_FLOOR: Duration = Duration::from_secs(30);
/// A JWKS older than this is refetched on the next token.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Time limit of one metadata or JWKS fetch.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest metadata or JWKS document accepted.
pub const MAX_DOCUMENT: usize = 256 * 1024;
/// Longest access token accepted.
const MAX_TOKEN: usize = 16 * 1024;
/// Longest an introspected token is accepted without asking again.
pub const INTROSPECTION_CACHE: Duration = Duration::from_secs(60);
/// Most introspection answers remembered at once.
const MAX_REMEMBERED: usize = 10_000;

/// Why a request's token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// 401 `invalid_token`, with a description safe to show (no token content).
    Invalid(&'static str),
    /// 403 `insufficient_scope`.
    InsufficientScope,
    /// The issuer could not be asked about an opaque token (503; nothing
    /// is known against the token).
    Unavailable,
}

/// The resource server: what it publishes and how it checks tokens.
pub struct ResourceServer {
    issuer: String,
    /// The canonical URL of the MCP endpoint.
    resource: String,
    audiences: Vec<String>,
    scopes: Vec<String>,
    /// `None`: the issuer publishes no keys; every token is introspected.
    jwks_uri: Option<Url>,
    http: reqwest::Client,
    keys: RwLock<Keys>,
    /// Held while refetching, so concurrent unknown kids cause one fetch.
    refresh: tokio::sync::Mutex<()>,
    introspection: Option<Introspection>,
}

/// Where and as whom opaque tokens are introspected, and the answers
/// accepted lately (by the token's SHA-256, until when).
struct Introspection {
    endpoint: Url,
    client_id: String,
    client_secret: ClientSecret,
    http: reqwest::Client,
    accepted: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

/// An introspection response (RFC 7662 §2.2): the members this server uses.
#[derive(Deserialize)]
struct Introspected {
    active: bool,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    iss: Option<String>,
    #[serde(default)]
    aud: Option<serde_json::Value>,
    #[serde(default)]
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    token_type: Option<String>,
    /// A proof-of-possession binding (DPoP key, mTLS certificate).
    #[serde(default)]
    cnf: Option<serde_json::Value>,
}

struct Keys {
    set: Arc<Vec<Jwk>>,
    fetched: Instant,
}

#[derive(Deserialize)]
struct IssuerMetadata {
    issuer: Option<String>,
    jwks_uri: Option<String>,
    introspection_endpoint: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    #[serde(default)]
    scope: Option<String>,
    /// Some providers (Okta, Entra ID) send scopes as `scp`, a list or a string.
    #[serde(default)]
    scp: Option<serde_json::Value>,
}

fn http_client(loopback: bool) -> Result<reqwest::Client, String> {
    // reqwest is built without a bundled crypto provider; pick ring once.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("heygen-video-mcp/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3));
    if loopback {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
}

/// The client that posts tokens for introspection: like [`http_client`],
/// but never redirected (the token and the client credentials go to the
/// endpoint the metadata names, nowhere else).
fn introspection_client(loopback: bool) -> Result<reqwest::Client, String> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("heygen-video-mcp/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(FETCH_TIMEOUT)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none());
    if loopback {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| format!("the HTTP client could not be built: {e}"))
}

/// An endpoint the issuer's metadata names: https, or http on loopback.
fn secure_url(raw: &str, what: &str) -> Result<Url, String> {
    let u =
        Url::parse(raw).map_err(|e| format!("the issuer's {what} {raw:?} is not a URL: {e}"))?;
    if u.scheme() != "https" && !(u.scheme() == "http" && is_loopback(&u)) {
        return Err(format!("the issuer's {what} {raw:?} is not https"));
    }
    Ok(u)
}

impl Introspection {
    fn remembered(&self, digest: &[u8; 32]) -> Option<Principal> {
        let accepted = self.accepted.lock().ok()?;
        accepted
            .get(digest)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(p, _)| p.clone())
    }

    fn remember(&self, digest: [u8; 32], principal: &Principal, keep: Duration) {
        if keep.is_zero() {
            return;
        }
        let Ok(mut accepted) = self.accepted.lock() else {
            return;
        };
        let now = Instant::now();
        if accepted.len() >= MAX_REMEMBERED {
            accepted.retain(|_, (_, until)| now < *until);
            if accepted.len() >= MAX_REMEMBERED {
                accepted.clear();
            }
        }
        accepted.insert(digest, (principal.clone(), now + keep));
    }

    /// Posts the token to the endpoint (RFC 7662 §2.1) as this server's client.
    async fn ask(&self, token: &str) -> Result<Introspected, String> {
        let url = &self.endpoint;
        let form = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let resp = self
            .http
            .post(url.clone())
            .basic_auth(
                form(&self.client_id),
                Some(form(self.client_secret.expose())),
            )
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("could not reach {url}: {}", short(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(format!(
                "{url} refused this server's client credentials (HTTP {}): check \
                 HEYGEN_OAUTH_CLIENT_ID and HEYGEN_OAUTH_CLIENT_SECRET",
                status.as_u16()
            ));
        }
        let doc = read_json(resp, url).await?;
        serde_json::from_value(doc).map_err(|e| format!("{url} answered no introspection: {e}"))
    }
}

fn is_loopback(u: &Url) -> bool {
    u.host_str().is_some_and(crate::net::is_loopback_host)
}

/// GETs a JSON document, bounded in time and size.
async fn fetch_json(http: &reqwest::Client, url: &Url) -> Result<serde_json::Value, String> {
    let resp = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("could not reach {url}: {}", short(&e)))?;
    read_json(resp, url).await
}

/// A successful answer's JSON body, bounded in size.
async fn read_json(mut resp: reqwest::Response, url: &Url) -> Result<serde_json::Value, String> {
    if !resp.status().is_success() {
        return Err(format!("{url} answered HTTP {}", resp.status().as_u16()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading {url} failed: {}", short(&e)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(format!("{url} is larger than {MAX_DOCUMENT} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))
}

fn short(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {} s", FETCH_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "connection failed".into()
    } else {
        e.to_string()
    }
}

/// Where an issuer's metadata may be, in the order the MCP authorization
/// spec tries them: RFC 8414 (path inserted), OpenID Connect with the path
/// inserted, OpenID Connect appended to the issuer.
fn metadata_urls(issuer: &Url) -> Vec<Url> {
    let path = issuer.path().trim_end_matches('/');
    let mut out = Vec::new();
    let mut at = |p: String| {
        let mut u = issuer.clone();
        u.set_path(&p);
        u.set_query(None);
        u.set_fragment(None);
        if !out.contains(&u) {
            out.push(u);
        }
    };
    at(format!("/.well-known/oauth-authorization-server{path}"));
    at(format!("/.well-known/openid-configuration{path}"));
    at(format!("{path}/.well-known/openid-configuration"));
    out
}

/// The JWKs of a JWKS document that can verify signatures; entries of other
/// kinds (encryption keys, unknown types) are skipped.
fn parse_jwks(doc: serde_json::Value) -> Result<Vec<Jwk>, String> {
    let keys = doc
        .get("keys")
        .and_then(|k| k.as_array())
        .ok_or("the JWKS has no \"keys\" list")?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .filter(|k| {
            k.common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
        })
        .collect())
}

/// Whether `jwk` may verify a signature made with `alg`.
fn key_fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if let Some(declared) = jwk.common.key_algorithm {
        let same = matches!(
            (declared, alg),
            (KeyAlgorithm::RS256, Algorithm::RS256)
                | (KeyAlgorithm::RS384, Algorithm::RS384)
                | (KeyAlgorithm::RS512, Algorithm::RS512)
                | (KeyAlgorithm::PS256, Algorithm::PS256)
                | (KeyAlgorithm::ES256, Algorithm::ES256)
                | (KeyAlgorithm::ES384, Algorithm::ES384)
                | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
        );
        if !same {
            return false;
        }
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256
        ),
        AlgorithmParameters::EllipticCurve(p) => matches!(
            (&p.curve, alg),
            (EllipticCurve::P256, Algorithm::ES256) | (EllipticCurve::P384, Algorithm::ES384)
        ),
        AlgorithmParameters::OctetKeyPair(p) => {
            p.curve == EllipticCurve::Ed25519 && alg == Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => false,
    }
}

impl ResourceServer {
    /// Discovers the issuer's metadata and keys; `resource` is the public
    /// URL of the MCP endpoint. Fails with an operator-facing message.
    pub async fn discover(settings: &OAuthSettings, resource: &Url) -> Result<Self, String> {
        let issuer_url = Url::parse(&settings.issuer)
            .map_err(|e| format!("HEYGEN_OAUTH_ISSUER is not a URL: {e}"))?;
        let credentials = match (&settings.client_id, &settings.client_secret) {
            (Some(id), Some(secret)) => Some((id.clone(), secret.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err("HEYGEN_OAUTH_CLIENT_ID is set but HEYGEN_OAUTH_CLIENT_SECRET is not:                      token introspection needs both (the secret in the environment only)"
                    .into());
            }
            (None, Some(_)) => {
                return Err("HEYGEN_OAUTH_CLIENT_SECRET is set but HEYGEN_OAUTH_CLIENT_ID is not:                      token introspection needs both"
                    .into());
            }
        };
        let http = http_client(is_loopback(&issuer_url))?;
        let mut tried = Vec::new();
        let mut found = None;
        for url in metadata_urls(&issuer_url) {
            match fetch_json(&http, &url).await {
                Ok(doc) => {
                    let meta: IssuerMetadata = serde_json::from_value(doc)
                        .map_err(|e| format!("the issuer metadata at {url} is malformed: {e}"))?;
                    let named = meta.issuer.clone().unwrap_or_default();
                    if named != settings.issuer {
                        return Err(format!(
                            "the issuer metadata at {url} names the issuer {named:?}, not \
                             HEYGEN_OAUTH_ISSUER {:?}; set HEYGEN_OAUTH_ISSUER to exactly the \
                             issuer the provider's tokens carry (mind the trailing slash)",
                            settings.issuer
                        ));
                    }
                    found = Some((url, meta));
                    break;
                }
                Err(e) => tried.push(e),
            }
        }
        let Some((meta_url, meta)) = found else {
            return Err(format!(
                "the OAuth issuer {} is unreachable or publishes no metadata ({}). Check \
                 HEYGEN_OAUTH_ISSUER and that this server can reach it.",
                settings.issuer,
                tried.join("; ")
            ));
        };
        let introspection = match (credentials, &meta.introspection_endpoint) {
            (Some((client_id, client_secret)), Some(raw)) => {
                let endpoint = secure_url(raw, "introspection_endpoint")?;
                Some(Introspection {
                    http: introspection_client(is_loopback(&endpoint))?,
                    endpoint,
                    client_id,
                    client_secret,
                    accepted: Mutex::default(),
                })
            }
            (Some(_), None) => {
                return Err(format!(
                    "HEYGEN_OAUTH_CLIENT_ID is set for token introspection, but the issuer \
                     metadata at {meta_url} has no introspection_endpoint: enable introspection \
                     (RFC 7662) at the provider, or unset HEYGEN_OAUTH_CLIENT_ID and \
                     HEYGEN_OAUTH_CLIENT_SECRET to accept JWT access tokens only"
                ));
            }
            (None, Some(_)) => {
                tracing::info!(
                    "the OAuth issuer offers token introspection; set HEYGEN_OAUTH_CLIENT_ID and \
                     HEYGEN_OAUTH_CLIENT_SECRET to accept its opaque access tokens too"
                );
                None
            }
            (None, None) => None,
        };
        let jwks_uri = match &meta.jwks_uri {
            Some(raw) => Some(secure_url(raw, "jwks_uri")?),
            None if introspection.is_some() => None,
            None => {
                return Err(format!(
                    "the issuer metadata at {meta_url} has no jwks_uri: this server validates \
                     JWT access tokens and needs the issuer's signing keys (or, for opaque \
                     tokens, set HEYGEN_OAUTH_CLIENT_ID and HEYGEN_OAUTH_CLIENT_SECRET for \
                     token introspection)"
                ));
            }
        };
        let (http, set) = match &jwks_uri {
            Some(jwks_uri) => {
                let http = http_client(is_loopback(jwks_uri))?;
                let set = fetch_json(&http, jwks_uri)
                    .await
                    .and_then(parse_jwks)
                    .map_err(|e| format!("the issuer's signing keys could not be loaded: {e}"))?;
                if set.is_empty() && introspection.is_none() {
                    return Err(format!(
                        "the issuer's JWKS at {jwks_uri} holds no signing key this server can use"
                    ));
                }
                (http, set)
            }
            None => (http, Vec::new()),
        };
        let resource = resource.to_string();
        let mut audiences = vec![resource.clone()];
        audiences.extend(settings.audiences.iter().cloned());
        // A trailing slash is the same resource to most providers.
        if let Some(bare) = resource.strip_suffix('/') {
            audiences.push(bare.to_string());
        } else {
            audiences.push(format!("{resource}/"));
        }
        Ok(Self {
            issuer: settings.issuer.clone(),
            resource,
            audiences,
            scopes: settings.scopes.clone(),
            jwks_uri,
            http,
            keys: RwLock::new(Keys {
                set: Arc::new(set),
                fetched: Instant::now(),
            }),
            refresh: tokio::sync::Mutex::new(()),
            introspection,
        })
    }

    /// Whether opaque tokens are checked by introspection.
    pub fn introspects(&self) -> bool {
        self.introspection.is_some()
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn resource(&self) -> &str {
        &self.resource
    }

    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// The Protected Resource Metadata document (RFC 9728).
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::json!({
            "resource": self.resource,
            "authorization_servers": [self.issuer],
            "scopes_supported": self.scopes,
            "bearer_methods_supported": ["header"],
            "resource_name": "heygen-video-mcp",
        })
    }

    fn cached(&self) -> (Arc<Vec<Jwk>>, Instant) {
        match self.keys.read() {
            Ok(k) => (k.set.clone(), k.fetched),
            Err(p) => {
                let k = p.into_inner();
                (k.set.clone(), k.fetched)
            }
        }
    }

    /// Refetches the JWKS unless another fetch happened within the floor.
    async fn refresh(&self) {
        let _one = self.refresh.lock().await;
        if self.cached().1.elapsed() < REFRESH_FLOOR {
            return;
        }
        let Some(jwks_uri) = &self.jwks_uri else {
            return;
        };
        let fresh = fetch_json(&self.http, jwks_uri).await.and_then(parse_jwks);
        let mut keys = match self.keys.write() {
            Ok(k) => k,
            Err(p) => p.into_inner(),
        };
        // A failed fetch keeps the old keys, and waits out the floor too.
        keys.fetched = Instant::now();
        match fresh {
            Ok(set) if !set.is_empty() => keys.set = Arc::new(set),
            Ok(_) => tracing::warn!("the issuer's JWKS holds no usable key; keeping the old keys"),
            Err(e) => tracing::warn!("refreshing the issuer's JWKS failed: {e}"),
        }
    }

    /// The keys that may have signed a token with this `kid` and `alg`.
    async fn candidates(&self, kid: Option<&str>, alg: Algorithm) -> Vec<Jwk> {
        let pick = |set: &[Jwk]| -> Vec<Jwk> {
            set.iter()
                .filter(|k| match kid {
                    Some(kid) => k.common.key_id.as_deref() == Some(kid),
                    None => true,
                })
                .filter(|k| key_fits(k, alg))
                .cloned()
                .collect()
        };
        let (set, fetched) = self.cached();
        let found = pick(&set);
        if !found.is_empty() && fetched.elapsed() < MAX_KEY_AGE {
            return found;
        }
        if found.is_empty() && fetched.elapsed() < REFRESH_FLOOR {
            return found;
        }
        self.refresh().await;
        pick(&self.cached().0)
    }

    /// Validates a bearer token; the signed-in caller on success.
    pub async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        if token.is_empty() || token.len() > MAX_TOKEN {
            return Err(Rejection::Invalid("the access token is malformed"));
        }
        if let Some(introspection) = &self.introspection
            && (self.jwks_uri.is_none() || jsonwebtoken::decode_header(token).is_err())
        {
            return self.introspect(introspection, token).await;
        }
        // An unknown alg (`none` included) fails to parse here.
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            Rejection::Invalid("the access token is not a JWT signed with an accepted algorithm")
        })?;
        if !ALLOWED_ALGS.contains(&header.alg) {
            return Err(Rejection::Invalid(
                "the access token's signature algorithm is not accepted",
            ));
        }
        let keys = self.candidates(header.kid.as_deref(), header.alg).await;
        if keys.is_empty() {
            return Err(Rejection::Invalid(
                "the access token is signed with a key the issuer does not publish",
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&self.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let mut last = Rejection::Invalid("the access token's signature is invalid");
        for jwk in &keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
                Ok(data) => return self.authorize(data.claims),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => {
                            Rejection::Invalid("the access token's signature is invalid")
                        }
                        ErrorKind::ExpiredSignature => {
                            Rejection::Invalid("the access token has expired")
                        }
                        ErrorKind::ImmatureSignature => {
                            Rejection::Invalid("the access token is not valid yet")
                        }
                        ErrorKind::InvalidAudience => Rejection::Invalid(
                            "the access token is not meant for this server (audience)",
                        ),
                        ErrorKind::InvalidIssuer => {
                            Rejection::Invalid("the access token comes from another issuer")
                        }
                        ErrorKind::MissingRequiredClaim(_) => Rejection::Invalid(
                            "the access token lacks a required claim (exp, iss, aud or sub)",
                        ),
                        _ => Rejection::Invalid("the access token is malformed"),
                    };
                    // Only a bad signature is worth another key of the same id.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    /// Checks an opaque token with the issuer (or the answer remembered
    /// for it).
    async fn introspect(&self, with: &Introspection, token: &str) -> Result<Principal, Rejection> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(p) = with.remembered(&digest) {
            return Ok(p);
        }
        let answer = with.ask(token).await.map_err(|e| {
            tracing::warn!("token introspection failed: {e}");
            Rejection::Unavailable
        })?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let exp = answer.exp;
        let principal = self.check_introspected(answer, now)?;
        let mut keep = INTROSPECTION_CACHE;
        if let Some(exp) = exp {
            keep = keep.min(Duration::from_secs(exp.saturating_sub(now)));
        }
        with.remember(digest, &principal, keep);
        Ok(principal)
    }

    /// The rules of a JWT's claims, applied to an introspection answer.
    fn check_introspected(&self, a: Introspected, now: u64) -> Result<Principal, Rejection> {
        if !a.active {
            return Err(Rejection::Invalid(
                "the access token is not active (expired, revoked or unknown to the issuer)",
            ));
        }
        if let Some(t) = &a.token_type
            && !t.eq_ignore_ascii_case("bearer")
            && !t.eq_ignore_ascii_case("access_token")
        {
            return Err(Rejection::Invalid("the token is not a bearer access token"));
        }
        if a.cnf.is_some() {
            return Err(Rejection::Invalid(
                "the access token is bound to a key or certificate, which this server does not check",
            ));
        }
        if a.iss.as_ref().is_some_and(|iss| *iss != self.issuer) {
            return Err(Rejection::Invalid(
                "the access token comes from another issuer",
            ));
        }
        let names_us = |v: &serde_json::Value| {
            v.as_str()
                .is_some_and(|s| self.audiences.iter().any(|a| a == s))
        };
        let audience_ok = match &a.aud {
            Some(serde_json::Value::Array(items)) => items.iter().any(names_us),
            Some(v) => names_us(v),
            None => false,
        };
        if !audience_ok {
            return Err(Rejection::Invalid(
                "the access token is not meant for this server (audience)",
            ));
        }
        if a.exp
            .is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) < now)
        {
            return Err(Rejection::Invalid("the access token has expired"));
        }
        if a.nbf
            .is_some_and(|nbf| nbf > now.saturating_add(LEEWAY_SECS))
        {
            return Err(Rejection::Invalid("the access token is not valid yet"));
        }
        let Some(sub) = a.sub else {
            return Err(Rejection::Invalid(
                "the access token lacks a required claim (exp, iss, aud or sub)",
            ));
        };
        self.authorize(Claims {
            sub,
            iss: self.issuer.clone(),
            scope: a.scope,
            scp: None,
        })
    }

    fn authorize(&self, claims: Claims) -> Result<Principal, Rejection> {
        if claims.sub.trim().is_empty() {
            return Err(Rejection::Invalid("the access token has an empty subject"));
        }
        let mut granted: Vec<String> = claims
            .scope
            .as_deref()
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        match claims.scp {
            Some(serde_json::Value::String(s)) => {
                granted.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
            }
            Some(serde_json::Value::Array(items)) => {
                granted.extend(items.iter().filter_map(|v| v.as_str().map(str::to_string)));
            }
            _ => {}
        }
        if !self.scopes.iter().all(|s| granted.contains(s)) {
            return Err(Rejection::InsufficientScope);
        }
        Ok(Principal {
            issuer: claims.iss,
            subject: claims.sub,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_locations() {
        let u = |s: &str| Url::parse(s).unwrap();
        let got: Vec<String> = metadata_urls(&u("https://as.example/tenant/"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://as.example/.well-known/oauth-authorization-server/tenant",
                "https://as.example/.well-known/openid-configuration/tenant",
                "https://as.example/tenant/.well-known/openid-configuration",
            ]
        );
        let got: Vec<String> = metadata_urls(&u("https://as.example"))
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            got,
            [
                "https://as.example/.well-known/oauth-authorization-server",
                "https://as.example/.well-known/openid-configuration",
            ]
        );
    }

    #[test]
    fn jwks_skips_hmac_and_encryption_keys() {
        let doc = serde_json::json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h"},
            {"kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "sig",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
             "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird"}
        ]});
        let keys = parse_jwks(doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert!(key_fits(&keys[0], Algorithm::ES256));
        assert!(!key_fits(&keys[0], Algorithm::ES384));
        assert!(!key_fits(&keys[0], Algorithm::RS256));
    }
}
