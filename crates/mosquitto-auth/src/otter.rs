//! Asking Otter: the plugin holds no device secrets and makes no decision of its own; it posts
//! EMQX-shaped requests to Otter's `/api/v1/broker/authn` and `/authz` (the one decision
//! function, shared with the embedded broker) and remembers positive answers for a while, so
//! Mosquitto's single thread does not wait on HTTP for every message. Anything unexpected —
//! Otter down, a timeout, an odd answer — is a refusal.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one call to Otter may take before the client is refused.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Most answers remembered; beyond it, expired ones are swept, then all are forgotten.
const MAX_CACHED: usize = 100_000;

/// Settings from `plugin_opt_*` lines of mosquitto.conf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `plugin_opt_otter_url`: Otter's base URL, e.g. `http://10.0.0.2:8080`.
    pub otter_url: String,
    /// `plugin_opt_secret`: the broker secret (`otter serve --broker-secret`).
    pub secret: String,
    /// `plugin_opt_cache_secs`: how long an "allow" is remembered (0: never).
    pub cache: Duration,
}

/// Default of `plugin_opt_cache_secs`.
pub const DEFAULT_CACHE_SECS: u64 = 30;

#[derive(Debug, PartialEq, Eq)]
pub enum OptionsError {
    Missing(&'static str),
    Invalid(&'static str),
}

impl std::fmt::Display for OptionsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing(key) => write!(f, "plugin_opt_{key} is required"),
            Self::Invalid(key) => write!(f, "plugin_opt_{key} is invalid"),
        }
    }
}

impl Options {
    /// Reads the options from `(key, value)` pairs (keys without `plugin_opt_`).
    pub fn parse<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, OptionsError> {
        let (mut url, mut secret, mut cache) = (None, None, None);
        for (key, value) in pairs {
            match key {
                "otter_url" => url = Some(value.trim().trim_end_matches('/').to_owned()),
                "secret" => secret = Some(value.trim().to_owned()),
                "cache_secs" => {
                    let secs = value.trim().parse::<u64>();
                    cache = Some(secs.map_err(|_| OptionsError::Invalid("cache_secs"))?);
                }
                _ => {}
            }
        }
        let otter_url = url
            .filter(|u| !u.is_empty())
            .ok_or(OptionsError::Missing("otter_url"))?;
        if !(otter_url.starts_with("http://") || otter_url.starts_with("https://")) {
            return Err(OptionsError::Invalid("otter_url"));
        }
        Ok(Self {
            otter_url,
            secret: secret
                .filter(|s| !s.is_empty())
                .ok_or(OptionsError::Missing("secret"))?,
            cache: Duration::from_secs(cache.unwrap_or(DEFAULT_CACHE_SECS)),
        })
    }
}

/// The body of an authn request (EMQX 5 shape).
#[derive(Debug, Serialize)]
pub struct AuthnRequest<'a> {
    pub clientid: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub peerhost: Option<&'a str>,
}

/// The body of an authz request (EMQX 5 shape).
#[derive(Debug, Serialize)]
pub struct AuthzRequest<'a> {
    pub clientid: &'a str,
    pub username: Option<&'a str>,
    pub topic: &'a str,
    /// `publish` or `subscribe`.
    pub action: &'a str,
    pub peerhost: Option<&'a str>,
}

#[derive(Debug, Deserialize)]
struct Answer {
    result: String,
    #[serde(default)]
    is_superuser: bool,
}

/// Otter's verdict on a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow { superuser: bool },
    Deny,
}

/// Why Otter gave no verdict (the client is refused all the same).
#[derive(Debug)]
pub enum AskError {
    Http(String),
    Answer(String),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(e) => write!(f, "calling Otter failed: {e}"),
            Self::Answer(e) => write!(f, "unexpected answer from Otter: {e}"),
        }
    }
}

/// The user name Otter nodes log in with (`otter serve --broker-username` default).
pub const NODE_USERNAME: &str = "otter-node";

