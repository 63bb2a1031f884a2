//! The admin commands' HTTP client of `/api/v1`: requests are otter-api types serialized,
//! answers are otter-api types deserialized. With `--json` a command prints exactly one JSON
//! document (the API's answer); otherwise a short human summary.

use anyhow::{Context, Result, bail};
use clap::Args;
use otter_api::ErrorBody;
use reqwest::{Method, RequestBuilder};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Server base URL; `host:port` alone means `http://host:port`.
    #[arg(long, env = "OTTER_SERVER", default_value = "http://127.0.0.1:8080", value_parser = server_url)]
    server: String,
    /// Admin or API token [default: the admin-token file in --data-dir].
    #[arg(long, env = "OTTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The server's data folder, where `otter serve` wrote `admin-token` (used when no token
    /// is given).
    #[arg(long, env = "OTTER_DATA_DIR", default_value = "otter-data")]
    data_dir: PathBuf,
    /// Print one machine-readable JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The generated admin token `otter serve` leaves in its data dir: what admin commands use
/// when no token is given.
pub fn token_in(dir: &std::path::Path) -> Result<String> {
    let path = dir.join("admin-token");
    std::fs::read_to_string(&path)
        .map(|t| t.trim().to_owned())
        .with_context(|| {
            format!(
                "no admin token: pass --token (or set OTTER_TOKEN), or point --data-dir (OTTER_DATA_DIR) at the server's data folder; {} is not readable",
                path.display()
            )
        })
}

/// The admin token in `OTTER_DATA_DIR` (or `./otter-data`), for commands without `--data-dir`.
pub fn token_from_data_dir() -> Result<String> {
    let dir = std::env::var_os("OTTER_DATA_DIR")
        .map_or_else(|| PathBuf::from("otter-data"), PathBuf::from);
    token_in(&dir)
}

/// `--server`: a base URL; a bare `host:port` gets `http://`.
fn server_url(text: &str) -> Result<String, String> {
    let text = text.trim().trim_end_matches('/');
    let full = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = reqwest::Url::parse(&full)
        .map_err(|e| format!("{text:?} is not a server URL like http://127.0.0.1:8080 ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(full),
        "http" | "https" => Err(format!("{text:?} names no host")),
        other => Err(format!(
            "{text:?}: the scheme must be http or https, not {other}"
        )),
    }
}

/// Writes a line to standard output. A closed pipe (`otter product list | head -1`) ends the
/// program quietly and successfully, as it does for other Unix tools, instead of panicking.
pub fn print_line(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: writing to standard output: {e}");
        std::process::exit(1);
    }
}

/// A time cell: [`human_time`], `-` for none.
pub fn time_cell(t: Option<otter_api::Timestamp>) -> String {
    t.map_or("-".to_owned(), |t| human_time(t.as_ms()))
}

/// A query string value, percent-encoded.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Unix ms as people read it: `2026-12-07 23:59:58 UTC` (`-` when out of range). `--json`
/// keeps the API's Unix ms.
pub fn human_time(ms: i64) -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| "-".into())
}

/// "No body" for [`Conn::call`].
pub const NO_BODY: Option<&()> = None;

impl Conn {
    fn token(&self) -> Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        token_in(&self.data_dir)
    }

    pub fn request(&self, method: Method, path: &str) -> Result<RequestBuilder> {
        let url = format!("{}/api/v1{path}", self.server.trim_end_matches('/'));
        Ok(reqwest::Client::new()
            .request(method, url)
            .bearer_auth(self.token()?))
    }

    /// Sends the request; a success's body as `T`, a failure as an error with the server's
    /// message ([`ErrorBody`]).
    pub async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            let message = serde_json::from_slice::<ErrorBody>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| "no details".into());
            bail!("server answered {status}: {message}");
        }
        serde_json::from_slice(&body).with_context(|| {
            format!(
                "the server's answer is not what this otter expects (a {})",
                std::any::type_name::<T>()
            )
        })
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let mut request = self.request(method, path)?;
        if let Some(body) = body {
            request = request.json(body);
        }
        self.send(request).await
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(Method::GET, path, NO_BODY).await
    }

    /// Prints the API's answer as JSON (keys sorted), or as text made by `human`.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json {
            let value = serde_json::to_value(value).unwrap_or_default();
            print_line(&serde_json::to_string_pretty(&value).unwrap_or_default());
        } else {
            print_line(&human(value));
        }
    }
}

/// What a delete answered, as a sentence.
pub fn deletion(d: &otter_api::Deletion) -> String {
    let mut out = format!("deleted {}", d.deleted);
    let mut with = Vec::new();
    if d.devices > 1 || d.deleted.starts_with("product") {
        with.push(format!("{} devices", d.devices));
    }
    if d.firmware > 1 || d.deleted.starts_with("product") {
        with.push(format!("{} firmware images", d.firmware));
    }
    if !d.campaigns.is_empty() {
        let ids: Vec<String> = d.campaigns.iter().map(|id| format!("#{id}")).collect();
        with.push(format!("finished campaigns {}", ids.join(", ")));
    }
    if !with.is_empty() {
        out.push_str(&format!(" with {}", with.join(", ")));
    }
    if d.blobs_removed > 0 {
        out.push_str(&format!(
            "; {} firmware file{} removed from storage",
            d.blobs_removed,
            if d.blobs_removed == 1 { "" } else { "s" }
        ));
    }
    out
}

/// A value as a table cell or in a sentence: its JSON text, strings unquoted, `-` for null.
pub fn cell<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::Null) | Err(_) => "-".into(),
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
    }
}

/// A plain text table: a header of the column names upper-cased, then one line per row.
pub fn table<R>(columns: &[&str], rows: &[R], row: impl Fn(&R) -> Vec<String>) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(row).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, String::len))
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    std::iter::once(line(columns.iter().map(|c| c.to_uppercase()).collect()))
        .chain(rows.into_iter().map(line))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_as_before() {
        assert_eq!(cell(&None::<i64>), "-");
        assert_eq!(cell(&Some("x")), "x");
        assert_eq!(cell(&3u64), "3");
        assert_eq!(cell(&true), "true");
        assert_eq!(cell(&otter_api::UpgradeState::TimedOut), "timed_out");
    }

    #[test]
    fn tables_align_columns() {
        let rows = [("a", 1), ("bbb", 22)];
        let t = table(&["name", "n"], &rows, |r| vec![cell(r.0), cell(&r.1)]);
        assert_eq!(t, "NAME  N\na     1\nbbb   22");
    }
}
