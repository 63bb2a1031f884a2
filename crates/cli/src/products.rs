//! `otter product …`: products (`/products`) and their firmware signing keys
//! (`/products/{product}/keys`).

use crate::client::{Conn, cell, table};
use anyhow::Result;
use clap::Subcommand;
use otter_api::{NewKey, NewProduct, Product, ProductChange, ProductKey};
use reqwest::Method;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum ProductCmd {
    /// Create a product.
    Create {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        id: String,
        /// Wire dialect of its devices: tencent, aliyun or enos.
        #[arg(long)]
        dialect: String,
        /// A name for people [default: the id].
        #[arg(long)]
        name: Option<String>,
        /// How its versions are ordered for anti-rollback: semver (a version that is not
        /// semver-like has no order), numeric (dot-separated numbers) or opaque (no order:
        /// nothing is ever a downgrade). docs/campaigns.md "Version schemes".
        #[arg(long, default_value = "semver", value_parser = ["semver", "numeric", "opaque"])]
        version_scheme: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Delete a product with its devices, finished campaigns, firmware and keys. Refused while
    /// it has a live campaign.
    Delete {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Show a product: dialect, name, version scheme.
    Show {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        id: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// Change a product's version scheme (live campaigns judge by it from then on).
    Set {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        id: String,
        /// semver, numeric or opaque.
        #[arg(long, value_parser = ["semver", "numeric", "opaque"])]
        version_scheme: String,
        #[command(flatten)]
        conn: Conn,
    },
    /// List products.
    List {
        #[command(flatten)]
        conn: Conn,
    },
    /// Firmware signing keys of a product: add (the first as is, later ones announced by a
    /// registered key) and list (docs/signing.md).
    #[command(subcommand)]
    Key(KeyCmd),
}

#[derive(Subcommand, Debug)]
pub enum KeyCmd {
    /// Register a public signing key. A product with keys takes a new one only when announced
    /// by a registered key: pass that key's private key file with --announce-with.
    Add {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        /// The new public key: a file (public PEM, or a private key whose public half is
        /// taken) or its hex / base64.
        #[arg(long)]
        public_key: String,
        /// Private key file of a registered key, to sign the announcement offline.
        #[arg(long)]
        announce_with: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
    /// List a product's signing keys.
    List {
        /// Product id (up to 64 ASCII letters, digits, `_` and `-`).
        #[arg(long)]
        product: String,
        #[command(flatten)]
        conn: Conn,
    },
}

async fn product_key(cmd: KeyCmd) -> Result<()> {
    match cmd {
        KeyCmd::Add {
            product,
            public_key,
            announce_with,
            conn,
        } => {
            let public = crate::sign::read_public(&public_key)?;
            let mut body = NewKey {
                public_key: otter_protocol::key_base64(&public),
                signed_by: None,
                sig: None,
            };
            if let Some(path) = announce_with {
                let old = crate::sign::load_private(&path)?;
                let (by, sig) = crate::sign::announce(&old, &product, &public)?;
                body.signed_by = Some(by);
                body.sig = Some(sig);
            }
            let key: ProductKey = conn
                .call(
                    Method::POST,
                    &format!("/products/{product}/keys"),
                    Some(&body),
                )
                .await?;
            conn.print(&key, |k| match &k.signed_by {
                Some(by) => format!("added key {} (announced by {by})", k.key_id),
                None => format!("added key {} (the first of {product})", k.key_id),
            });
        }
        KeyCmd::List { product, conn } => {
            let keys: Vec<ProductKey> = conn.get(&format!("/products/{product}/keys")).await?;
            conn.print(&keys, |keys| {
                table(&["key_id", "signed_by", "public_key"], keys, |k| {
                    vec![cell(&k.key_id), cell(&k.signed_by), cell(&k.public_key)]
                })
            });
        }
    }
    Ok(())
}

pub async fn run(cmd: ProductCmd) -> Result<()> {
    match cmd {
        ProductCmd::Key(cmd) => product_key(cmd).await?,
        ProductCmd::Delete { id, conn } => {
            let d: otter_api::Deletion = conn
                .call(
                    Method::DELETE,
                    &format!("/products/{id}"),
                    crate::client::NO_BODY,
                )
                .await?;
            conn.print(&d, crate::client::deletion);
        }
        ProductCmd::Create {
            id,
            dialect,
            name,
            version_scheme,
            conn,
        } => {
            let body = NewProduct {
                id,
                dialect,
                name,
                version_scheme: Some(version_scheme),
            };
            let p: Product = conn.call(Method::POST, "/products", Some(&body)).await?;
            conn.print(&p, |p| {
                format!(
                    "created product {} ({}, {} versions)",
                    p.id,
                    p.dialect.as_str(),
                    p.version_scheme.as_str()
                )
            });
        }
        ProductCmd::Show { id, conn } => {
            let p: Product = conn.get(&format!("/products/{id}")).await?;
            conn.print(&p, product_text);
        }
        ProductCmd::Set {
            id,
            version_scheme,
            conn,
        } => {
            let body = ProductChange { version_scheme };
            let p: Product = conn
                .call(Method::PATCH, &format!("/products/{id}"), Some(&body))
                .await?;
            conn.print(&p, product_text);
        }
        ProductCmd::List { conn } => {
            let products: Vec<Product> = conn.get("/products").await?;
            conn.print(&products, |products| {
                table(
                    &["id", "dialect", "version_scheme", "name"],
                    products,
                    |p| {
                        vec![
                            cell(&p.id),
                            cell(&p.dialect),
                            cell(&p.version_scheme),
                            cell(&p.name),
                        ]
                    },
                )
            });
        }
    }
    Ok(())
}

fn product_text(p: &Product) -> String {
    format!(
        "product {}\n  dialect         {}\n  name            {}\n  version scheme  {}",
        p.id,
        p.dialect.as_str(),
        p.name,
        p.version_scheme.as_str()
    )
}
