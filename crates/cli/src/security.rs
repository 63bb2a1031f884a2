//! Security administration: scoped API tokens, the audit log, and rotating the download-link key.

use crate::client::{Conn, NO_BODY, cell, table, time_cell};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use otter_api::{ApiToken, AuditEntry, CreatedToken, NewToken, Scope};
use reqwest::Method;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Create an API token; prints it once (the server keeps only its hash).
    Create {
        /// Who or what will hold it (shown in listings and the audit log).
        #[arg(long)]
        name: String,
        /// read: look only; operate: firmware, verification, campaigns, tags; admin: everything.
        #[arg(long, value_parser = ["read", "operate", "admin"])]
        scope: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List API tokens (never their text).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Revoke an API token for good.
    Revoke {
        /// The token's id (from `otter token list`).
        id: i64,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn token(cmd: TokenCmd) -> Result<()> {
    match cmd {
        TokenCmd::Create { name, scope, conn } => {
            let scope = Scope::parse(&scope).context("scope must be read, operate or admin")?;
            let body = NewToken { name, scope };
            let t: CreatedToken = conn.call(Method::POST, "/tokens", Some(&body)).await?;
            conn.print(&t, |t| {
                format!(
                    "token #{} {} ({})\n{}\nKeep it now: it is not shown again.",
                    t.token.id, t.token.name, t.token.scope, t.secret
                )
            });
        }
        TokenCmd::List { conn } => {
            let tokens: Vec<ApiToken> = conn.get("/tokens").await?;
            conn.print(&tokens, |tokens| {
                table(
                    &[
                        "id",
                        "name",
                        "scope",
                        "created_at",
                        "last_used",
                        "revoked_at",
                    ],
                    tokens,
                    |t| {
                        vec![
                            cell(&t.id),
                            cell(&t.name),
                            cell(&t.scope),
                            time_cell(Some(t.created_at)),
                            time_cell(t.last_used),
                            time_cell(t.revoked_at),
                        ]
                    },
                )
            });
        }
        TokenCmd::Revoke { id, conn } => {
            let t: ApiToken = conn
                .call(Method::DELETE, &format!("/tokens/{id}"), NO_BODY)
                .await?;
            conn.print(&t, |t| format!("token #{} {} revoked", t.id, t.name));
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct AuditArgs {
    /// Only actions starting with this, e.g. `campaign.` or `token.`.
    #[arg(long)]
    action: Option<String>,
    /// At most this many entries, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    conn: Conn,
}

/// Prints the audit log, newest first.
pub async fn audit(a: AuditArgs) -> Result<()> {
    let mut path = format!("/audit?limit={}", a.limit);
    if let Some(action) = &a.action {
        let action: String =
            percent_encoding::utf8_percent_encode(action, percent_encoding::NON_ALPHANUMERIC)
                .collect();
        path.push_str(&format!("&action={action}"));
    }
    let entries: Vec<AuditEntry> = a.conn.get(&path).await?;
    a.conn.print(&entries, |entries| {
        table(&["id", "at", "actor", "action", "subject"], entries, |e| {
            vec![
                cell(&e.id),
                time_cell(Some(e.at)),
                cell(&e.actor),
                cell(&e.action),
                cell(&e.subject),
            ]
        })
    });
    Ok(())
}

#[derive(Args, Debug)]
pub struct RotateDownloadKeyArgs {
    /// The server's data dir (holds `download-key`).
    #[arg(long, env = "OTTER_DATA_DIR", default_value = "otter-data")]
    data_dir: PathBuf,
    /// How long links signed with the old key stay valid; at least the server's --url-ttl-secs.
    #[arg(long, default_value_t = 24 * 3600)]
    grace_secs: u64,
}

/// Replaces the download-link key; restart `otter serve` (every node) to use it.
pub fn rotate_download_key(a: RotateDownloadKeyArgs) -> Result<()> {
    let path = a.data_dir.join(otter_server::keys::DOWNLOAD_KEY);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("clock before 1970")?
        .as_secs();
    let keys = otter_server::keys::rotate_download_key(&path, now, a.grace_secs)?;
    println!(
        "{}: new download key; {} retired key(s) still accepted. Restart otter serve to use it.",
        path.display(),
        keys.retired.len()
    );
    Ok(())
}
