//! `otter operator`: named operator accounts, who sign in to the console with a password (the
//! server keeps only its argon2id hash). Admin scope.

use crate::client::{Conn, NO_BODY, cell, table};
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use otter_api::{NewOperator, OperatorAccount, Scope};
use reqwest::Method;
use std::io::BufRead;

/// The shortest password the server accepts (checked here first, for a clear message).
const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Subcommand, Debug)]
pub enum OperatorCmd {
    /// Create an operator account; the password is asked for (not echoed), or read from stdin.
    Create {
        /// Sign-in name, also what the audit log names (`operator:NAME`): letters, digits, `.`, `_`, `-`, `@`.
        name: String,
        /// read: look only; operate: firmware, verification, campaigns, tags; admin: everything.
        #[arg(long, value_parser = ["read", "operate", "admin"])]
        scope: String,
        /// Read the password from the first line of stdin instead of a prompt (for scripts).
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// List operator accounts (never their passwords).
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Disable an operator for good: it can no longer sign in, and its console sessions end.
    Disable {
        /// The operator's name.
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: OperatorCmd) -> Result<()> {
    match cmd {
        OperatorCmd::Create {
            name,
            scope,
            password_stdin,
            conn,
        } => {
            let scope = Scope::parse(&scope).context("scope must be read, operate or admin")?;
            let password = match password_stdin {
                true => password_from_stdin()?,
                false => password_from_prompt(&name)?,
            };
            check_password(&password)?;
            let body = NewOperator {
                name,
                scope,
                password,
            };
            let o: OperatorAccount = conn.call(Method::POST, "/operators", Some(&body)).await?;
            conn.print(&o, |o| {
                format!(
                    "operator {} ({}) created; it signs in to the console with its name and password",
                    o.name, o.scope
                )
            });
        }
        OperatorCmd::List { conn } => {
            let operators: Vec<OperatorAccount> = conn.get("/operators").await?;
            conn.print(&operators, |operators| {
                table(
                    &["id", "name", "scope", "created_at", "disabled_at"],
                    operators,
                    |o| {
                        vec![
                            cell(&o.id),
                            cell(&o.name),
                            cell(&o.scope),
                            cell(&o.created_at),
                            cell(&o.disabled_at),
                        ]
                    },
                )
            });
        }
        OperatorCmd::Disable { name, conn } => {
            let path = format!(
                "/operators/{}",
                percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC)
            );
            let o: OperatorAccount = conn.call(Method::DELETE, &path, NO_BODY).await?;
            conn.print(&o, |o| {
                format!("operator {} disabled; its console sessions ended", o.name)
            });
        }
    }
    Ok(())
}

/// Refuses a password the server would refuse, before sending it.
fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        bail!(
            "the password is too short: an operator password needs at least {MIN_PASSWORD_CHARS} characters"
        );
    }
    Ok(())
}

/// The first line of stdin, without its line ending.
fn password_from_stdin() -> Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// Asks twice on the terminal, without echo.
fn password_from_prompt(name: &str) -> Result<String> {
    let first = rpassword::prompt_password(format!("Password for operator {name}: "))
        .context("reading the password (no terminal? use --password-stdin)")?;
    check_password(&first)?;
    let again = rpassword::prompt_password("Same password again: ")
        .context("reading the password again")?;
    if first != again {
        bail!("the two passwords differ; nothing was created");
    }
    Ok(first)
}