pub struct Otter {
    options: Options,
    agent: ureq::Agent,
    cache: Mutex<Cache>,
}

impl Otter {
    pub fn new(options: Options) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .max_redirects(0)
            .build()
            .into();
        Self {
            options,
            agent,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// May this client connect? A superuser (an Otter node) skips later ACL calls.
    pub fn authn(&self, req: &AuthnRequest<'_>) -> Result<Verdict, AskError> {
        let verdict = match req.username {
            // Nodes are checked here, against the broker secret we were given: the first node
            // logs in while it is starting, before any Otter could answer a hook call.
            Some(NODE_USERNAME) => self.node_login(req),
            _ => self.ask("authn", req)?,
        };
        if let (Verdict::Allow { superuser: true }, Some(username)) = (verdict, req.username) {
            self.remember(superuser_key(req.clientid, username), verdict);
        }
        Ok(verdict)
    }

    /// `otter-node` with a client id `otter-node…` and the broker secret; nothing else.
    fn node_login(&self, req: &AuthnRequest<'_>) -> Verdict {
        let password = req.password.unwrap_or_default().as_bytes();
        let secret = self.options.secret.as_bytes();
        // Constant time in the password's content (its length is not secret).
        let same = password.len() == secret.len()
            && password
                .iter()
                .zip(secret)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same && req.clientid.starts_with(NODE_USERNAME) {
            Verdict::Allow { superuser: true }
        } else {
            Verdict::Deny
        }
    }

    /// May this connected client publish to / subscribe to (or receive from) this topic?
    pub fn authz(&self, req: &AuthzRequest<'_>) -> Result<bool, AskError> {
        if let Some(username) = req.username
            && self
                .recall(&superuser_key(req.clientid, username))
                .is_some()
        {
            return Ok(true);
        }
        Ok(matches!(self.ask("authz", req)?, Verdict::Allow { .. }))
    }

    /// One hook call, answered from the cache when an "allow" for the same request is fresh.
    fn ask(&self, hook: &str, req: &impl Serialize) -> Result<Verdict, AskError> {
        let body = serde_json::to_string(req).map_err(|e| AskError::Answer(e.to_string()))?;
        let key = format!("{hook}\n{body}");
        if let Some(verdict) = self.recall(&key) {
            return Ok(verdict);
        }
        let verdict = self.post(hook, &body)?;
        if matches!(verdict, Verdict::Allow { .. }) {
            self.remember(key, verdict);
        }
        Ok(verdict)
    }

    fn post(&self, hook: &str, body: &str) -> Result<Verdict, AskError> {
        let url = format!("{}/api/v1/broker/{hook}", self.options.otter_url);
        let text = self
            .agent
            .post(&url)
            .header("Authorization", format!("Bearer {}", self.options.secret))
            .header("Content-Type", "application/json")
            .send(body)
            .and_then(|mut resp| resp.body_mut().read_to_string())
            .map_err(|e| AskError::Http(e.to_string()))?;
        let answer: Answer =
            serde_json::from_str(&text).map_err(|e| AskError::Answer(e.to_string()))?;
        match answer.result.as_str() {
            "allow" => Ok(Verdict::Allow {
                superuser: answer.is_superuser,
            }),
            "deny" => Ok(Verdict::Deny),
            other => Err(AskError::Answer(format!("result {other:?}"))),
        }
    }

    fn recall(&self, key: &str) -> Option<Verdict> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(key, Instant::now())
    }

    fn remember(&self, key: String, verdict: Verdict) {
        if self.options.cache.is_zero() {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        cache.put(key, verdict, now + self.options.cache, now);
    }
}

/// Cache key marking a (client id, user name) that logged in as a superuser.
fn superuser_key(client_id: &str, username: &str) -> String {
    format!("superuser\n{client_id}\n{username}")
}

/// Remembered verdicts with their expiry; bounded in size.
#[derive(Default)]
struct Cache {
    entries: HashMap<String, (Verdict, Instant)>,
}

impl Cache {
    fn get(&self, key: &str, now: Instant) -> Option<Verdict> {
        match self.entries.get(key) {
            Some((verdict, expires)) if *expires > now => Some(*verdict),
            _ => None,
        }
    }

