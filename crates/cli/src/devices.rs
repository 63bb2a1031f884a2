//! `otter device …`: devices of a product (`/products/{product}/devices`).

use crate::client::{Conn, NO_BODY, cell, human_time, table, time_cell};
use anyhow::Result;
use clap::Subcommand;
use otter_api::{
    CreatedDevice, DeviceView, ListedDevice, NewDevice, RotatedSecret, TagChange, UpgradeEvent,
};
use reqwest::Method;

#[derive(Subcommand, Debug)]
pub enum DeviceCmd {
    /// Register a device; prints its secret (generated in the dialect's format unless given).
    Create {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        /// Device secret, 16 to 256 characters [default: generated in the dialect's format, printed once].
        #[arg(long)]
        secret: Option<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a product's devices with their versions and tags, by name; filters combine.
    List {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Only devices whose name contains this.
        #[arg(long)]
        name_contains: Option<String>,
        /// Only devices at this version (`none`: devices that never reported one).
        #[arg(long)]
        version: Option<String>,
        /// Only online (`yes`) or offline (`no`) devices.
        #[arg(long, value_parser = ["yes", "no"])]
        online: Option<String>,
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// At most this many devices (1–1000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        /// Skip this many devices (for the next page).
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[command(flatten)]
        conn: Conn,
    },
    /// Add or remove tags of a device (used to target campaigns).
    Tag {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        /// Tag to add (repeatable), e.g. region=eu.
        #[arg(long = "add")]
        add: Vec<String>,
        /// Tag to remove (repeatable).
        #[arg(long = "remove")]
        remove: Vec<String>,
        #[command(flatten)]
        conn: Conn,
    },
    /// A device's upgrade history, newest first.
    History {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Give a device a new secret (printed once); the old one stops working at once.
    RotateSecret {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a device with its history; its credentials stop working at once. Refused while a
    /// live campaign targets it.
    Delete {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a device: versions, online state, current upgrade and its last result.
    Show {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// Device name (up to 64 ASCII letters, digits and `_ - . : @`).
        #[arg(long)]
        name: String,
        #[command(flatten)]
        conn: Conn,
    },
}

pub async fn run(cmd: DeviceCmd) -> Result<()> {
    match cmd {
        DeviceCmd::RotateSecret {
            product,
            name,
            conn,
        } => {
            let path = format!("/products/{product}/devices/{name}/secret");
            let r: RotatedSecret = conn.call(Method::POST, &path, NO_BODY).await?;
            conn.print(&r, |r| format!("{product}/{name} secret: {}", r.secret));
        }
        DeviceCmd::Tag {
            product,
            name,
            add,
            remove,
            conn,
        } => {
            let tags: Vec<String> = conn
                .call(
                    Method::PUT,
                    &format!("/products/{product}/devices/{name}/tags"),
                    Some(&TagChange { add, remove }),
                )
                .await?;
            conn.print(&tags, |tags| format!("tags: {}", tags.join(" ")));
        }
        DeviceCmd::History {
            product,
            name,
            conn,
        } => {
            let events: Vec<UpgradeEvent> = conn
                .get(&format!("/products/{product}/devices/{name}/history"))
                .await?;
            conn.print(&events, |events| {
                table(
                    &[
                        "at",
                        "campaign_id",
                        "state",
                        "percent",
                        "result_code",
                        "result_msg",
                    ],
                    events,
                    |e| {
                        vec![
                            time_cell(Some(e.at)),
                            cell(&e.campaign_id),
                            cell(&e.state),
                            cell(&e.percent),
                            cell(&e.result_code),
                            cell(&e.result_msg),
                        ]
                    },
                )
            });
        }
        DeviceCmd::Create {
            product,
            name,
            secret,
            conn,
        } => {
            let d: CreatedDevice = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/devices"),
                    Some(&NewDevice { name, secret }),
                )
                .await?;
            conn.print(&d, |d| {
                format!(
                    "created device {}/{}\nsecret: {}",
                    d.device.product, d.device.name, d.secret
                )
            });
        }
        DeviceCmd::List {
            product,
            name_contains,
            version,
            online,
            tag,
            limit,
            offset,
            conn,
        } => {
            let mut query = vec![("limit", limit.to_string()), ("offset", offset.to_string())];
            for (key, value) in [("q", name_contains), ("version", version), ("tag", tag)] {
                query.extend(value.map(|v| (key, v)));
            }
            query.extend(online.map(|o| ("online", (o == "yes").to_string())));
            let query = query
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::client::encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            let devices: Vec<ListedDevice> = conn
                .get(&format!("/products/{product}/devices?{query}"))
                .await?;
            conn.print(&devices, |devices| {
                table(
                    &["name", "version", "online", "last_seen", "tags"],
                    devices,
                    |d| {
                        vec![
                            cell(&d.device.name),
                            d.version.clone().unwrap_or_else(|| "-".into()),
                            if d.device.online { "online" } else { "offline" }.to_owned(),
                            d.device
                                .last_seen
                                .map_or("never".to_owned(), |t| human_time(t.as_ms())),
                            d.tags.join(","),
                        ]
                    },
                )
            });
        }
        DeviceCmd::Delete {
            product,
            name,
            conn,
        } => {
            let d: otter_api::Deletion = conn
                .call(
                    Method::DELETE,
                    &format!("/products/{product}/devices/{name}"),
                    NO_BODY,
                )
                .await?;
            conn.print(&d, crate::client::deletion);
        }
        DeviceCmd::Show {
            product,
            name,
            conn,
        } => {
            let d: DeviceView = conn
                .get(&format!("/products/{product}/devices/{name}"))
                .await?;
            conn.print(&d, show_device);
        }
    }
    Ok(())
}

fn show_device(v: &DeviceView) -> String {
    let mut out = format!(
        "device    {}/{}\nversion   {}\nonline    {}\nlast seen {}\n",
        v.device.product,
        v.device.name,
        cell(&v.version),
        cell(&v.device.online),
        time_cell(v.device.last_seen)
    );
    match &v.upgrade {
        Some(u) => {
            let (explained, u) = (&u.result_explained, &u.upgrade);
            out.push_str(&format!(
                "upgrade   campaign #{} to {}: {} {}%\nresult    {} {} {}",
                u.campaign_id,
                u.target,
                cell(&u.state),
                cell(&u.percent),
                cell(&u.result_code),
                cell(&u.result_msg),
                cell(explained),
            ));
            if let Some(r) = u.reason {
                out.push_str(&format!("\nwhy       {} ({r})", r.describe()));
            }
        }
        None => out.push_str("upgrade   none"),
    }
    out
}