    fn put(&mut self, key: String, verdict: Verdict, expires: Instant, now: Instant) {
        if self.entries.len() >= MAX_CACHED {
            self.entries.retain(|_, (_, e)| *e > now);
            if self.entries.len() >= MAX_CACHED {
                self.entries.clear();
            }
        }
        self.entries.insert(key, (verdict, expires));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_checked_locally_against_the_secret() {
        // An unreachable Otter: any call to it would fail, so these verdicts are the plugin's own.
        let otter = Otter::new(Options {
            otter_url: "http://127.0.0.1:9".into(),
            secret: "s3cret".into(),
            cache: Duration::from_secs(30),
        });
        let login = |clientid, password| AuthnRequest {
            clientid,
            username: Some(NODE_USERNAME),
            password,
            peerhost: None,
        };
        let allow = Verdict::Allow { superuser: true };
        assert_eq!(
            otter.authn(&login("otter-node-1", Some("s3cret"))).unwrap(),
            allow
        );
        for (clientid, password) in [
            ("otter-node-1", Some("s3creT")),
            ("otter-node-1", Some("s3cret!")),
            ("otter-node-1", None),
            ("device-1", Some("s3cret")),
        ] {
            assert_eq!(
                otter.authn(&login(clientid, password)).unwrap(),
                Verdict::Deny
            );
        }
    }

    #[test]
    fn options_need_url_and_secret() {
        let o = Options::parse([
            ("otter_url", "http://127.0.0.1:8080/"),
            ("secret", "s"),
            ("cache_secs", "5"),
            ("other", "x"),
        ])
        .unwrap();
        assert_eq!(o.otter_url, "http://127.0.0.1:8080");
        assert_eq!(o.cache, Duration::from_secs(5));
        assert_eq!(
            Options::parse([("secret", "s")]),
            Err(OptionsError::Missing("otter_url"))
        );
        assert_eq!(
            Options::parse([("otter_url", "http://h")]),
            Err(OptionsError::Missing("secret"))
        );
        assert_eq!(
            Options::parse([("otter_url", "ftp://h"), ("secret", "s")]),
            Err(OptionsError::Invalid("otter_url"))
        );
        assert_eq!(
            Options::parse([
                ("otter_url", "http://h"),
                ("secret", "s"),
                ("cache_secs", "-1")
            ]),
            Err(OptionsError::Invalid("cache_secs"))
        );
        let d = Options::parse([("otter_url", "http://h"), ("secret", "s")]).unwrap();
        assert_eq!(d.cache, Duration::from_secs(DEFAULT_CACHE_SECS));
    }

    #[test]
    fn cache_expires_and_stays_bounded() {
        let mut c = Cache::default();
        let now = Instant::now();
        let allow = Verdict::Allow { superuser: false };
        c.put("a".into(), allow, now + Duration::from_secs(1), now);
        assert_eq!(c.get("a", now), Some(allow));
        assert_eq!(c.get("a", now + Duration::from_secs(2)), None);
        assert_eq!(c.get("b", now), None);
        for i in 0..MAX_CACHED + 10 {
            c.put(i.to_string(), allow, now + Duration::from_secs(60), now);
        }
        assert!(c.entries.len() <= MAX_CACHED);
    }

    #[test]
    fn unreachable_otter_is_an_error_not_an_allow() {
        // A port nothing listens on (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let otter = Otter::new(Options {
            otter_url: format!("http://127.0.0.1:{port}"),
            secret: "s".into(),
            cache: Duration::from_secs(30),
        });
        let req = AuthnRequest {
            clientid: "c",
            username: Some("u"),
            password: Some("p"),
            peerhost: None,
        };
        assert!(otter.authn(&req).is_err());
    }
}
